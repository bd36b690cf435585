"""Dependencies between engage's packages point one way.

The core package ``engage`` (settings, URLs, workspaces, auth, shared helpers) imports no
app; ``people`` builds on it, ``segments`` on ``people``, ``campaigns`` on ``segments``.
An app imports from the apps below it (models, services, selectors, shared helpers),
never from an app above, and never another app's pages or wiring: its views, admin, API
or URL modules. The project's URL conf and settings name the apps by dotted string.

Every module is parsed, not imported, so that imports inside functions count too.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Bottom up: each may import from those before it.
LAYERS = ["engage", "people", "segments", "campaigns"]
# The modules that serve one app's pages, admin, API or URLs.
ENTRY_MODULE = re.compile(r"(^|_)(views|admin|api|urls)$")
# The base every app's API view extends (DESIGN.md: the core holds the API base).
SHARED_ENTRY_MODULES = {"engage.api"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, tuple[str, str]]:
    """Return every module of the layers: its name, its path and its source."""
    return {_module_name(path): (str(path.relative_to(ROOT)), path.read_text())
            for layer in LAYERS for path in sorted((ROOT / layer).rglob("*.py"))}


def _imports(name: str, path: str, source: str, known):
    """Yield (line, imported module) for every import in the module, at any depth."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[:len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # ``from people import views`` imports the module people.views.
                submodule = f"{base}.{alias.name}"
                yield node.lineno, submodule if submodule in known else base


def _layer(module: str) -> str | None:
    top = module.split(".")[0]
    return top if top in LAYERS else None


def forbidden_edges(sources: dict[str, tuple[str, str]]) -> list[str]:
    """Return a line for every import of ``sources`` that breaks the layering."""
    problems = set()
    for name, (path, source) in sources.items():
        origin = _layer(name)
        for line, imported in _imports(name, path, source, sources):
            target = _layer(imported)
            if target is None or target == origin:
                continue
            where = f"{path}:{line} ({name}) imports {imported}"
            if LAYERS.index(target) > LAYERS.index(origin):
                problems.add(f"{where}: {origin} sits below {target}")
            elif (ENTRY_MODULE.search(imported.rpartition(".")[2])
                  and imported not in SHARED_ENTRY_MODULES):
                problems.add(f"{where}: another app's views, admin, API or URLs")
    return sorted(problems)


SOURCES = _sources()


def test_every_package_is_read():
    assert {"engage.urls", "people.views", "segments.views", "campaigns"} <= set(SOURCES)


def test_dependencies_point_one_way():
    problems = forbidden_edges(SOURCES)
    assert not problems, "forbidden imports:\n" + "\n".join(problems)


def _with(path: str, code: str) -> dict[str, tuple[str, str]]:
    return {**SOURCES, _module_name(ROOT / path): (path, code)}


@pytest.mark.parametrize("path, code, expected", [
    ("engage/example.py", "def f():\n    from people.models import Person\n",
     "engage/example.py:2 (engage.example) imports people.models: engage sits below people"),
    ("segments/example.py", "from people import views\n",
     "imports people.views: another app's views, admin, API or URLs"),
    ("segments/example.py", "from people.admin import JobAdmin\n",
     "imports people.admin: another app's views, admin, API or URLs"),
    ("people/example.py", "import segments.conditions\n", "people sits below segments"),
    ("people/example.py", "from segments import settings_urls\n",
     "people sits below segments"),
])
def test_a_forbidden_edge_is_named(path, code, expected):
    assert any(expected in problem for problem in forbidden_edges(_with(path, code)))


@pytest.mark.parametrize("code", [
    "from engage.models import Workspace\n",      # down to the core
    "from engage.api import AppView\n",           # the API base
    "from people import services\n",              # down to a service
    "from segments import views\n",               # its own app's views
    "from . import views\n",                      # likewise, relatively
])
def test_allowed_edges_pass(code):
    problems = forbidden_edges(_with("segments/example.py", code))
    assert not [problem for problem in problems if "(segments.example)" in problem]
