"""A real SMTP server on a free local port (aiosmtpd) that keeps what it receives.

Tests use it through the ``smtp_sink`` fixture (``tests/conftest.py``); benchmarks start
one of their own. Replies can be chosen per recipient ("451 ..." or "550 ...") to try
temporary and permanent failures, or "drop" to hang up at a recipient.
"""

import email
import email.policy
import logging
import threading

from aiosmtpd.controller import Controller

logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command


class SmtpSink:
    """Receive mail on 127.0.0.1 at a port the system chose; keep it in ``messages``."""

    host = "127.0.0.1"

    def __init__(self, *, parse: bool = True, keep_raw: bool = False):
        self.parse = parse
        self.keep_raw = keep_raw
        self.raw: list[bytes] = []  # the bytes received, when ``keep_raw``
        self.messages: list[email.message.EmailMessage] = []  # parsed, when ``parse``
        self.message_ids: list[str] = []  # every accepted message's Message-ID, in order
        self.recipients: list[list[str]] = []  # each message's envelope recipients
        self.replies: dict[str, str] = {}  # recipient -> reply to RCPT ("451 4.3.0 ...")
        self.connections = 0
        self._lock = threading.Lock()
        self._controller: _Controller | None = None

    @property
    def port(self) -> int:
        return self._controller.port

    @property
    def env(self) -> dict[str, str]:
        """Environment that points engage's settings (another process's) at the sink."""
        return {"EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "EMAIL_HOST": self.host, "EMAIL_PORT": str(self.port)}

    def start(self) -> "SmtpSink":
        self._controller = _Controller(self, _Handler(self), hostname=self.host, port=0,
                                       ready_timeout=30, server_hostname="sink.test")
        self._controller.start()
        self.connections = 0  # the controller's own check that the server answers
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self.message_ids.clear()
            self.recipients.clear()
            self.raw.clear()
            self.connections = 0


class _Controller(Controller):
    def __init__(self, sink: SmtpSink, handler, **kwargs):
        super().__init__(handler, **kwargs)
        self.sink = sink

    def factory(self):
        with self.sink._lock:
            self.sink.connections += 1
        return super().factory()

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]  # bound to port 0
        super()._trigger_server()


class _Handler:
    def __init__(self, sink: SmtpSink):
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        reply = self.sink.replies.get(address)
        if reply == "drop":  # hang up without a word, as a crashed server would
            server.transport.close()
            return "421 4.3.2 (unheard: the connection is gone)"
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        content = envelope.original_content or envelope.content
        if self.sink.parse:
            # Stored with plain line ends, as a mailbox keeps it.
            message = email.message_from_bytes(content.replace(b"\r\n", b"\n"),
                                               policy=email.policy.default)
            message_id = str(message["Message-ID"] or "")
        else:
            message, message_id = None, _header(content, b"message-id")
        with self.sink._lock:
            if message is not None:
                self.sink.messages.append(message)
            if self.sink.keep_raw:
                self.sink.raw.append(content)
            self.sink.message_ids.append(message_id)
            self.sink.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


def _header(content: bytes, name: bytes) -> str:
    """Return one header of a raw message without parsing all of it."""
    head = content.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().decode(errors="replace")
    return ""
