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
    server, one after the other, measured right before each engage run (each ratio is to
    the floor measured next to it: the load of a shared machine drifts), and
    ``requests.post`` without a session;
(c) the CPU time of this process a call (all its threads; not the server's nor
    PostgreSQL's), steadier than the rates on a loaded machine;
(d) the worker's peak memory (max RSS).
"""

import sys
from pathlib import Path

# Run as a script, its own folder comes first on the path, where a module named like a
# standard library one would shadow it: the repository root instead.
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


def run_engage(url: str, calls: int, concurrency: int, *, mapped: bool
               ) -> tuple[float, float, float]:
    """Return the seconds engage took, those the session loop took just before, and the
    worker's CPU seconds (all its threads)."""
    from django.conf import settings

    from campaigns import webhooks
    from campaigns.models import Delivery

    settings.ENGAGE_WEBHOOK_CONCURRENCY = concurrency
    campaign = prepare_journeys(url, calls, mapped=mapped)
    # On a shared machine the load drifts: the floor is measured right before each run.
    floor, _ = run_bare(url, calls, session=True)
    started, cpu = time.perf_counter(), time.process_time()
    while webhooks.send_due_webhooks():
        pass
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    sent = Delivery.objects.filter(campaign=campaign, state="sent").count()
    assert sent == calls, sent
    return elapsed, floor, cpu


def run_bare(url: str, calls: int, *, session: bool) -> tuple[float, float]:
    """Return the seconds and the CPU seconds the loop took."""
    import requests

    client = requests.Session() if session else requests
    started, cpu = time.perf_counter(), time.process_time()
    for number in range(calls):
        response = client.post(url + "/hook", json={"id": f"user-{number}",
                                                   "email": f"user{number}@example.com"},
                               headers={"X-Customer": f"user-{number}"}, timeout=(5, 15))
        response.json()
    return time.perf_counter() - started, time.process_time() - cpu


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

    rows = []  # (name, seconds, seconds of the session loop measured just before, CPU s)
    run_bare(url, 100, session=True)  # warm the server up
    for mapped in (True, False):
        for concurrency in args.concurrency:
            name = f"engage_c{concurrency}_{'mapped' if mapped else 'plain'}"
            log(name)
            rows.append((name, *run_engage(url, args.calls, concurrency, mapped=mapped)))
    log("bare requests")
    floor, cpu = run_bare(url, args.calls, session=True)
    rows.append(("requests_session", floor, floor, cpu))
    post, cpu = run_bare(url, args.calls, session=False)
    rows.append(("requests_post", post, floor, cpu))
    server.terminate()

    for name, elapsed, floor, cpu in rows:
        rate = args.calls / elapsed
        print(f"{name:20} {args.calls} calls in {elapsed:6.2f} s = {rate:7.0f}/s "
              f"({floor / elapsed:.2f}x the session loop's {args.calls / floor:.0f}/s), "
              f"CPU {1000 * cpu / args.calls:.2f} ms a call")
    print(f"peak RSS {peak_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
