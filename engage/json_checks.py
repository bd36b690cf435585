"""What any input must keep to be stored: text without NUL or unpaired surrogates, and
JSON no deeper than a limit.

The API's parser checks the text before parsing it (deep JSON can exhaust the parser),
and services check parsed values; both name the place, as ``a.b[0].c``.
"""

import json
import re
from typing import Any

from engage.errors import Problem

MAX_JSON_DEPTH = 64
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def has_unstorable(value: Any) -> bool:
    """Tell whether a value holds a NUL or an unpaired surrogate anywhere.

    Neither can be stored as text (PostgreSQL refuses NUL; surrogates are not UTF-8).
    """
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(has_unstorable(key) or has_unstorable(item) for key, item in value.items())
    if isinstance(value, list):
        return any(has_unstorable(item) for item in value)
    return False



def json_path(parent: str, key: str | int) -> str:
    """Return the path of ``key`` under ``parent``: ``a.b`` for a key, ``a[0]`` for an index."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def nesting_problem(text: str, *, limit: int = MAX_JSON_DEPTH) -> Problem | None:
    """Return where JSON text nests deeper than ``limit``, read without parsing it.

    For text too deep for the parser itself; the place named is cut to its first steps.
    """
    path: list[str | int] = []
    expect_key = False
    for token in _JSON_TOKEN.finditer(text):
        kind = token.group()
        if kind in "{[":
            if len(path) >= limit:
                return _too_deep(path, limit)
            path.append("" if kind == "{" else 0)
            expect_key = kind == "{"
        elif kind in "}]":
            if path:
                path.pop()
            expect_key = False
        elif kind == ",":
            if path and isinstance(path[-1], int):
                path[-1] += 1
            else:
                expect_key = True
        elif kind.startswith('"') and expect_key and path:
            try:
                path[-1] = json.loads(kind)
            except ValueError:
                path[-1] = kind.strip('"')
            expect_key = False
    return None


def depth_problem(value: Any, *, limit: int = MAX_JSON_DEPTH) -> Problem | None:
    """Return where a parsed JSON value nests deeper than ``limit``, if it does."""
    pending = [(value, ())]
    while pending:
        item, path = pending.pop()
        if isinstance(item, dict | list):
            if len(path) >= limit:
                return _too_deep(list(path), limit)
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            pending.extend((child, (*path, key)) for key, child in pairs
                           if isinstance(child, dict | list))
    return None


def _too_deep(path: list, limit: int) -> Problem:
    field = ""
    for step in path[:3]:
        field = json_path(field, step)
    return Problem(field or "body", "too_deep",
                   f"{field or 'the body'} is nested more than {limit} levels deep")


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],]')
