"""A body sent with ``Transfer-Encoding: chunked`` is read, or refused with 411: never dropped."""

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection

from people.models import Person
from tests.api.conftest import basic

BODY = json.dumps({"email": "ada@example.com", "plan": "pro"}).encode()


def chunked(body: bytes, size: int = 10) -> bytes:
    """Return ``body`` framed as HTTP/1.1 chunks of ``size`` bytes."""
    framed = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                      for i in range(0, len(body), size))
    return framed + b"0\r\n\r\n"


def raw_request(url: str, authorization: str, body: bytes) -> tuple[int, bytes]:
    """Send a chunked identify over a plain socket; return the status and the body."""
    host, port = url.removeprefix("http://").split(":")
    head = (f"PUT /api/v1/customers/u1 HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: {authorization}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head + chunked(body))
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_a_server_that_does_not_dechunk_answers_411(live_server, transactional_db, workspace):
    """runserver (wsgiref) hands the raw chunks on: the body cannot be read, so say so."""
    status, body = raw_request(live_server.url,
                               basic(workspace.site_id, workspace.track_api_key), BODY)
    assert status == 411
    assert json.loads(body)["meta"]["errors"]
    assert not Person.objects.exists()


def test_a_server_that_dechunks_has_the_body_read(transactional_db, workspace):
    """gunicorn decodes the chunks and marks the input terminated (wsgi.input_terminated)."""
    environ = {
        "REQUEST_METHOD": "PUT", "PATH_INFO": "/api/v1/customers/u1", "QUERY_STRING": "",
        "SERVER_NAME": "testserver", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json", "HTTP_TRANSFER_ENCODING": "chunked",
        "HTTP_AUTHORIZATION": basic(workspace.site_id, workspace.track_api_key),
        "wsgi.input": io.BytesIO(BODY), "wsgi.input_terminated": True,
        "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }
    statuses = []
    answer = b"".join(WSGIHandler()(environ, lambda status, headers: statuses.append(status)))

    assert statuses == ["200 OK"], answer
    person = Person.objects.get()
    assert (person.email, person.attributes["plan"]) == ("ada@example.com", "pro")


@pytest.fixture
def gunicorn_url(transactional_db):
    """Serve engage with gunicorn, as in production, on the test database."""
    if connection.vendor != "postgresql":
        pytest.skip("gunicorn runs in its own process: it needs a database server to share")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    database = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": (f"postgres://{database['USER']}:{database['PASSWORD'] or ''}@"
                            f"{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/"
                            f"{database['NAME']}")}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "engage.wsgi:application"], env=env, cwd=settings.BASE_DIR,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.1)  # waiting for the server to listen, not a timed assertion
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_gunicorn_reads_a_chunked_identify(gunicorn_url, workspace):
    status, body = raw_request(gunicorn_url,
                               basic(workspace.site_id, workspace.track_api_key), BODY)
    assert status == 200, body
    person = Person.objects.get()
    assert (person.email, person.attributes["plan"]) == ("ada@example.com", "pro")
