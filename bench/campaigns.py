"""Campaign benchmark: a segment of 100,000 people (in a workspace of 1,000,000) triggers
a campaign "current and future"; how fast do they enter, and how fast do journeys move?

    .venv/bin/python bench/campaigns.py [--people 1000000] [--members 100000]

Run by hand on the local PostgreSQL (it drops and recreates its own database,
``engage_campaigns_bench``). Prints:
(a) entering: ``start_campaign(audience="current_and_future")`` for the segment's members,
    and the raw-SQL floor (one INSERT ... SELECT of the same journeys);
(b) local steps with one worker: journeys through a branch on an attribute, an attribute
    update and a delay that then expires, in journey steps a second, and the floor (the
    same changes made with a handful of hand-written statements); in rounds (``--rounds``,
    each on the next ``--stepped`` journeys, engage's run then the floor's), the median
    round being the figure, since the machine's speed drifts between runs;
(c) lateness: journeys falling due at a steady pace below capacity, advanced by one
    worker loop polling as the sweeper does (``campaigns.tasks.IDLE_PAUSE``); p50 / p95 /
    max of (when the step ran - when it was due);
(d) the worker's peak memory (max RSS) throughout.
"""

import argparse
import json
import random
import resource
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# The repository's root, in place of this script's folder: a module here named like a
# standard library one (an ``email.py`` once) would shadow it, and psycopg's C
# implementation would quietly give way to the pure-Python one that no worker runs with.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import common  # noqa: E402

DB_NAME = "engage_campaigns_bench"
DATABASE_URL = f"{common.SERVER_URL}/{DB_NAME}"


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def load(people: int, members: int, seed: int) -> int:
    """COPY ``people`` people in, ``members`` of them on the plan "pro"; return the workspace."""
    from django.db import connection

    from engage.services import create_workspace
    from people.models import Person

    rng = random.Random(seed)
    workspace, _ = create_workspace(name="campaigns bench", identifier_mode="email_or_id")
    pro = set(rng.sample(range(people), members))
    now = datetime.now(UTC)
    columns = ("workspace_id, cio_id, customer_id, email, email_key, attributes, "
               "unsubscribed, created_at, updated_at")
    with connection.connection.cursor() as cur:
        with cur.copy(f"COPY {Person._meta.db_table} ({columns}) FROM STDIN") as copy:
            for i in range(people):
                email = f"user{i:07d}@example.com"
                attributes = {"email": email, "plan": "pro" if i in pro else "free",
                              "score": rng.randrange(101)}
                copy.write_row((workspace.pk, f"{i:06x}{rng.getrandbits(24):06x}",
                                f"user-{i}", email, email, json.dumps(attributes), False,
                                now, now))
        cur.execute("ANALYZE people_person")
    return workspace.pk


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_and_enter(campaign) -> None:
    """Start ``campaign`` for current and future members; enter the current ones as the
    worker does (a start of more than one batch is an entry job)."""
    from campaigns import segment_triggers, services
    from campaigns.models import CampaignEntryJob

    services.start_campaign(campaign, audience="current_and_future")
    for job_id in CampaignEntryJob.objects.filter(campaign=campaign).values_list("pk",
                                                                                flat=True):
        segment_triggers.run_entry(job_id)


