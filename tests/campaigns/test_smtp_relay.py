"""The SMTP relay: a worker's connection in a process of its own, to a real local sink."""

import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from campaigns import email, smtp_relay
from campaigns.models import Delivery
from tests.campaigns.test_email import MAIL, queue, running
from tests.factories import make_person

ROOT = Path(__file__).resolve().parents[2]


def parameters(host="127.0.0.1", port=25, **changes) -> dict:
    return {"host": host, "port": port, "username": "", "password": "", "use_tls": False,
            "use_ssl": False, "timeout": 10, "ssl_keyfile": None, "ssl_certfile": None,
            "local_hostname": "worker.test", **changes}


def message(number: int) -> tuple[str, list[str], bytes]:
    return ("news@acme.test", [f"p{number}@example.com"],
            f"From: news@acme.test\r\nTo: p{number}@example.com\r\nSubject: {number}\r\n"
            f"Message-ID: <m{number}@acme.test>\r\n\r\nHello {number}\r\n".encode())


def running_pid(pid: int) -> bool:
    """Tell whether the process runs (a zombie, ended but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def relays_left_behind() -> list[int]:
    """Return the relays running whose worker (the pid each was started with) is gone."""
    left = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or it just ended
            continue
        if command[1:3] == [b"-m", b"campaigns.smtp_relay"] and running_pid(int(entry.name)) \
                and not running_pid(int(command[3])):
            left.append(int(entry.name))
    return left


def ends(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running_pid(pid):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def relay():
    relay = smtp_relay.Relay()
    yield relay
    relay.kill()


def send(relay, *numbers) -> list:
    for number in numbers:
        relay.send(*message(number))
    return [relay.outcome(wait=True) for _ in numbers]


def test_messages_reach_the_server_once_each_in_order_over_one_connection(relay, smtp_sink):
    relay.open(parameters(smtp_sink.host, smtp_sink.port))

    assert send(relay, *range(30)) == [(None, False)] * 30
    relay.close()

    assert smtp_sink.message_ids == [f"<m{n}@acme.test>" for n in range(30)]
    assert smtp_sink.recipients == [[f"p{n}@example.com"] for n in range(30)]
    assert smtp_sink.connections == 1
    assert relay.outcome(wait=False) is None  # nothing more to read


def test_refused_recipients_come_back_as_smtplib_raised_them(relay, smtp_sink):
    smtp_sink.replies["p1@example.com"] = "451 4.3.0 Mailbox busy, try again"
    smtp_sink.replies["p2@example.com"] = "550 5.1.1 No such user"
    relay.open(parameters(smtp_sink.host, smtp_sink.port))

    fine, busy, unknown, after = send(relay, 0, 1, 2, 3)
    relay.close()

    assert fine == after == (None, False)
    for (error, unsent), code, temporary in ((busy, 451, True), (unknown, 550, False)):
        assert isinstance(error, smtplib.SMTPRecipientsRefused) and not unsent
        assert list(error.recipients.values())[0][0] == code
        assert email.classify(error)[0] is temporary
        assert not smtp_relay.connection_lost(error)
    assert email.classify(busy[0])[1] == "451 4.3.0 Mailbox busy, try again"
    assert smtp_sink.message_ids == ["<m0@acme.test>", "<m3@acme.test>"]
    assert smtp_sink.connections == 1  # refusals do not cost the connection


@pytest.mark.parametrize("reply", ["421 4.3.2 Shutting down", "drop"])
def test_a_connection_the_server_ends_is_reopened_for_the_next(relay, smtp_sink, reply):
    smtp_sink.replies["p1@example.com"] = reply
    relay.open(parameters(smtp_sink.host, smtp_sink.port))

    first, lost, *rest = send(relay, 0, 1, 2, 3)
    relay.close()

    error, unsent = lost
    assert smtp_relay.connection_lost(error) and not unsent
    assert email.classify(error)[0] is True  # temporary: queued again
    if reply == "drop":
        assert isinstance(error, smtplib.SMTPServerDisconnected)
    assert [first, *rest] == [(None, False)] * 3
    assert smtp_sink.message_ids == ["<m0@acme.test>", "<m2@acme.test>", "<m3@acme.test>"]
    assert smtp_sink.connections == 2


def test_without_a_server_every_message_comes_back_unsent(relay, smtp_sink):
    port = smtp_sink.port
    smtp_sink.stop()
    relay.open(parameters(port=port))

    outcomes = send(relay, 0, 1, 2)
    relay.close()

    assert [(type(error), unsent) for error, unsent in outcomes] == [
        (ConnectionRefusedError, True)] * 3
    assert email.classify(outcomes[0][0])[0] is True
    assert smtp_relay.connection_lost(outcomes[0][0])


def test_a_server_gone_in_the_middle_leaves_the_rest_unsent(relay, smtp_sink):
    relay.open(parameters(smtp_sink.host, smtp_sink.port))
    assert send(relay, 0) == [(None, False)]
    smtp_sink.stop()

    (lost, lost_unsent), *rest = send(relay, 1, 2, 3)
    relay.close()

    assert smtp_relay.connection_lost(lost) and not lost_unsent  # tried: it may have gone
    assert [(type(error), unsent) for error, unsent in rest] == [
        (ConnectionRefusedError, True)] * 2


def test_one_relay_serves_batch_after_batch_with_a_connection_each(relay, smtp_sink):
    for batch in range(3):
        relay.open(parameters(smtp_sink.host, smtp_sink.port))
        assert send(relay, batch * 2, batch * 2 + 1) == [(None, False)] * 2
        relay.close()

    assert smtp_sink.message_ids == [f"<m{n}@acme.test>" for n in range(6)]
    assert smtp_sink.connections == 3
    relay.stop()
    assert not running_pid(relay.pid)


@pytest.mark.parametrize("security", [{"EMAIL_USE_TLS": True}, {"EMAIL_USE_SSL": True}])
def test_the_relay_opens_the_connection_as_djangos_backend_would(monkeypatch, settings,
                                                                 security):
    from django.core import mail

    seen = []

    class Recording(smtplib.SMTP_SSL):
        def __init__(self, host, port, **options):
            seen.append((type(self).__name__, host, port, {
                name: type(value).__name__ if name == "context" else value
                for name, value in options.items()}))

        def starttls(self, **options):
            seen.append(("starttls", sorted(options)))

        def login(self, user, password, **options):
            seen.append(("login", user, password))

    monkeypatch.setattr(smtplib, "SMTP", type("SMTP", (Recording,), {}))
    monkeypatch.setattr(smtplib, "SMTP_SSL", type("SMTP_SSL", (Recording,), {}))
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "mx.test", 2525, 7
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    for name, value in security.items():
        setattr(settings, name, value)
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "engage", "secret"
    mail.get_connection().open()
    djangos = list(seen)
    seen.clear()

    smtp_relay.connect(email._parameters(mail.get_connection()))

    assert seen == djangos
    assert seen[0][1:3] == ("mx.test", 2525) and seen[-1] == ("login", "engage", "secret")


# --- the relay's life: it never outlives its worker ------------------------------------

PARENT = """
import socket, sys, time
from campaigns import smtp_relay

