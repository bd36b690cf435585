"""An SMTP relay process: a worker's one SMTP connection, in a process of its own.

A worker renders messages in its own thread; talking to the SMTP server from a second
thread of the same process made that thread wait for the GIL after each of the server's
four replies a message. The relay is a child process instead: it keeps one ``smtplib``
connection (opened with exactly the parameters of Django's SMTP backend), takes
envelopes over its stdin, sends them in order and writes each outcome, in order, to its
stdout. It imports neither Django nor engage, and touches no database.

The frames, both ways: a 4-byte length, then a pickle.
In: ``("open", parameters)``, ``("send", sender, recipients, content)``, ``("close",)``.
Out, one for each ``send``: ``(None, False)`` sent; ``(error, False)`` the error the
server or the line gave (the ``smtplib`` exception itself, as ``sendmail`` raised it);
``(error, True)`` unsent: the connection could not be opened, or reopened after it was
lost, so it was not tried. After ``close`` (the connection quit): ``("closed",)``; once
started: ``("ready",)``.

The relay ends at the end of its stdin (its worker ended, or dropped it), and on Linux
when the thread that started it dies (``PR_SET_PDEATHSIG``): a killed worker leaves no
relay sending behind it. It ignores SIGINT and SIGTERM, which its worker's process group
gets: the worker decides when the relay ends.
"""

import ctypes
import os
import pickle
import select
import signal
import smtplib
import ssl
import struct
import subprocess
import sys
import weakref
from pathlib import Path

_LENGTH = struct.Struct("!I")
_PR_SET_PDEATHSIG = 1
_F_SETPIPE_SZ = 1031  # Linux: a pipe holding IN_FLIGHT messages without blocking the worker
_PIPE_SIZE = 1 << 20


def connection_lost(error: Exception) -> bool:
    """Tell whether a sending error means the connection is gone (to be reopened)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):  # smtplib hangs up after a 421
        return any(code == 421 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code == 421  # the server is closing the connection
    # SMTPException is an OSError too: only a socket's own error means the line is gone.
    return isinstance(error, smtplib.SMTPServerDisconnected) or (
        isinstance(error, OSError) and not isinstance(error, smtplib.SMTPException))


class RelayStopped(RuntimeError):
    """The relay process ended or stopped answering in the middle of a batch."""


# --- the worker's side -----------------------------------------------------------------


class Relay:
    """A relay process of this worker: start it, then per batch ``open``, ``send`` ...,
    read each ``outcome`` in order, ``close``; ``stop`` it at the end (or ``kill``)."""

    def __init__(self):
        root = str(Path(__file__).resolve().parent.parent)  # where ``campaigns`` is found
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, cwd=root,
            env={**os.environ, "PYTHONPATH": path})
        self.pid = self.process.pid
        self._in = self.process.stdin.fileno()
        self._out = self.process.stdout.fileno()
        self._buffer = bytearray()
        try:
            import fcntl

            fcntl.fcntl(self._in, _F_SETPIPE_SZ, _PIPE_SIZE)
        except (ImportError, OSError):  # not Linux, or pipes limited: writes block sooner
            pass
        # A relay dropped without stop() (its thread ended) is not left running.
        self._finalizer = weakref.finalize(self, _end, self.process)
        try:
            ready = self._read(wait=True)  # it started: a batch never waits on a dead one
        except RelayStopped:
            self.kill()
            raise
        if ready != ("ready",):
            self.kill()
            raise RelayStopped(f"the relay answered {ready!r} when it started")

    def alive(self) -> bool:
        return self.process.poll() is None

    def open(self, parameters: dict) -> None:
        """Have the relay open its connection (see ``connect``); a failure comes back as
        every message's outcome, unsent."""
        self._write(("open", parameters))

    def send(self, sender: str, recipients: list[str], content: bytes) -> None:
        self._write(("send", sender, recipients, content))

    def outcome(self, *, wait: bool) -> tuple[Exception | None, bool] | None:
        """Return the next message's outcome ``(error or None, unsent)``, in the order
        they were sent; None when none is ready and ``wait`` is false."""
        frame = self._read(wait=wait)
        if frame is not None and frame[0] == "closed":
            raise RelayStopped("the relay closed its connection with messages unanswered")
        return frame

    def close(self) -> None:
        """Have the relay quit its connection; wait until it has (the batch is over)."""
        self._write(("close",))
        frame = self._read(wait=True)
        if frame != ("closed",):
            raise RelayStopped(f"the relay answered {frame!r} to close")

    def stop(self, timeout: float = 5) -> None:
        """End the relay: it quits once it reads the end of its input."""
        self._finalizer.detach()
        _end(self.process, timeout=timeout)

    def kill(self) -> None:
        """End the relay at once: what it was handed and did not send is not sent."""
        self._finalizer.detach()
        _end(self.process, timeout=0)

    def _write(self, frame: tuple) -> None:
        data = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_LENGTH.pack(len(data)) + data)
        try:
            while view:
                view = view[os.write(self._in, view):]
        except OSError as error:  # BrokenPipeError: it died
            raise RelayStopped(f"the relay stopped: {error}") from None

    def _read(self, *, wait: bool):
        while True:
            if len(self._buffer) >= _LENGTH.size:
                (length,) = _LENGTH.unpack_from(self._buffer)
                end = _LENGTH.size + length
                if len(self._buffer) >= end:
                    frame = pickle.loads(self._buffer[_LENGTH.size:end])
                    del self._buffer[:end]
                    return frame
            if not wait and not select.select([self._out], [], [], 0)[0]:
                return None
            data = os.read(self._out, 1 << 16)
            if not data:
                code = self.process.wait()
                raise RelayStopped(f"the relay stopped (exit status {code})")
            self._buffer += data


