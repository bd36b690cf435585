"""Benchmark the workflow editor's server time on a 60-step workflow with nested blocks.

Run it by hand from the repository root (PostgreSQL on 127.0.0.1:5432):

    .venv/bin/python bench/editor.py

It drops and recreates its own database ``engage_editor_bench``, migrates it, makes a
campaign of 60 steps (10 times: a delay, a branch holding a random split holding an email
and an exit, and a webhook on the branch's other path; emails with real bodies, some
steps left unconfigured so their cards carry the flag), and requests the editor through
Django's test client, signed in as an editor, with DEBUG off. "Server time" runs from
the request entering Django to the rendered response (routing, middleware, queries,
templates); no network and no browser.

Measured: the page (GET), a step's settings panel, and each kind of edit: add a step at
a slot in a nested path, move a block to another slot, save a step's settings, delete a
step, add and remove a random split's path. Edits come in pairs that undo each other, so
the workflow stays at 60 steps (61 while an added step waits for its delete). Each is
repeated ``--repeat`` times after ``--warmup``; printed: median, p95 and max of the wall
time, median and p95 of this process's CPU time (the Python side, without the time spent
waiting for a core on a busy machine or for PostgreSQL), and the number of queries of
the last request.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The repository's root in place of this script's folder, whose scripts are named like
# the apps and the standard library's modules (``segments``, ``campaigns``).
sys.path[0] = str(REPO_ROOT)

from bench import common  # noqa: E402

DATABASE = "engage_editor_bench"
TARGET_MS = 200.0
HTMX = {"HTTP_HX_REQUEST": "true"}


def workflow(blocks: int = 10) -> list[dict]:
    """Return ``blocks`` * 6 steps, blocks nested three deep."""
    steps = []
    for n in range(blocks):
        email = {"id": f"m{n}", "type": "email", "from": "team@example.com",
                 "subject": f"Hello {{{{customer.first_name | default: 'there'}}}} ({n})",
                 "body_html": "<h1>Hello</h1>" + "<p>{{customer.plan}} news.</p>" * 40}
        if n % 3 == 0:
            email.pop("subject")  # unconfigured: flagged on its card
        steps += [
            {"id": f"d{n}", "type": "delay", "duration": {"hours": n + 1}},
            {"id": f"b{n}", "type": "branch",
             "condition": {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}},
             "paths": [
                 {"key": "true", "steps": [
                     {"id": f"r{n}", "type": "random_split", "paths": [
                         {"key": "A", "weight": 50, "steps": [email]},
                         {"key": "B", "weight": 50, "steps": [{"id": f"x{n}",
                                                                "type": "exit"}]}]}]},
                 {"key": "false", "steps": [
                     {"id": f"w{n}", "type": "webhook", "method": "POST",
                      "url": "https://example.com/hook/{{customer.id}}",
                      "headers": {"Authorization": "Bearer token"},
                      "body": {"plan": "{{customer.plan}}"}}]}]},
        ]
    return steps


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    common.recreate_database(DATABASE)
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    # DEBUG off serves hashed static names, as production does: collect them first.
    os.environ["STATIC_ROOT"] = tempfile.mkdtemp(prefix="engage-editor-bench-")
    common.setup_django(f"{common.SERVER_URL}/{DATABASE}")
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    from campaigns import editing, services
    from campaigns.models import Campaign
    from engage.models import Membership
    from tests.factories import make_member, make_person, make_workspace

    workspace = make_workspace("editor bench")
    for n in range(200):
        make_person(workspace, f"p{n}", email=f"p{n}@example.com", first_name=f"P{n}",
                    plan="pro" if n % 2 else "free")
    campaign = services.create_campaign(workspace, {
        "name": "Editor bench", "trigger": {"event": {"name": "signed_up"}},
        "workflow": {"steps": workflow()}})
    steps = len(editing.step_ids(campaign.definition["workflow"]["steps"]))
    client = Client()
    client.force_login(make_member(workspace, Membership.Role.EDITOR))
    base = f"/campaigns/{campaign.pk}/workflow/"

    def version() -> int:
        return Campaign.objects.values_list("version", flat=True).get(pk=campaign.pk)

    # Each kind: a list of requests (method, url, data) made in turn; the edits' pairs
    # undo each other. ``None`` in data["version"] is filled with the current version.
    kinds = {
        "GET the editor page": [("get", base, {})],
        "GET a step's settings panel": [("get", f"{base}steps/m1/", {})],
        "add a step at a nested slot": [
            ("post", f"{base}add/", {"type": "delay", "parent": "r4", "path": "B",
                                     "index": "0", "step_id": "bench"}),
            ("post", f"{base}delete/", {"step": "bench"}, "untimed")],
        "move a block to another slot": [
            ("post", f"{base}move/", {"step": "b2", "index": "0"}),
            ("post", f"{base}move/", {"step": "b2", "index": "5"})],
        "save a step's settings": [
            ("post", f"{base}steps/d3/", {"days": "1", "hours": "2"}),
            ("post", f"{base}steps/d3/", {"hours": "4"})],
        "delete a step": [
            ("post", f"{base}delete/", {"step": "x7"}),
            ("post", f"{base}add/", {"type": "exit", "parent": "r7", "path": "B",
                                     "index": "0", "step_id": "x7"}, "untimed")],
        "add a random split's path": [
            ("post", f"{base}paths/add/", {"step": "r5"}),
            ("post", f"{base}paths/remove/", {"step": "r5", "key": "C"}, "untimed")],
        "remove a random split's path": [
            ("post", f"{base}paths/add/", {"step": "r6"}, "untimed"),
            ("post", f"{base}paths/remove/", {"step": "r6", "key": "C"})],
    }
    load_before = os.getloadavg()
    print(f"{steps} steps; {args.repeat} measured requests a kind after {args.warmup} to "
          f"warm up; load average before {load_before[0]:.2f} {load_before[1]:.2f} "
          f"{load_before[2]:.2f}\n")
    print("| request | median ms | p95 ms | max ms | CPU median ms | CPU p95 ms | queries "
          "| under 200 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for label, requests in kinds.items():
        times, cpu, queries = [], [], 0
        for round_ in range(args.warmup + args.repeat):
            for request in requests:
                method, url, data = request[:3]
                timed = len(request) == 3 and round_ >= args.warmup
                if method == "post":
                    data = {**data, "version": str(version())}
                with CaptureQueriesContext(connection) as captured:
                    started, started_cpu = time.perf_counter(), time.process_time()
                    response = getattr(client, method)(url, data, **HTMX)
                    elapsed = (time.perf_counter() - started) * 1000
                    elapsed_cpu = (time.process_time() - started_cpu) * 1000
                assert response.status_code == 200, (label, url, response.status_code,
                                                      response.content[:500])
                if timed:
                    times.append(elapsed)
                    cpu.append(elapsed_cpu)
                    queries = len(captured.captured_queries)
        ordered = sorted(times)
        p95 = percentile(ordered, 0.95)
        print(f"| {label} | {statistics.median(times):.1f} | {p95:.1f} | {ordered[-1]:.1f} "
              f"| {statistics.median(cpu):.1f} | {percentile(sorted(cpu), 0.95):.1f} "
              f"| {queries} | {'yes' if p95 <= TARGET_MS else 'no'} |", flush=True)
    load_after = os.getloadavg()
    print(f"\nload average after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
