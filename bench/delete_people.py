"""Benchmark ``people.services.delete_people`` on PostgreSQL against a raw-SQL floor.

Run it by hand from the repository root:

    .venv/bin/python bench/delete_people.py                       # full size
    .venv/bin/python bench/delete_people.py --people 2000         # quick check

At full size (100,000 people, 1,000,000 events) it takes about 7 minutes on 2 cores,
most of it loading the data four times.

It drops and recreates the database ``engage_bench`` on 127.0.0.1:5432 (user postgres,
never the ``test`` database), migrates it, and then, for each variant:

1. loads fresh data with COPY: ``--people`` people (email_or_id workspace, each with a
   customer_id and an email), ``--events-per-person`` events each, a device for a share
   of them (``--device-share``) and ``--activities-per-person`` activity rows each;
   then VACUUM ANALYZE and a CHECKPOINT, so the timed run starts from a settled database;
2. deletes every person of the workspace in a fresh subprocess, so that the peak RSS
   reported (the process's high-water mark, ``VmHWM``) belongs to that variant alone;
3. checks that people, events and devices are gone, that one deleted/suppressed activity
   row was written per person, and with suppression that each person left two
   suppressed identifiers (customer_id and email).

Variants:

* ``service``           delete_people(ws, Person.objects.filter(workspace=ws), suppress=False)
* ``service-suppress``  the same with suppress=True
* ``floor``             the same deletion as a few hand-written set-based SQL statements,
                        in batches of ENGAGE_DELETE_BATCH_SIZE, one transaction each
* ``floor-suppress``    the floor with the suppression-list inserts and activity forgetting

``--tracemalloc`` also reports the Python-level peak (tracemalloc slows Python down, so
the times of such a run are not the headline figures).
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The repository's root in place of this script's folder, whose scripts are named like
# the apps and the standard library's modules (``segments``, ``campaigns``).
sys.path[0] = str(REPO_ROOT)

from bench import common  # noqa: E402

DB_NAME = "engage_bench"
SERVER_URL = common.SERVER_URL
DATABASE_URL = f"{SERVER_URL}/{DB_NAME}"

VARIANTS = ["service", "service-suppress", "floor", "floor-suppress"]
TARGET_PEOPLE_PER_SECOND = 5000
TARGET_PEAK_MB = 300

EVENT_NAMES = ["page_viewed", "signed_in", "added_to_cart", "purchased", "opened_email",
               "clicked_link", "searched", "shared"]
PLANS = ["free", "starter", "pro", "enterprise"]


def peak_rss_mb() -> float:
    """Return this process's RSS high-water mark in MB.

    Linux's ``ru_maxrss`` keeps, across fork and exec, the RSS the parent had when it
    forked, so a child would report the loader's memory; ``VmHWM`` is the child's own.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- database and data -----------------------------------------------------------------


def people_tables() -> list[str]:
    from people.models import (
        Activity,
        DeletionJob,
        DeletionJobItem,
        Device,
        Event,
        Person,
        Suppression,
    )

    return [m._meta.db_table for m in
            (Person, Event, Device, Activity, Suppression, DeletionJob, DeletionJobItem)]