class StatementTimer:
    """An execute wrapper adding up the time each statement text takes (its first 90
    characters, parameters aside), COMMIT included."""

    def __init__(self):
        self.totals: dict[str, list] = {}

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            entry = self.totals.setdefault(" ".join(sql.split())[:90], [0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - started

    def report(self) -> None:
        for text, (count, seconds) in sorted(self.totals.items(), key=lambda i: -i[1][1]):
            log(f"{seconds:6.3f} s {count:4d}x {text}")


def settle() -> None:
    """Write out what earlier phases left dirty (the load, the entering) and vacuum, so
    that neither engage's run nor the floor's pays for a checkpoint or an autovacuum
    the other did not."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE people_person")
        cursor.execute("VACUUM ANALYZE campaigns_journey")
        cursor.execute("CHECKPOINT")


def run_all(batch: int) -> int:
    from campaigns import engine

    steps = 0
    while done := engine.advance_due(limit=batch):
        steps += done
    return steps


# The floor of (b): the changes the engine made, made again by hand-written set-based SQL,
# one statement per kind of change and step, into tables of the same shape, indexes and
# logging (real tables, not temporary ones, which write no WAL): the same step rows with
# their outcomes and data, the same attribute writes with an activity row per changed
# person and the segment evaluations they are owed, and the same two moves per journey
# (into the due index, then out of it), with the real tables' foreign keys checked at
# commit. What it leaves out is reading: claiming due journeys, loading the campaign,
# computing each change.
FLOOR_STATEMENTS = [
    # first batch: the branch, the update on its true path, the delay's start
    "INSERT INTO floor_step (journey_id, seq, step_id, step_type, outcome, data, created_at) "
    "SELECT j.id, 1, 'branch', 'branch', CASE WHEN (p.attributes->>'score')::numeric >= 50 "
    "THEN 'path:true' ELSE 'path:false' END, '{}', now() FROM floor_j j "
    "JOIN people_person p ON p.id = j.person_id",
    "WITH u AS (UPDATE people_person p SET attributes = p.attributes || "
    "'{\"stage\": \"engaged\"}', updated_at = now() FROM floor_j j WHERE p.id = j.person_id "
    "AND (p.attributes->>'score')::numeric >= 50 RETURNING p.id, p.cio_id), "
    "a AS (INSERT INTO floor_activity (workspace_id, cio_id, kind, data, forgotten, "
    "created_at) SELECT %(ws)s, cio_id, 'attributes_changed', "
    "'{\"changed\": {\"stage\": [null, \"engaged\"]}}', false, now() FROM u) "
    "INSERT INTO floor_pending (workspace_id, person_id) SELECT %(ws)s, id FROM u "
    "ON CONFLICT DO NOTHING",
    "INSERT INTO floor_step (journey_id, seq, step_id, step_type, outcome, data, created_at) "
    "SELECT j.id, 2, 'tag', 'update_attributes', 'done', '{}', now() FROM floor_j j "
    "JOIN people_person p ON p.id = j.person_id "
    "WHERE (p.attributes->>'score')::numeric >= 50",
    "INSERT INTO floor_step (journey_id, seq, step_id, step_type, outcome, data, created_at) "
    "SELECT j.id, CASE WHEN (p.attributes->>'score')::numeric >= 50 THEN 3 ELSE 2 END, "
    "'wait', 'delay', 'waiting', jsonb_build_object('until', now() + interval '1 second'), "
    "now() FROM floor_j j JOIN people_person p ON p.id = j.person_id",
    "UPDATE campaigns_journey j SET state = 'active', step_id = 'wait', seq = f.seq, "
    "step_data = jsonb_build_object('until', now() + interval '1 second', 'waiting', true), "
    "next_run_at = now() + interval '1 second', ended_at = NULL, lease_until = NULL "
    "FROM (SELECT journey_id, max(seq) AS seq FROM floor_step GROUP BY journey_id) f "
    "WHERE j.id = f.journey_id",
    # second batch: the delay's end, the last update, the end of the journey
    "INSERT INTO floor_step (journey_id, seq, step_id, step_type, outcome, data, created_at) "
    "SELECT j.id, j.seq + s.n, CASE s.n WHEN 1 THEN 'wait' ELSE 'done' END, CASE s.n "
    "WHEN 1 THEN 'delay' ELSE 'update_attributes' END, 'done', '{}', now() "
    "FROM floor_j f JOIN campaigns_journey j ON j.id = f.id, generate_series(1, 2) s(n)",
    "WITH u AS (UPDATE people_person p SET attributes = p.attributes || "
    "'{\"stage\": \"floor\"}', updated_at = now() FROM floor_j j WHERE p.id = j.person_id "
    "RETURNING p.id, p.cio_id), "
    "a AS (INSERT INTO floor_activity (workspace_id, cio_id, kind, data, forgotten, "
    "created_at) SELECT %(ws)s, cio_id, 'attributes_changed', "
    "'{\"changed\": {\"stage\": [\"engaged\", \"done\"]}}', false, now() FROM u) "
    "INSERT INTO floor_pending (workspace_id, person_id) SELECT %(ws)s, id FROM u "
    "ON CONFLICT DO NOTHING",
    "UPDATE campaigns_journey j SET state = 'finished', exit_reason = 'finished', "
    "step_id = 'done', seq = j.seq + 2, step_data = '{}', next_run_at = NULL, "
    "ended_at = now() FROM floor_j f WHERE j.id = f.id",
]


FLOOR_TABLES = (("floor_step", "campaigns_journeystep"), ("floor_activity", "people_activity"),
                ("floor_pending", "segments_pendingevaluation"))


def create_floor_tables() -> None:
    """The floor's tables: the shape, indexes and foreign keys of the ones engage writes."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table, like in FLOOR_TABLES:
            cursor.execute(f"CREATE TABLE {table} (LIKE {like} INCLUDING ALL)")
            # LIKE copies no foreign keys: add the real table's, checked as they are there
            # (deferred, at commit).
            cursor.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                           "WHERE conrelid = %s::regclass AND contype = 'f'", [like])
            for (definition,) in cursor.fetchall():
                cursor.execute(f"ALTER TABLE {table} ADD {definition}")


def floor_steps(journey_ids: list[int], workspace_pk: int) -> float:
    """Make the changes of (b) to these journeys again with hand-written SQL; return the
    seconds it took (two transactions, as the engine's two runs are at least two)."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE " + ", ".join(table for table, _ in FLOOR_TABLES))
        cursor.execute("DROP TABLE IF EXISTS floor_j")
        cursor.execute("CREATE TABLE floor_j AS SELECT id, person_id FROM campaigns_journey "
                       "WHERE id = ANY(%s)", [journey_ids])
        cursor.execute("ANALYZE floor_j")
    started = time.perf_counter()
    for batch in (FLOOR_STATEMENTS[:5], FLOOR_STATEMENTS[5:]):
        with transaction.atomic(), connection.cursor() as cursor:
            for statement in batch:
                cursor.execute(statement, {"ws": workspace_pk})
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM floor_step")
        log(f"floor: {cursor.fetchone()[0]:,} step rows")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--stepped", type=int, default=3_000,
                        help="journeys carried through the workflow in each round of (b)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of (b), each engage's run then the floor's")
    parser.add_argument("--paced", type=int, default=2_000,
                        help="journeys falling due at a steady pace in (c)")
    parser.add_argument("--pace", type=float, default=100.0,
                        help="journeys falling due a second in (c)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=0,
                        help="journeys a batch claims (default: the engine's BATCH_SIZE)")
    parser.add_argument("--statements", action="store_true",
                        help="time (b)'s statements by their text; the totals go to stderr")
    parser.add_argument("--profile", action="store_true",
                        help="profile (b) with cProfile; the top functions go to stderr")
    args = parser.parse_args()

    common.recreate_database(DB_NAME)
    common.setup_django(DATABASE_URL)
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from campaigns import engine, services, tasks
    from campaigns.models import Campaign, Journey, JourneyStep
    from engage.models import Workspace
    from segments import services as segments

    call_command("migrate", verbosity=0)
    batch = args.batch or engine.BATCH_SIZE
    log(f"loading {args.people:,} people")
    ws_id, seconds = timed(load, args.people, args.members, args.seed)
    log(f"loaded in {seconds:.0f} s")
    workspace = Workspace.objects.get(pk=ws_id)
    segment = segments.create_segment(workspace, name="Pro", conditions_tree={
        "attribute": {"field": "plan", "operator": "eq", "value": "pro"}})
    _, seconds = timed(segments.recompute_segment, segment)
    log(f"segment built in {seconds:.1f} s: {segment.memberships.count():,} members")
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        print(cursor.fetchone()[0])
    import psycopg

    print(f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__} implementation)")
    print(f"{args.people:,} people, a segment of {args.members:,}, batches of {batch:,}\n")

    definition = {
        "name": "bench", "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "exit": "never",
        "workflow": {"steps": [
            {"id": "branch", "type": "branch",
             "condition": {"attribute": {"field": "score", "operator": "gte", "value": 50}},
             "paths": [{"key": "true", "steps": [
                 {"id": "tag", "type": "update_attributes", "set": {"stage": "engaged"}}]},
                 {"key": "false", "steps": []}]},
            {"id": "wait", "type": "delay", "duration": {"seconds": 1}},
            {"id": "done", "type": "update_attributes", "set": {"stage": "done"}}]}}

    # (a) entering
    campaign = services.create_campaign(workspace, definition)
    _, entering = timed(start_and_enter, campaign)
    entered = Journey.objects.filter(campaign=campaign).count()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE floor_journeys AS SELECT * FROM campaigns_journey "
                       "WITH NO DATA")
        started = time.perf_counter()
        cursor.execute(
            "INSERT INTO floor_journeys (workspace_id, campaign_id, person_id, cio_id, "
            "entry_key, state, exit_reason, step_id, step_data, seq, next_run_at, context, "
            "entered_at) SELECT %s, %s, m.person_id, p.cio_id, 'p' || m.person_id, "
            "'active', '', '', '{}', 0, now(), '{}', now() FROM segments_membership m "
            "JOIN people_person p ON p.id = m.person_id WHERE m.segment_id = %s",
            [workspace.pk, campaign.pk, segment.pk])
        floor_entering = time.perf_counter() - started
    print(f"(a) entered {entered:,} in {entering:.2f} s ({entered / entering:,.0f}/s); "
          f"floor {floor_entering:.2f} s ({entering / floor_entering:.1f}x); target <= 10 s")

    # (b) local steps with one worker: branch (+ update) then a delay, then its expiry.
    # Each round takes the next --stepped journeys (the others wait: not due), then the
    # floor makes the same changes to them; rounds alternate, so that both sides see the
    # same machine, and the median round is the figure.
    from engage import workers

    workers.freeze_long_lived()  # as a sweeper does when it starts (campaigns.tasks)
    order = list(Journey.objects.filter(campaign=campaign).order_by("pk")
                 .values_list("pk", flat=True))
    create_floor_tables()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    timer, floor_timer = StatementTimer(), StatementTimer()
    rounds = []
    for index in range(args.rounds):
        ids = order[index * args.stepped:(index + 1) * args.stepped]
        Journey.objects.filter(campaign=campaign).update(next_run_at=None)
        Journey.objects.filter(pk__in=ids).update(next_run_at=timezone.now())
        settle()
        if args.statements:
            connection.execute_wrappers.append(timer)
        if profiler is not None:
            profiler.enable()
        cpu = -time.process_time()
        _, first = timed(run_all, batch)
        cpu += time.process_time()
        # The delay expires now (not timed: a wait is not work).
        expired = timezone.now()
        Journey.objects.filter(pk__in=ids, state="active", step_id="wait").update(
            next_run_at=expired, step_data={"until": expired.isoformat(), "waiting": True})
        cpu -= time.process_time()
        _, second = timed(run_all, batch)
        cpu += time.process_time()
        if profiler is not None:
            profiler.disable()
        if args.statements:
            connection.execute_wrappers.remove(timer)
        rows = JourneyStep.objects.filter(journey_id__in=ids).count()
        settle()
        if args.statements:
            connection.execute_wrappers.append(floor_timer)
        floor = floor_steps(ids, workspace.pk)
        if args.statements:
            connection.execute_wrappers.remove(floor_timer)
        ratio = (first + second) / floor
        rounds.append((ratio, first + second, floor, cpu, rows))
        print(f"(b) round {index + 1}: {len(ids):,} journeys, {rows:,} journey steps in "
              f"{first + second:.2f} s ({rows / (first + second):,.0f} steps/s; the worker's "
              f"CPU {cpu:.2f} s, {cpu / rows * 1e6:.0f} us a step, the rest waiting for "
              f"PostgreSQL); floor {floor:.2f} s: {ratio:.2f}x", flush=True)
    if profiler is not None:
        import pstats

        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    if args.statements:
        timer.report()
        log("the floor's statements:")
        floor_timer.report()
    ratio, seconds, floor, cpu, rows = sorted(rounds)[len(rounds) // 2]
    print(f"(b) median round: {rows:,} journey steps in {seconds:.2f} s: "
          f"{rows / seconds:,.0f} steps/s with one worker; floor {floor:.2f} s "
          f"({rows / floor:,.0f}/s), {ratio:.2f}x; rounds "
          + " / ".join(f"{each[0]:.2f}x" for each in rounds)
          + "; target >= 2,000/s within 2x of the floor")

    # (c) lateness: journeys due at a steady pace below capacity
    paced = services.create_campaign(workspace, {**definition, "name": "paced", "workflow": {
        "steps": [{"id": "tag", "type": "update_attributes", "set": {"stage": "paced"}}]}})
    Campaign.objects.filter(pk=paced.pk).update(state=Campaign.State.RUNNING)
    paced.refresh_from_db()
    start = timezone.now() + timedelta(seconds=5)
    people = list(segment.memberships.values_list("person_id", flat=True)[:args.paced])
    engine.enter(paced, [engine.Entry(f"p{pk}", pk, None) for pk in people])
    due_at = {}
    for index, journey_id in enumerate(Journey.objects.filter(campaign=paced)
                                       .order_by("pk").values_list("pk", flat=True)):
        due_at[journey_id] = start + timedelta(seconds=index / args.pace)
    for chunk_start in range(0, len(due_at), 5000):
        chunk = list(due_at.items())[chunk_start:chunk_start + 5000]
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE campaigns_journey j SET next_run_at = v.due FROM (VALUES "
                + ", ".join(["(%s, %s::timestamptz)"] * len(chunk)) + ") v(id, due) "
                "WHERE j.id = v.id", [value for pair in chunk for value in pair])
    deadline = time.monotonic() + len(due_at) / args.pace + 120
    while Journey.objects.filter(campaign=paced, state="active").exists():
        if time.monotonic() > deadline:
            break
        if not engine.advance_due(limit=batch):
            time.sleep(tasks.IDLE_PAUSE)  # as the sweeper does
    # A step row carries the moment its batch began: when the step ran.
    ran_at = dict(JourneyStep.objects.filter(journey__campaign=paced)
                  .values_list("journey_id", "created_at"))
    late = sorted((ran_at[pk] - due_at[pk]).total_seconds() for pk in ran_at)
    p95 = late[int(len(late) * 0.95)] if late else float("nan")
    print(f"(c) {len(late):,} journeys due at {args.pace:,.0f}/s: lateness p50 "
          f"{statistics.median(late):.2f} s, p95 {p95:.2f} s, max {late[-1]:.2f} s; "
          "target p95 <= 2 s")
    print(f"(d) worker peak memory {peak_mb():.0f} MB; target < 300 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
