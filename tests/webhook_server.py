"""A local HTTP server that webhooks call in tests: it records requests and answers as told.

``webhook_server.answer("/path", Reply(500), Reply(200, json={...}))`` scripts the
answers of a path, one per request (the last one repeats); other paths answer 200 with
``{}``. Every request is kept in ``webhook_server.requests``.
"""

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Reply:
    status: int = 200
    json: object = None
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds before the answer starts (a slow server)
    size: int = 0  # a body of this many bytes, written in chunks (a huge answer)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that hung up (a timeout, a capped read) is what some tests are about.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class WebhookServer:
    def __init__(self):
        self.requests: list[Recorded] = []
        self.scripts: dict[str, list[Reply]] = {}
        self.bytes_written: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self.host, self.port = self._server.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "WebhookServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, path: str, *replies: Reply) -> None:
        """Answer the requests to ``path`` with ``replies`` in turn; the last one repeats."""
        with self._lock:
            self.scripts[path] = list(replies)

    def to(self, path: str) -> list[Recorded]:
        """Return the requests made to ``path``."""
        return [request for request in self.requests if request.path == path]

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            script = self.scripts.get(path)
            if not script:
                return Reply(json={})
            return script.pop(0) if len(script) > 1 else script[0]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers speak
            # One segment per answer, sent at once (no Nagle delay on kept-alive connections).
            wbufsize = 64 * 1024
            disable_nagle_algorithm = True

            def log_message(self, format, *args):
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server._lock:
                    server.requests.append(Recorded(self.command, self.path,
                                                    dict(self.headers), body))
                reply = server._next_reply(self.path)
                if reply.delay:
                    time.sleep(reply.delay)
                content = reply.body
                if reply.json is not None:
                    content = json.dumps(reply.json).encode()
                size = reply.size or len(content)
                try:
                    self.send_response(reply.status)
                    headers = {"Content-Type": "application/json", **reply.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    if reply.size:
                        self._write_huge(reply.size)
                    else:
                        self.wfile.write(content)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _write_huge(self, size: int):
                chunk = b"x" * 65536
                written = server.bytes_written[self.path] = 0
                while written < size:  # counted as it goes: a test may look before the end
                    part = chunk[:size - written]
                    self.wfile.write(part)
                    written += len(part)
                    server.bytes_written[self.path] = written

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return Handler


@pytest.fixture
def webhook_server():
    """A local HTTP server on a free port that records requests and answers as told."""
    server = WebhookServer().start()
    yield server
    server.stop()
