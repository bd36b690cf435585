"""Benchmark switching a workspace's identifier mode with 1,000,000 people.

Run it by hand from the repository root:

    .venv/bin/python bench/identifier_mode.py [--people 1000000]

Drops and recreates the ``engage_bench`` database on 127.0.0.1:5432, creates an ID-only
workspace whose people all have an email (generated in SQL), then times what an admin's
switch costs: the duplicate-email check, the request that starts the change, and the
change itself run in this process as a worker would run it (to Email or ID: every email
key filled, then the mode switched; and back to ID only: the keys cleared).
"""

import argparse
import sys
import time
from pathlib import Path

# The repository's root in place of this script's folder, whose scripts are named like
# the apps and the standard library's modules (``segments``, ``campaigns``).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import common  # noqa: E402

DB_NAME = "engage_bench"


def timed(label: str, function):
    start = time.perf_counter()
    result = function()
    print(f"{label:52} {time.perf_counter() - start:8.1f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    args = parser.parse_args()

    common.recreate_database(DB_NAME)
    common.setup_django(f"{common.SERVER_URL}/{DB_NAME}")
    from django.core.management import call_command
    from django.db import connection

    from engage import services
    from people import identifier_mode

    call_command("migrate", verbosity=0)
    workspace, _ = services.create_workspace(name="identifier mode bench", identifier_mode="id")

    def load():
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO people_person (workspace_id, cio_id, customer_id, email, "
                "attributes, unsubscribed, created_at, updated_at) "
                "SELECT %s, 'c' || g, 'u' || g, 'User' || g || '@Example.com', '{}'::jsonb, "
                "false, now(), now() FROM generate_series(1, %s) g", [workspace.pk, args.people])
            cursor.execute("ANALYZE people_person")

    timed(f"load {args.people:,} people with an email (SQL)", load)
    timed("duplicate-email check (in the request)",
          lambda: identifier_mode.identifier_conflicts(workspace))
    change = timed("request: switch to Email or ID (check, start)",
                   lambda: identifier_mode.set_identifier_mode(workspace, "email_or_id"))
    change = timed(f"worker: fill {change.total:,} email keys, switch",
                   lambda: identifier_mode.run_identifier_mode_change(change.pk))
    workspace.refresh_from_db()
    print(f"    -> {change.state}, mode {workspace.identifier_mode}")
    change = timed("request: switch to ID only",
                   lambda: identifier_mode.set_identifier_mode(workspace, "id"))
    change = timed(f"worker: clear {change.total:,} email keys",
                   lambda: identifier_mode.run_identifier_mode_change(change.pk))
    print(f"    -> {change.state}")


if __name__ == "__main__":
    main()