mute = socket.socket()  # accepts connections and never greets: the relay waits on it
mute.bind(("127.0.0.1", 0))
mute.listen()
relay = smtp_relay.Relay()
relay.open({{**{parameters!r}, "port": mute.getsockname()[1]}})
relay.send("news@acme.test", ["ada@example.com"], b"Subject: hi\\r\\n\\r\\nHi\\r\\n")
print(relay.pid, flush=True)
if sys.argv[1] == "exit":
    sys.exit(0)
time.sleep(300)
"""


@pytest.mark.parametrize("ending", ["SIGKILL", "exit"])
def test_the_relay_ends_when_its_worker_ends(ending):
    script = PARENT.format(parameters=parameters(timeout=300))
    parent = subprocess.Popen([sys.executable, "-c", script, ending],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert running_pid(child)
        if ending == "SIGKILL":  # while the relay waits for a server that says nothing
            os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)

        assert ends(child), "the relay outlived its worker"
    finally:
        parent.kill()
        parent.wait()


def test_a_threads_relay_ends_with_the_thread(relay, smtp_sink):
    started = []

    def batch():
        own = email._relay()
        own.open(parameters(smtp_sink.host, smtp_sink.port))
        started.append(own.pid)
        assert send(own, 0) == [(None, False)]
        own.close()

    thread = threading.Thread(target=batch)
    thread.start()
    thread.join()

    assert smtp_sink.message_ids == ["<m0@acme.test>"]
    assert ends(started[0])


# --- the batches that use it -----------------------------------------------------------


@pytest.mark.django_db
def test_a_workers_batches_share_its_relay_until_it_stops(workspace, smtp_sink):
    campaign = running(workspace, [MAIL])
    queue(campaign, *[make_person(workspace, f"p{n}", email=f"p{n}@example.com")
                      for n in range(4)])

    assert email.send_due_emails(limit=2) == 2
    relay = email._relay()
    assert email.send_due_emails(limit=2) == 2

    assert email._relay() is relay and relay.alive()  # started once, for both batches
    assert smtp_sink.connections == 2  # a connection a batch, as before
    assert Delivery.objects.filter(state="sent").count() == 4
    email.stop_relay()
    assert not running_pid(relay.pid)


@pytest.mark.django_db
def test_a_batch_cut_off_by_an_error_ends_its_relay_and_sends_nothing_more(
        workspace, smtp_sink, monkeypatch):
    campaign = running(workspace, [MAIL])
    queue(campaign, *[make_person(workspace, f"p{n:02}", email=f"p{n:02}@example.com")
                      for n in range(email.IN_FLIGHT * 2)])
    email.stop_relay()
    relays = []
    opened = email._Batch.__init__

    def batch_init(self, claimed):
        opened(self, claimed)
        relays.append(self.relay)

    def record(*args, **kwargs):
        raise RuntimeError("the database is gone")

    monkeypatch.setattr(email._Batch, "__init__", batch_init)
    monkeypatch.setattr(email._SentRecorder, "add", record)

    with pytest.raises(RuntimeError, match="the database is gone"):
        email.send_due_emails()

    (relay,) = relays
    assert not running_pid(relay.pid)
    received = len(smtp_sink.message_ids)
    time.sleep(0.2)
    assert len(smtp_sink.message_ids) == received <= email.IN_FLIGHT
    # The cut-off batch stays claimed: its lease decides (expire_sending).
    assert Delivery.objects.filter(state="sending").count() == email.IN_FLIGHT * 2


@pytest.mark.django_db
def test_a_server_that_is_gone_queues_the_whole_batch_again(workspace, settings):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5
    campaign = running(workspace, [MAIL])
    queue(campaign, *[make_person(workspace, f"p{n}", email=f"p{n}@example.com")
                      for n in range(5)])

    assert email.send_due_emails() == 5

    assert {(d.state, d.attempts, d.reason.startswith("will retry: ConnectionRefusedError"))
            for d in Delivery.objects.all()} == {("queued", 1, True)}


@pytest.mark.django_db
def test_a_relay_that_cannot_start_leaves_the_batch_queued_again(workspace, smtp_sink,
                                                                  monkeypatch):
    email.stop_relay()
    monkeypatch.setattr(smtp_relay, "__name__", "campaigns.no_such_relay")  # it fails
    campaign = running(workspace, [MAIL])
    queue(campaign, *[make_person(workspace, f"p{n}", email=f"p{n}@example.com")
                      for n in range(3)])

    assert email.send_due_emails() == 3

    assert {(d.state, d.attempts, d.reason.split(" (")[0]) for d in Delivery.objects.all()} \
        == {("queued", 1, "will retry: RelayStopped: the relay stopped")}
    assert smtp_sink.message_ids == []