def _end(process: subprocess.Popen, timeout: float = 5) -> None:
    for pipe in (process.stdin, process.stdout):
        try:
            pipe.close()
        except OSError:
            pass
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- the relay's side ------------------------------------------------------------------


def connect(parameters: dict) -> smtplib.SMTP:
    """Open a connection as ``django.core.mail.backends.smtp.EmailBackend.open`` does,
    from its ``host``, ``port``, ``username``, ``password``, ``use_tls``, ``use_ssl``,
    ``timeout``, ``ssl_keyfile``, ``ssl_certfile`` and ``local_hostname``."""
    options = {"local_hostname": parameters["local_hostname"]}
    if parameters["timeout"] is not None:
        options["timeout"] = parameters["timeout"]
    context = None
    if parameters["use_ssl"] or parameters["use_tls"]:
        context = _ssl_context(parameters["ssl_certfile"], parameters["ssl_keyfile"])
    if parameters["use_ssl"]:
        smtp = smtplib.SMTP_SSL(parameters["host"], parameters["port"], context=context,
                                **options)
    else:
        smtp = smtplib.SMTP(parameters["host"], parameters["port"], **options)
    try:
        if not parameters["use_ssl"] and parameters["use_tls"]:
            smtp.starttls(context=context)
        if parameters["username"] and parameters["password"]:
            smtp.login(parameters["username"], parameters["password"])
    except BaseException:
        _hang_up(smtp)
        raise
    return smtp


def _ssl_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext:
    if certfile or keyfile:
        context = ssl.SSLContext(protocol=ssl.PROTOCOL_TLS_CLIENT)
        context.load_cert_chain(certfile, keyfile)
        return context
    return ssl.create_default_context()


def _hang_up(smtp: smtplib.SMTP | None) -> None:
    """Quit, or drop the line when quitting fails (as Django's backend closes)."""
    if smtp is None:
        return
    try:
        smtp.quit()
    except Exception:  # already disconnected, a TLS hiccup, an odd reply: drop it
        smtp.close()


def _portable(error: Exception) -> Exception:
    """Return the error if it crosses the pipe intact, else one telling the same."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        kind = OSError if isinstance(error, OSError) else RuntimeError
        return kind(f"{type(error).__name__}: {error}")
    return error


def serve(source, sink) -> None:
    """Relay frames from ``source`` to the SMTP server, outcomes to ``sink``, until the
    end of ``source``."""

    def answer(frame) -> None:
        _answer(sink, frame)

    smtp: smtplib.SMTP | None = None
    parameters: dict = {}
    broken: Exception | None = None  # no connection: later messages are not tried

    def reopen() -> None:
        nonlocal smtp, broken
        _hang_up(smtp)
        smtp = None
        try:
            smtp = connect(parameters)
        except Exception as error:
            broken = _portable(error)

    while (head := source.read(_LENGTH.size)) and len(head) == _LENGTH.size:
        (length,) = _LENGTH.unpack(head)
        body = source.read(length)
        if len(body) != length:
            break
        frame = pickle.loads(body)
        if frame[0] == "send":
            if broken is not None:
                answer((broken, True))
                continue
            try:
                smtp.sendmail(frame[1], frame[2], frame[3])
            except Exception as error:
                answer((_portable(error), False))
                if connection_lost(error):
                    reopen()
                continue
            answer((None, False))
        elif frame[0] == "open":
            parameters, broken = frame[1], None
            reopen()
        elif frame[0] == "close":
            _hang_up(smtp)
            smtp = None
            answer(("closed",))
    _hang_up(smtp)


def _answer(sink, frame: tuple) -> None:
    data = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    sink.write(_LENGTH.pack(len(data)) + data)
    sink.flush()


def _die_with(parent: int) -> None:
    """End this process when the thread that started it ends (Linux), or at once when
    that process is already gone."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        sys.exit(0)


def main() -> None:
    _die_with(int(sys.argv[1]))
    # Signals to the worker's process group (Ctrl-C, a service manager's SIGTERM) are the
    # worker's to handle: the relay sends what it was handed and ends with the worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _answer(sys.stdout.buffer, ("ready",))
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
