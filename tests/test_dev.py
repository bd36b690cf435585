"""``python3 dev.py start``: what a newcomer runs first."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workers import ROOT, wait_for


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _groups_alive(groups: set[int]) -> list[int]:
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) in groups:
                    alive.append(int(entry.name))
            except ProcessLookupError:
                pass
    return alive


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_sigterm_stops_the_server_and_the_worker(tmp_path):
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "ENGAGE_VAR_DIR": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'engage.sqlite3'}",
           "ENGAGE_DEMO_PEOPLE": "3"}
    env.pop("REDIS_URL", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    start = subprocess.Popen([sys.executable, "dev.py", "start"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: _listening(port) and len(_children(start.pid)) == 2,
                        timeout=180, interval=0.2), "dev.py start did not come up"
        groups = set(_children(start.pid))  # each child leads its own process group
        assert wait_for(lambda: len(_groups_alive(groups)) > 2, timeout=60)  # the workers too

        start.send_signal(signal.SIGTERM)
        output, _ = start.communicate(timeout=60)

        assert start.returncode == 0, output
        assert wait_for(lambda: not _groups_alive(groups), timeout=20), _groups_alive(groups)
        assert not _listening(port)
        assert "Track API key" in output and f"http://127.0.0.1:{port}/login/" in output
    finally:
        if start.poll() is None:
            start.kill()