def load(args, label: str) -> int:
    """Empty the people tables, create a workspace, COPY the data in; return its id."""
    from django.db import connection

    from engage.services import create_workspace
    from people.models import Activity, Device, Event, Person, generate_cio_id

    rng = random.Random(42)
    tables = people_tables()
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    workspace, _ = create_workspace(name=f"bench {label}", identifier_mode="email_or_id")
    ws = workspace.pk
    now = datetime.now(UTC)
    raw = connection.connection  # the psycopg 3 connection, in autocommit

    person_columns = ("workspace_id, cio_id, customer_id, email, email_key, attributes, "
                      "unsubscribed, created_at, updated_at, attributes_timestamp")
    attributes = [json.dumps({"first_name": f"Name{k}", "plan": PLANS[k % len(PLANS)],
                              "age": 18 + k % 60, "newsletter": k % 3 == 0})
                  for k in range(64)]
    with raw.cursor() as cur:
        with cur.copy(f"COPY {Person._meta.db_table} ({person_columns}) FROM STDIN") as copy:
            for i in range(args.people):
                email = f"Person{i:07d}@Example.com"
                created = now - timedelta(minutes=rng.randrange(365 * 24 * 60))
                copy.write_row((ws, generate_cio_id(), f"cust-{i:07d}", email, email.lower(),
                                attributes[i % 64], i % 50 == 0, created, created, None))
        cur.execute(f"SELECT id, cio_id FROM {Person._meta.db_table} WHERE workspace_id = %s "
                    "ORDER BY id", [ws])
        people = cur.fetchall()

    event_columns = ("workspace_id, person_id, anonymous_id, name, type, timestamp, data, "
                     "dedup_id, received_at")
    event_data = [json.dumps({"value": k, "currency": "EUR", "path": f"/page/{k}"})
                  for k in range(32)]
    with raw.cursor() as cur:
        with cur.copy(f"COPY {Event._meta.db_table} ({event_columns}) FROM STDIN") as copy:
            n = 0
            for pk, _ in people:
                for _ in range(args.events_per_person):
                    at = now - timedelta(seconds=rng.randrange(90 * 86400))
                    copy.write_row((ws, pk, None, EVENT_NAMES[n % len(EVENT_NAMES)], "event",
                                    at, event_data[n % 32], None, at))
                    n += 1

    device_columns = "workspace_id, person_id, token, platform, last_used, attributes, created_at"
    every = max(1, round(1 / args.device_share)) if args.device_share > 0 else 0
    with raw.cursor() as cur:
        with cur.copy(f"COPY {Device._meta.db_table} ({device_columns}) FROM STDIN") as copy:
            for i, (pk, _) in enumerate(people):
                if every and i % every == 0:
                    copy.write_row((ws, pk, f"tok-{pk}-{rng.getrandbits(64):016x}",
                                    "ios" if i % 2 else "android", now, '{"app_version": "1.2"}',
                                    now))

    activity_columns = "workspace_id, cio_id, kind, data, forgotten, created_at"
    kinds = [Activity.Kind.CREATED, Activity.Kind.ATTRIBUTES_CHANGED, Activity.Kind.DEVICE_ADDED,
             Activity.Kind.UNSUBSCRIBED]
    with raw.cursor() as cur:
        with cur.copy(f"COPY {Activity._meta.db_table} ({activity_columns}) FROM STDIN") as copy:
            for _, cio_id in people:
                for k in range(args.activities_per_person):
                    copy.write_row((ws, cio_id, kinds[k % len(kinds)].value,
                                    '{"changed": ["plan"]}', False, now))

    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        cursor.execute("CHECKPOINT")
    return ws


def counts(ws: int) -> dict:
    from people.models import Activity, Device, Event, Person, Suppression

    return {
        "people": Person.objects.filter(workspace_id=ws).count(),
        "events": Event.objects.filter(workspace_id=ws).count(),
        "devices": Device.objects.filter(workspace_id=ws).count(),
        "suppressions": Suppression.objects.filter(workspace_id=ws).count(),
        "activity_deleted": Activity.objects.filter(workspace_id=ws, kind="deleted").count(),
        "activity_suppressed": Activity.objects.filter(workspace_id=ws, kind="suppressed").count(),
        "activity_with_cio_id": Activity.objects.filter(workspace_id=ws, cio_id__isnull=False)
        .count(),
    }


def verify(variant: str, n: int, before: dict, after: dict, result: dict) -> list[str]:
    """Return what is wrong after a run (nothing, if all went as it should)."""
    suppress = variant.endswith("suppress")
    expected = {
        "people": 0,
        "events": 0,
        "devices": 0,
        "suppressions": 2 * n if suppress else 0,
        "activity_deleted": 0 if suppress else n,
        "activity_suppressed": n if suppress else 0,
        "activity_with_cio_id": 0 if suppress else before["activity_with_cio_id"] + n,
    }
    problems = [f"{key}: {after[key]} rows, expected {value}"
                for key, value in expected.items() if after[key] != value]
    if result["deleted"] != n:
        problems.append(f"reported {result['deleted']} deleted, expected {n}")
    if suppress and result["suppressed"] != 2 * n:
        problems.append(f"reported {result['suppressed']} suppressed, expected {2 * n}")
    return problems


