"""Webhook benchmark: campaign webhook calls to a local server, sent by one worker, against
a bare ``requests`` loop making the same calls.

    .venv/bin/python bench/webhooks.py [--calls 2000] [--concurrency 1 4]

Run by hand on the local PostgreSQL (it drops and recreates its own database,
``engage_webhooks_bench``). A local HTTP server (another process, keep-alive, answering
``{"plan": "pro"}``) receives every call. Prints:
(a) engage: ``--calls`` journeys waiting at a webhook step (POST, a JSON body and a header
    rendered with Liquid), sent by the worker's loop (``send_due_webhooks`` until none is
    due), in calls a second, for each concurrency; "mapped": the step maps the answer into
    an attribute (one ``update_people`` call a batch), "plain": it does not;
(b) the floor: a bare ``requests.Session`` loop POSTing the same bodies to the same
    server, one after the other, and ``requests.post`` without a session;
(c) the worker's peak memory (max RSS).
"""

import sys
from pathlib import Path

# Run as a script, its own folder comes first on the path, and bench/email.py would shadow
# the standard library's email (which http.server imports): the repository root instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from datetime import datetime  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

from bench import common  # noqa: E402

DB_NAME = "engage_webhooks_bench"
DATABASE_URL = f"{common.SERVER_URL}/{DB_NAME}"
ANSWER = json.dumps({"plan": "pro", "score": 7}).encode()


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One segment per answer, sent at once (no Nagle delay on kept-alive connections).
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)

    do_POST = do_GET = _serve


def serve(port_queue) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_queue.put(server.server_address[1])
    server.serve_forever()


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare_journeys(url: str, calls: int, *, mapped: bool):
    """Create a running campaign with a webhook step and ``calls`` journeys waiting at it;
    ``mapped``: the step maps the answer's ``plan`` into the person's attributes."""
    from django.db.models import Count

    from campaigns import engine, services
    from campaigns.models import Campaign, Delivery
    from engage.services import create_workspace
    from people import services as people
    from segments.services import create_segment

    workspace, _ = create_workspace(name=f"webhooks bench {time.time()}",
                                    identifier_mode="email_or_id")
    segment = create_segment(workspace, name="everyone")
    campaign = services.create_campaign(workspace, {
        "name": "Bench", "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "exit": "never", "workflow": {"steps": [{
            "id": "hook", "type": "webhook", "method": "POST", "url": url + "/hook",
            "headers": {"X-Customer": "{{customer.id}}"},
            "body": {"id": "{{customer.id}}", "email": "{{customer.email}}"},
            "response": [{"path": "plan", "attribute": "plan"}] if mapped else []}]}})
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    campaign.refresh_from_db()
    entries = []
    for number in range(calls):
        person = people.identify_person(workspace, people.Ref("id", f"user-{number}"),
                                        {"email": f"user{number}@example.com"}).person
        entries.append(engine.Entry(f"bench:{person.pk}", person.pk, person.cio_id))
    engine.enter(campaign, entries)
    while engine.advance_due(limit=500):
        pass
    states = dict(Delivery.objects.filter(campaign=campaign).values_list("state")
                  .annotate(n=Count("pk")).values_list("state", "n"))
    assert states == {"queued": calls}, states
    return campaign


def run_engage(url: str, calls: int, concurrency: int, *, mapped: bool) -> float:
    from django.conf import settings

    from campaigns import webhooks
    from campaigns.models import Delivery

    settings.ENGAGE_WEBHOOK_CONCURRENCY = concurrency
    campaign = prepare_journeys(url, calls, mapped=mapped)
    started = time.perf_counter()
    while webhooks.send_due_webhooks():
        pass
    elapsed = time.perf_counter() - started
    sent = Delivery.objects.filter(campaign=campaign, state="sent").count()
    assert sent == calls, sent
    return elapsed


def run_bare(url: str, calls: int, *, session: bool) -> float:
    import requests

    client = requests.Session() if session else requests
    started = time.perf_counter()
    for number in range(calls):
        response = client.post(url + "/hook", json={"id": f"user-{number}",
                                                   "email": f"user{number}@example.com"},
                               headers={"X-Customer": f"user-{number}"}, timeout=(5, 15))
        response.json()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()

    ports = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(ports,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{ports.get(timeout=10)}"

    common.recreate_database(DB_NAME)
    common.setup_django(DATABASE_URL)
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    settings.ENGAGE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]

    results = {}
    run_bare(url, 100, session=True)  # warm the server up
    for mapped in (True, False):
        for concurrency in args.concurrency:
            name = f"engage_c{concurrency}_{'mapped' if mapped else 'plain'}"
            log(name)
            results[name] = run_engage(url, args.calls, concurrency, mapped=mapped)
    log("bare requests")
    results["requests_session"] = run_bare(url, args.calls, session=True)
    results["requests_post"] = run_bare(url, args.calls, session=False)
    server.terminate()

    floor = args.calls / results["requests_session"]
    for name, elapsed in results.items():
        rate = args.calls / elapsed
        print(f"{name:20} {args.calls} calls in {elapsed:6.2f} s = {rate:7.0f}/s "
              f"({rate / floor:.2f}x the session loop)")
    print(f"peak RSS {peak_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
