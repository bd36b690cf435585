"""A production server (gunicorn, DEBUG off) serves the pages' stylesheets and scripts."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from tests.workers import ROOT, wait_for


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def production_server(tmp_path):
    port = _free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "engage.settings", "DEBUG": "0",
           "SECRET_KEY": "static-files-test-only", "ALLOWED_HOSTS": "127.0.0.1",
           "ENGAGE_VAR_DIR": str(tmp_path), "STATIC_ROOT": str(tmp_path / "static"),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'engage.sqlite3'}"}
    env.pop("REDIS_URL", None)
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--no-input", "-v", "0"],
                   cwd=ROOT, env=env, check=True)
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "--workers", "1",
         "--bind", f"127.0.0.1:{port}", "engage.wsgi:application"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def answers():
        try:
            return requests.get(f"{base}/login/", timeout=10).status_code == 200
        except requests.RequestException:  # not listening yet, or still loading the app
            return False

    try:
        assert wait_for(answers, timeout=120), "gunicorn did not answer"
        yield base
    finally:
        server.terminate()
        server.wait(timeout=15)


def test_a_page_from_a_production_server_loads_its_stylesheet_and_htmx(production_server):
    page = requests.get(f"{production_server}/login/", timeout=30)
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
    stylesheets = [asset for asset in assets if asset.endswith(".css")]
    scripts = [asset for asset in assets if asset.endswith(".js")]
    assert stylesheets and any("htmx" in script for script in scripts), assets
    for asset in stylesheets + scripts:
        # Hashed names, so browsers may keep them for ever.
        assert re.search(r"\.[0-9a-f]{12}\.(css|js)$", asset), asset
        answer = requests.get(urljoin(production_server, asset), timeout=30,
                              headers={"Accept-Encoding": "gzip"})
        assert answer.status_code == 200, asset
        assert answer.content
        assert "max-age=315360000" in answer.headers.get("Cache-Control", ""), asset