# --- the deletions being timed -----------------------------------------------------------


def floor_delete(ws: int, *, suppress: bool, batch_size: int) -> dict:
    """Delete the workspace's people by hand with set-based SQL, batch by batch."""
    from django.db import connection, transaction

    from people.models import Activity, Device, Event, Person, Suppression

    person, event, device = (Person._meta.db_table, Event._meta.db_table, Device._meta.db_table)
    activity, suppression = Activity._meta.db_table, Suppression._meta.db_table
    deleted = suppressed = 0
    last = 0
    while True:
        with transaction.atomic(), connection.cursor() as cur:
            now = datetime.now(UTC)
            cur.execute(f"SELECT id FROM {person} WHERE workspace_id = %s AND id > %s "
                        "ORDER BY id LIMIT %s FOR UPDATE", [ws, last, batch_size])
            ids = [row[0] for row in cur.fetchall()]
            if not ids:
                break
            last = ids[-1]
            cur.execute(f"DELETE FROM {event} WHERE person_id = ANY(%s)", [ids])
            cur.execute(f"DELETE FROM {device} WHERE person_id = ANY(%s)", [ids])
            if suppress:
                cur.execute(
                    f"""
                    WITH p AS MATERIALIZED (
                        SELECT workspace_id, customer_id, lower(email) AS email,
                               left(replace(gen_random_uuid()::text, '-', ''), 16) AS grp
                        FROM {person} WHERE id = ANY(%s)
                    )
                    INSERT INTO {suppression}
                        (workspace_id, identifier_type, value, "group", created_at,
                         created_by_id, source)
                    SELECT p.workspace_id, s.kind, s.value, p.grp, %s, NULL, 'ui'
                    FROM p CROSS JOIN LATERAL
                        (VALUES ('id', p.customer_id), ('email', p.email)) AS s(kind, value)
                    WHERE s.value IS NOT NULL
                    ON CONFLICT DO NOTHING
                    """,
                    [ids, now],
                )
                suppressed += cur.rowcount
                cur.execute(
                    f"UPDATE {activity} SET cio_id = NULL, data = '{{}}', forgotten = true "
                    f"WHERE workspace_id = %s AND cio_id IN "
                    f"(SELECT cio_id FROM {person} WHERE id = ANY(%s))",
                    [ws, ids],
                )
                cur.execute(
                    f"INSERT INTO {activity} (workspace_id, cio_id, kind, data, forgotten, "
                    f"created_at) SELECT workspace_id, NULL, 'suppressed', '{{}}', true, %s "
                    f"FROM {person} WHERE id = ANY(%s)",
                    [now, ids],
                )
            else:
                cur.execute(
                    f"INSERT INTO {activity} (workspace_id, cio_id, kind, data, forgotten, "
                    f"created_at) SELECT workspace_id, cio_id, 'deleted', "
                    f"'{{\"source\": \"ui\"}}', false, %s FROM {person} WHERE id = ANY(%s)",
                    [now, ids],
                )
            cur.execute(f"DELETE FROM {person} WHERE id = ANY(%s)", [ids])
            deleted += cur.rowcount
    return {"deleted": deleted, "suppressed": suppressed}


def run_variant(variant: str, ws: int, use_tracemalloc: bool) -> dict:
    """Time one deletion in this (fresh) process; return the figures."""
    common.setup_django(DATABASE_URL)
    from django.conf import settings
    from django.db import connection

    from engage.models import Workspace
    from people.models import Person
    from people.services import delete_people

    workspace = Workspace.objects.get(pk=ws)
    connection.ensure_connection()
    rss_before_mb = peak_rss_mb()
    if use_tracemalloc:
        tracemalloc.start()
    started = time.perf_counter()
    if variant.startswith("service"):
        outcome = delete_people(workspace, Person.objects.filter(workspace=workspace),
                                suppress=variant == "service-suppress")
        result = {"deleted": outcome.deleted, "suppressed": outcome.suppressed}
    else:
        result = floor_delete(ws, suppress=variant == "floor-suppress",
                              batch_size=settings.ENGAGE_DELETE_BATCH_SIZE)
    seconds = time.perf_counter() - started
    if use_tracemalloc:
        result["python_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    result.update(
        seconds=seconds,
        rss_before_mb=rss_before_mb,
        peak_rss_mb=peak_rss_mb(),
        batch_size=settings.ENGAGE_DELETE_BATCH_SIZE,
    )
    return result


