"""A real django-q2 cluster in another process, for tests that need one (PostgreSQL)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]

needs_shared_database = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the worker runs in another process and needs a database it can share; the "
           "in-memory SQLite test database is private to this process",
)


def wait_for(check, timeout=30.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


class Cluster:
    """``manage.py qcluster`` on the test database, in its own process group."""

    def __init__(self, tmp_path, **env):
        db = connection.settings_dict
        inherited = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
        self.env = {**inherited, "DJANGO_SETTINGS_MODULE": "engage.settings", "DEBUG": "1",
                    "ENGAGE_VAR_DIR": str(tmp_path), "Q_WORKERS": "3",  # the default
                    # (two campaign sweepers hold a worker each for most of every minute)
                    "DATABASE_URL": (f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/"
                                     f"{db['NAME']}"),
                    **{key: str(value) for key, value in env.items()}}
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        return self

    def kill(self):
        """Kill the cluster and its workers at once, as a crash or an OOM kill would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=15)

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)


@pytest.fixture
def real_tasks(transactional_db, monkeypatch):
    """Enqueue tasks for a cluster to run instead of running them inline."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)


@pytest.fixture
def redis_url(tmp_path, monkeypatch):
    """Start a Redis server of its own and have tasks enqueued on it; return its URL."""
    from django_q.conf import Conf

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        import redis

        client = redis.Redis.from_url(url)
        assert wait_for(lambda: _pings(client), timeout=15), "Redis did not start"
        monkeypatch.setattr(Conf, "ORM", None)
        monkeypatch.setattr(Conf, "REDIS", url)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=15)


def _pings(client) -> bool:
    try:
        return client.ping()
    except Exception:
        return False


@pytest.fixture
def cluster(real_tasks, tmp_path):
    """Make clusters (``cluster(**env).start()``); every one is stopped at the end."""
    made = []

    def make(**env):
        made.append(Cluster(tmp_path, **env))
        return made[-1]

    yield make
    for each in made:
        each.stop()
