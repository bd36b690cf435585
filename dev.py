#!/usr/bin/env python3
"""Set up and run engage, or its tests, with nothing but Python 3.11+.

    python3 dev.py start     set up, then run the web server and a worker until Ctrl-C
    python3 dev.py test      set up, then run the whole test suite (pytest arguments pass through)
    python3 dev.py lint      set up the test environment, then check the code with ruff
    python3 dev.py screenshots   refresh docs/screenshots/ (the README's) from the browser tests

Each creates a virtual environment in .venv and installs engage into it the first time
(and again whenever pyproject.toml changes). The database is DATABASE_URL, or the
embedded SQLite file under var/.
"""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_environment(extras: str) -> None:
    """Create .venv and install engage (with ``extras``) unless already current."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs under any python3 first
        sys.exit("engage needs Python 3.11 or newer.")
    if not PYTHON.exists():
        print("Creating the virtual environment in .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    stamp = VENV / f".installed-{extras or 'base'}-{digest}"
    if stamp.exists() or (not extras and (VENV / f".installed-test-{digest}").exists()):
        return  # the test extras include everything the base install has
    print("Installing engage and its dependencies ...", flush=True)
    target = f".[{extras}]" if extras else "."
    subprocess.run(
        [PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", target],
        cwd=ROOT, check=True,
    )
    for old in VENV.glob(f".installed-{extras or 'base'}-*"):
        old.unlink()
    stamp.touch()


def manage(*args: str, env: dict) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True)


def free_port(preferred: int) -> int:
    """Return ``preferred`` if nothing listens there, else a port the system picks."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]


class Stop(Exception):
    """Raised by the SIGTERM handler so that a terminated dev.py stops what it started."""


def _stop(signum, frame):
    raise Stop


def start() -> int:
    ensure_environment("")
    env = {**os.environ, "DEBUG": os.environ.get("DEBUG", "1"), "PYTHONUNBUFFERED": "1"}
    manage("migrate", "--no-input", env=env)
    people = os.environ.get("ENGAGE_DEMO_PEOPLE")  # how many demo people, when created
    manage("seed_demo", *(["--people", people] if people else []), env=env)
    port = int(os.environ.get("PORT") or free_port(8000))
    signal.signal(signal.SIGTERM, _stop)
    # Each child leads its own process group, so stopping it also stops what it started
    # (runserver's autoreloader runs the server in a child of its own).
    processes = [
        subprocess.Popen([PYTHON, "manage.py", "runserver", f"127.0.0.1:{port}"], cwd=ROOT,
                         env=env, start_new_session=True),
        subprocess.Popen([PYTHON, "manage.py", "qcluster"], cwd=ROOT, env=env,
                         start_new_session=True),
    ]
    print(f"\nengage is running at http://127.0.0.1:{port}/ (Ctrl-C stops it)\n"
          f"Sign in at http://127.0.0.1:{port}/login/ with the admin login above.\n", flush=True)
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
    except (KeyboardInterrupt, Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut this short
        for process in processes:
            _signal_group(process, signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
            _signal_group(process, signal.SIGKILL)  # anything the child left behind
    return 0


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    """Send ``signum`` to the process group ``process`` leads (to it alone on Windows)."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signum)
        elif process.poll() is None:
            process.terminate()
    except (ProcessLookupError, PermissionError):
        pass


def ensure_chromium() -> None:
    """Install Debian's Chromium for the browser tests when missing and we may."""
    if shutil.which("chromium"):
        return
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        print("Installing Chromium for the browser tests ...", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    else:
        print("Chromium is not installed: the browser tests (tests/browser) will fail. "
              "Install your system's chromium package.", flush=True)


def test(args: list[str]) -> int:
    ensure_environment("test")
    ensure_chromium()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([PYTHON, "-m", "pytest", *args], cwd=ROOT, env=env).returncode


def lint() -> int:
    """Check the whole repository with ruff (configured in pyproject.toml)."""
    ensure_environment("test")
    ruff = VENV / ("Scripts/ruff.exe" if os.name == "nt" else "bin/ruff")
    return subprocess.run([ruff, "check", "."], cwd=ROOT).returncode


def screenshots() -> int:
    """Refresh the README's screenshots: the browser tests that show them, saving them."""
    folder = ROOT / "docs" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["ENGAGE_SCREENSHOTS"] = str(folder)
    return test(["-p", "no:cacheprovider", "-q", "tests/browser", "-k", "screenshot"])


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "help"
    if command == "start":
        return start()
    if command == "test":
        return test(argv[1:])
    if command == "lint":
        return lint()
    if command == "screenshots":
        return screenshots()
    print(__doc__)
    return 0 if command in {"help", "-h", "--help"} else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
