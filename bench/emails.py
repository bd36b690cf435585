"""Email benchmark: 20,000 rendered campaign emails sent by one worker to a local SMTP sink,
against a bare smtplib loop sending the same messages over one connection.

    .venv/bin/python bench/emails.py [--messages 20000]

Run by hand on the local PostgreSQL (it drops and recreates its own database,
``engage_email_bench``). The sink (aiosmtpd, ``tests/smtp_sink.py``) runs in a process of
its own on a free port. Prints:
(a) engage: one process calling ``send_due_emails()`` until nothing is due: claims,
    Liquid rendering (HTML escaped, CSS inlined, text part derived, links tracked), one
    SMTP connection per batch kept by the worker's relay process
    (``campaigns.smtp_relay``), sent emails recorded ``RECORD_EVERY`` at a time; emails a
    second, the worker's CPU and peak RSS, and the relay's;
(b) floor: the exact bytes the sink received in (a), sent again with ``smtplib`` over
    one connection (``sendmail`` in a loop, nothing else);
(c) the ratio (a)/(b) (target at least 0.5) and whether the sink got every message once.
"""

import os
import sys

# This file has the standard library's "email" name: keep its folder off the import path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import resource  # noqa: E402
import smtplib  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402

DB_NAME = "engage_email_bench"
DATABASE_URL = f"{common.SERVER_URL}/{DB_NAME}"
STEP = {
    "id": "mail", "type": "email", "from": "Acme <news@acme.test>", "reply_to": None,
    "to": "{{customer.email}}",
    "subject": "{{customer.first_name}}, your {{customer.plan}} plan this week",
    "body_html": (
        "<html><head><style>p { font-family: sans-serif } .cta { color: #fff; "
        "background: #06c; padding: 8px }</style></head><body>"
        "<p>Hi {{customer.first_name}},</p>"
        "<p>Thanks for being on {{ customer.plan | default: 'free' }} since "
        "{{customer.since}}. Here is what happened this week in {{campaign.name}}.</p>"
        "{% for n in (1..5) %}<p>Item {{n}}: something worth reading, "
        "<a href=\"https://acme.test/items/{{n}}\">read more</a></p>{% endfor %}"
        "<p><a class=\"cta\" href=\"https://acme.test/upgrade\">Upgrade</a></p>"
        "<p><a href=\"{% unsubscribe_url %}\">Unsubscribe</a></p></body></html>"),
    "body_text": None, "sending": "automatic", "tracking": True,
}


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --- the sink, in a process of its own -------------------------------------------------


def sink_process(pipe) -> None:
    from tests.smtp_sink import SmtpSink

    sink = SmtpSink(parse=False, keep_raw=True).start()
    pipe.send(sink.port)
    while True:
        command = pipe.recv()
        if command == "stats":
            pipe.send((len(sink.message_ids), len(set(sink.message_ids)), sink.connections))
        elif command == "raw":
            pipe.send(list(sink.raw))
        elif command == "clear":
            sink.clear()
            sink.raw.clear()
            pipe.send(True)
        elif command == "stop":
            sink.stop()
            pipe.send(True)
            return


# --- (a) engage's sender, in a fresh process -------------------------------------------


def worker(port: int) -> None:
    """Send every due email; print elapsed seconds, emails sent and peak RSS as JSON."""
    os.environ.update({"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(port),
                       "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend"})
    common.setup_django(DATABASE_URL)
    from campaigns import email
    from campaigns.models import Delivery

    started = time.perf_counter()
    while email.send_due_emails():
        pass
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    relay_peak_mb = _peak_mb(email._relay().pid)  # RUSAGE_CHILDREN counts the pre-exec fork
    email.stop_relay()  # ended and waited for: its CPU is counted in RUSAGE_CHILDREN
    relay = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"seconds": elapsed, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                      "sent": Delivery.objects.filter(state="sent").count(),
                      "peak_mb": usage.ru_maxrss / 1024,
                      "relay_cpu_seconds": relay.ru_utime + relay.ru_stime,
                      "relay_peak_mb": relay_peak_mb}))