# --- driver ----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--events-per-person", type=int, default=10)
    parser.add_argument("--device-share", type=float, default=0.3,
                        help="share of people given one device (default 0.3)")
    parser.add_argument("--activities-per-person", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated subset of {','.join(VARIANTS)}")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also report the Python-level peak (slows the timed runs)")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "WORKSPACE_ID"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(run_variant(args.child[0], int(args.child[1]), args.tracemalloc)))
        return 0

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")

    common.recreate_database(DB_NAME)
    common.setup_django(DATABASE_URL)
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        print(cursor.fetchone()[0])
    n = args.people
    print(f"{n:,} people, {args.events_per_person} events each, "
          f"device share {args.device_share}, {args.activities_per_person} activities each; "
          f"{os.cpu_count()} CPUs\n")

    results = {}
    failed = False
    for variant in variants:
        started = time.perf_counter()
        ws = load(args, variant)
        before = counts(ws)
        print(f"[{variant}] loaded in {time.perf_counter() - started:.1f}s: "
              f"{before['people']:,} people, {before['events']:,} events, "
              f"{before['devices']:,} devices, {before['activity_with_cio_id']:,} activities")
        connection.close()  # the child gets the database to itself
        command = [sys.executable, __file__, "--child", variant, str(ws)]
        if args.tracemalloc:
            command.append("--tracemalloc")
        child = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
        if child.returncode:
            print(child.stdout, child.stderr, sep="\n")
            return 1
        result = json.loads(child.stdout.strip().splitlines()[-1])
        problems = verify(variant, n, before, counts(ws), result)
        failed |= bool(problems)
        result["problems"] = problems
        results[variant] = result
        print(f"[{variant}] {n / result['seconds']:,.0f} people/s, {result['seconds']:.2f}s, "
              f"peak RSS {result['peak_rss_mb']:.0f} MB "
              f"({result['rss_before_mb']:.0f} MB before the deletion)"
              + (f", Python peak {result['python_peak_mb']:.1f} MB"
                 if "python_peak_mb" in result else "")
              + (f"; PROBLEMS: {'; '.join(problems)}" if problems else "; verified"))

    print()
    print_table(n, results)
    return 1 if failed else 0


def print_table(n: int, results: dict) -> None:
    python_peak = any("python_peak_mb" in r for r in results.values())
    header = "| variant | people/s | seconds | peak RSS MB |"
    header += " Python peak MB |" if python_peak else ""
    header += " time vs floor | meets targets |"
    print(header)
    print("|" + "---|" * header.count(" |"))
    for variant, r in results.items():
        floor = results.get("floor-suppress" if variant.endswith("suppress") else "floor")
        ratio = f"{r['seconds'] / floor['seconds']:.2f}x" if floor else "n/a"
        rate = n / r["seconds"]
        ok = rate >= TARGET_PEOPLE_PER_SECOND and r["peak_rss_mb"] < TARGET_PEAK_MB
        row = f"| {variant} | {rate:,.0f} | {r['seconds']:.2f} | {r['peak_rss_mb']:.0f} |"
        row += f" {r['python_peak_mb']:.1f} |" if python_peak else ""
        row += f" {ratio} | {'yes' if ok else 'no'} |"
        print(row)
    print(f"\nTargets: at least {TARGET_PEOPLE_PER_SECOND:,} people/s, "
          f"peak RSS under {TARGET_PEAK_MB} MB.")


if __name__ == "__main__":
    sys.exit(main())
