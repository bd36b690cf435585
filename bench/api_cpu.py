"""Python CPU per API request, measured in-process (no HTTP server, no load generator).

Calls engage's WSGI application directly, as gunicorn would, with the same requests as
``bench/ingest.py``, and reports the worker CPU (``time.process_time``) and the SQL
statements of each kind of request. PostgreSQL's own CPU is not counted: this is the
part of a request that the Python worker pays for, which bounds ingestion on a small
machine (see docs/benchmarks.md). ``--profile`` prints where that time goes.

    .venv/bin/python bench/api_cpu.py [--requests 400] [--profile v1-event]

Uses (and recreates) the ``engage_ingest_bench`` database.
"""

import argparse
import base64
import contextlib
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

# The repository's root in place of this script's folder, whose scripts are named like
# the apps and the standard library's modules (``segments``, ``campaigns``).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import common  # noqa: E402

DB_NAME = "engage_ingest_bench"
CREATED_AT = 1_700_000_000
HALF = 50  # a batch: 50 identifies of new people and 50 events of existing ones


def environ(method: str, path: str, body: bytes, auth: str) -> dict:
    return {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_AUTHORIZATION": auth, "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.multithread": False,
        "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0),
    }


def requests(scenario: str, n: int, existing: list[str], run: str):
    """Yield ``n`` (method, path, body) of a scenario, as bench/ingest.py sends them."""
    for k in range(n):
        if scenario == "v1-identify-create":
            pid = f"{run}-c-{k}"
            yield "PUT", f"/api/v1/customers/{pid}", {
                "email": f"{pid}@example.com", "first_name": "Ada", "last_name": "Lovelace",
                "plan": "pro", "age": 36, "created_at": CREATED_AT}
        elif scenario == "v1-identify-update":
            yield "PUT", f"/api/v1/customers/{existing[k % len(existing)]}", {
                "plan": f"{run}{k}", "last_seen": CREATED_AT + k, "age": 37}
        elif scenario == "v1-event":
            yield "POST", f"/api/v1/customers/{existing[k % len(existing)]}/events", {
                "name": "purchased", "data": {"price": 23.5, "currency": "EUR",
                                              "sku": f"sku-{k}"}, "timestamp": CREATED_AT}
        elif scenario == "v1-auth-only":
            yield "GET", "/api/v1/accounts/region", None
        elif scenario == "v2-batch":
            operations = []
            for j in range(HALF):
                nid = f"{run}-b-{k}-{j}"
                operations.append({
                    "type": "person", "action": "identify", "identifiers": {"id": nid},
                    "attributes": {"email": f"{nid}@example.com", "first_name": "Ada",
                                   "last_name": "Lovelace", "plan": "pro", "age": 36,
                                   "created_at": CREATED_AT}})
                operations.append({
                    "type": "person", "action": "event",
                    "identifiers": {"id": existing[(k * HALF + j) % len(existing)]},
                    "name": "purchased", "attributes": {"price": 23.5, "sku": f"sku-{k}"},
                    "timestamp": CREATED_AT})
            yield "POST", "/api/v2/batch", {"batch": operations}


SCENARIOS = ["v1-auth-only", "v1-identify-create", "v1-identify-update", "v1-event",
             "v2-batch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per scenario")
    parser.add_argument("--profile", default="", help="a scenario to profile with cProfile")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--statements", action="store_true",
                        help="print each SQL statement and its mean wall time")
    parser.add_argument("--reuse", action="store_true", help="keep the database as it is")
    args = parser.parse_args()

    url = f"{common.SERVER_URL}/{DB_NAME}"
    if not args.reuse:
        common.recreate_database(DB_NAME)
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
    common.setup_django(url)
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from django.db import connection

    from engage.models import Workspace
    from engage.services import create_workspace

    if not args.reuse:
        call_command("migrate", verbosity=0)
    workspace, keys = create_workspace(name="api cpu bench", identifier_mode="email_or_id")
    auth = "Basic " + base64.b64encode(f"{keys.site_id}:{keys.track_api_key}".encode()).decode()
    app = get_wsgi_application()
    run = f"r{int(time.time())}"

    def call(method, path, payload):
        body = json.dumps(payload).encode() if payload is not None else b""
        status = []
        chunks = app(environ(method, path, body, auth), lambda s, h: status.append(s))
        b"".join(chunks)
        if not status[0].startswith("200"):
            raise SystemExit(f"{method} {path}: {status[0]}")

    existing = [f"{run}-e-{k}" for k in range(2000)]
    for pid in existing:
        call("PUT", f"/api/v1/customers/{pid}", {"plan": "free"})
    print(f"workspace {workspace.pk} ({Workspace.objects.count()} in the database); "
          f"{args.requests} requests a scenario; CPU of this process only")
    print(f"{'scenario':22} {'CPU ms/request':>15} {'wall ms/request':>16} {'statements':>11}")
    for scenario in SCENARIOS:
        n = args.requests if scenario != "v2-batch" else max(args.requests // 20, 10)
        calls = list(requests(scenario, n + 1, existing, run + scenario[:6]))
        statements = []

        def record(execute, sql, *rest, statements=statements):
            statements.append(sql)
            return execute(sql, *rest)

        with connection.execute_wrapper(record):
            call(*calls[0])
        timings: dict[int, float] = {}
        per_request = max(len(statements), 1)

        def timed(execute, sql, *rest, timings=timings, count=per_request):
            # Wall time of each statement, by its place in the request: the database's
            # work, the round trip and psycopg's client side.
            start = time.perf_counter()
            try:
                return execute(sql, *rest)
            finally:
                timings[len(timings)] = (len(timings) % count, time.perf_counter() - start)

        profiler = cProfile.Profile(time.process_time) if scenario == args.profile else None
        wrapper = (connection.execute_wrapper(timed) if args.statements
                   else contextlib.nullcontext())
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        with wrapper:
            for method, path, payload in calls[1:]:
                call(method, path, payload)
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"{scenario:22} {cpu * 1000 / n:15.2f} {wall * 1000 / n:16.2f} "
              f"{len(statements):11}")
        if args.statements:
            per_place = [[] for _ in statements]
            for place, seconds in timings.values():
                per_place[place].append(seconds)
            for sql, seconds in zip(statements, per_place, strict=True):
                mean = sum(seconds) * 1000 / max(len(seconds), 1)
                print(f"    {mean:6.2f} ms wall  {sql[:130]}")
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.top)
            print(out.getvalue())


if __name__ == "__main__":
    main()