def _peak_mb(pid: int) -> float:
    """Return a process's peak RSS in MB (Linux: VmHWM of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load(messages: int) -> None:
    """Create ``messages`` people, a running campaign and one queued email for each."""
    from django.db import connection
    from django.utils import timezone

    from campaigns import engine, services
    from campaigns.models import Campaign, Delivery, Journey
    from engage.services import create_workspace
    from people.models import Person
    from segments.services import create_segment

    workspace, _ = create_workspace(name="email bench", identifier_mode="email_or_id")
    now = timezone.now()
    for start in range(0, messages, 5000):
        Person.objects.bulk_create(
            Person(workspace=workspace, customer_id=f"user-{n}", email=f"user{n}@example.com",
                   attributes={"first_name": f"User{n}", "plan": "pro" if n % 3 else "free",
                               "since": 2020 + n % 5}, created_at=now, updated_at=now)
            for n in range(start, min(start + 5000, messages)))
    segment = create_segment(workspace, name="Everyone")
    campaign = services.create_campaign(workspace, {
        "name": "Weekly <news>", "exit": "never",
        "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "workflow": {"steps": [STEP]}})
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    engine.enter(campaign, [engine.Entry(f"p{pk}", pk, cio_id) for pk, cio_id in
                            Person.objects.values_list("pk", "cio_id")])
    # The engine's email step, in one statement: one queued delivery per journey.
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Delivery._meta.db_table} (workspace_id, campaign_id, journey_id, "
            "journey_seq, step_id, kind, state, cio_id, recipient, payload, reason, attempts, "
            "next_attempt_at, created_at) "
            "SELECT j.workspace_id, j.campaign_id, j.id, 1, 'mail', 'email', 'queued', "
            "j.cio_id, p.email, '{}', '', 0, %s, %s "
            f"FROM {Journey._meta.db_table} j JOIN {Person._meta.db_table} p "
            "ON p.id = j.person_id WHERE j.campaign_id = %s", [now, now, campaign.pk])
        Journey.objects.filter(campaign=campaign).update(state="finished", next_run_at=None)
        cursor.execute("ANALYZE")


# --- (b) the floor: bare smtplib over one connection -----------------------------------


def floor(port: int, raw: list[bytes]) -> float:
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for number, content in enumerate(raw):
            smtp.sendmail("news@acme.test", [f"user{number}@example.com"], content)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # the sink's port
    options = parser.parse_args()
    if options.worker:
        worker(options.worker)
        return 0

    common.recreate_database(DB_NAME)
    common.setup_django(DATABASE_URL)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    log(f"loading {options.messages} people and their queued emails")
    load(options.messages)

    ours, theirs = multiprocessing.Pipe()
    sink = multiprocessing.Process(target=sink_process, args=(theirs,), daemon=True)
    sink.start()
    port = ours.recv()

    log("(a) engage: send_due_emails() in a fresh process")
    result = subprocess.run([sys.executable, __file__, "--worker", str(port)], cwd=ROOT,
                            check=True, capture_output=True, text=True)
    engage = json.loads(result.stdout.strip().splitlines()[-1])
    ours.send("stats")
    received, unique, connections = ours.recv()
    ours.send("raw")
    raw = ours.recv()
    ours.send("clear")
    ours.recv()

    log("(b) floor: the same bytes with smtplib over one connection")
    floor_seconds = floor(port, raw)
    ours.send("stats")
    floor_received, _, _ = ours.recv()
    ours.send("stop")
    ours.recv()

    rate = engage["sent"] / engage["seconds"]
    floor_rate = floor_received / floor_seconds
    print(f"messages: {options.messages}")
    print(f"(a) engage: {engage['sent']} sent in {engage['seconds']:.2f} s = {rate:,.0f}/s; "
          f"{connections} SMTP connections; peak RSS {engage['peak_mb']:.0f} MB; "
          f"worker CPU {engage['cpu_seconds']:.1f} s; relay process CPU "
          f"{engage['relay_cpu_seconds']:.1f} s, peak RSS {engage['relay_peak_mb']:.0f} MB")
    print(f"    sink: {received} received, {unique} distinct Message-IDs")
    print(f"(b) floor: {floor_received} sent in {floor_seconds:.2f} s = {floor_rate:,.0f}/s")
    print(f"(c) engage / floor: {rate / floor_rate:.2f}x (target >= 0.5x); "
          f"peak RSS target < 300 MB: {'met' if engage['peak_mb'] < 300 else 'missed'}")
    load_average = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"    at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average: {load_average}")
    return 0 if received == unique == options.messages else 1


if __name__ == "__main__":
    sys.exit(main())
