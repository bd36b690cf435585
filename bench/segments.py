"""Benchmark segment SQL on PostgreSQL: full recompute, re-evaluating one person, preview.

Run it by hand from the repository root:

    .venv/bin/python bench/segments.py                                   # full size
    .venv/bin/python bench/segments.py --people 20000 --events 200000    # quick check
    .venv/bin/python bench/segments.py --reuse     # keep the data of the last run (same day)
    .venv/bin/python bench/segments.py --reuse --keep-segments     # and its 50 segments
    .venv/bin/python bench/segments.py --reuse --explain   # also EXPLAIN (ANALYZE, BUFFERS)

At full size (1,000,000 people, 10,000,000 events) loading takes about 10 minutes on
2 cores and the measurements a few more.

It drops and recreates the database ``engage_segments_bench`` on 127.0.0.1:5432 (user
postgres, never the ``test`` database), migrates it, creates one ``email_or_id``
workspace with ``engage.services.create_workspace`` and loads with COPY:

* ``--people`` people, each with a customer_id and an email, and attributes: ``plan``
  (free 55%, starter 25%, pro 14%, enterprise 6%), ``country``, ``created_at`` and
  ``last_seen_at`` (unix seconds), ``score``, ``newsletter``, ``tags`` (a list) and a
  nested ``profile`` (``age``, ``city``, ``company.size`` ...), a few of them missing;
* ``--events`` events over the last 180 days, in time order (as they would arrive):
  ``login`` (the most common), ``page_viewed``, ``opened_app``, ``added_to_cart``,
  ``purchase`` (data: amount, currency, items) and ``signup`` (a person's first event when
  they signed up within the 180 days). How active people are is heavy-tailed (Pareto
  weights); each is active over an interval of those days, 45% of them until now.

then VACUUM ANALYZE and a CHECKPOINT. Before every timed measurement it waits (up to
``--max-wait`` seconds) until no ``bench/ingest.py`` or ``wrk`` process runs, so that no
other benchmark shares the two cores. Then:

(a) creates the realistic segment below with ``segments.services.create_segment`` and
    times ``services.recompute_segment``: a first build from an empty membership and a
    second recompute with nothing changed, ``--repeat`` times each (the membership is
    emptied before every first build). The floor is the best hand-written SQL for the
    same set, timed as ``SELECT count(*)`` and as an ``INSERT`` of the set into a scratch
    table shaped like ``segments_membership``; the service's membership must equal the
    floor's set, computed at the same "now";
(b) creates 50 varied data-driven segments (attributes, nested paths, event counts in
    windows, event filters, references to other segments), computes them all, then
    times ``services.evaluate_people(workspace, [person_id])`` for ``--samples`` people
    (half drawn uniformly, half the authors of random events of the last day) and reports
    p50/p95/p99;
(c) times ``services.preview(workspace, tree)`` (count and sample) and its count part
    alone, for the same tree.

Figures are printed at the end as a Markdown table.
"""

import argparse
import bisect
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The repository's root in place of this script's folder, whose scripts are named like
# the apps and the standard library's modules (``segments``, ``campaigns``).
sys.path[0] = str(REPO_ROOT)

from bench import common  # noqa: E402

DB_NAME = "engage_segments_bench"
SERVER_URL = common.SERVER_URL
DATABASE_URL = f"{SERVER_URL}/{DB_NAME}"

TARGET_RECOMPUTE_SECONDS = 5.0
TARGET_FLOOR_RATIO = 1.5
TARGET_EVALUATE_P95_MS = 20.0
TARGET_PREVIEW_SECONDS = 1.0
OTHER_LOAD = "bench/ingest.py|wrk "

REALISTIC = {"and": [
    {"attribute": {"field": "plan", "operator": "in", "value": ["pro", "enterprise"]}},
    {"event": {"name": "login", "count": {"operator": "gte", "value": 3}, "within_days": 7}},
    {"not": {"event": {"name": "purchase", "within_days": 30}}},
]}

DAYS = 180
PLANS = [("free", 55), ("starter", 25), ("pro", 14), ("enterprise", 6)]
COUNTRIES = [("US", 30), ("DE", 10), ("GB", 10), ("IN", 10), ("FR", 8), ("BR", 7), ("JP", 5),
             ("CA", 5), ("NL", 5), ("ES", 5), ("IT", 5)]
CITIES = ["San Francisco", "San Diego", "Berlin", "London", "Paris", "Bangalore", "Sao Paulo",
          "Tokyo", "Toronto", "Amsterdam", "Madrid", "Rome", "New York", "Munich"]
INDUSTRIES = ["software", "retail", "finance", "health", "education", "media"]
TAGS = ["beta", "vip", "mobile", "churn-risk", "early-adopter", "partner"]
# (name, type, weight) of the events other than signup.
EVENTS = [("login", "event", 40), ("page_viewed", "page", 30), ("opened_app", "event", 12),
          ("added_to_cart", "event", 9), ("purchase", "event", 5), ("logout", "event", 4)]


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def wait_for_quiet(max_wait: float) -> bool:
    """Wait until no other benchmark (bench/ingest.py, wrk) runs; tell if it is quiet."""
    deadline = time.monotonic() + max_wait
    told = False
    while True:
        found = subprocess.run(["pgrep", "-f", OTHER_LOAD], capture_output=True, text=True)
        if not found.stdout.strip():
            if told:
                log("  the other benchmark has finished: going on")
            return True
        if time.monotonic() > deadline:
            log(f"  WARNING: other load still running after {max_wait:.0f} s; timings disturbed")
            return False
        if not told:
            log(f"  other load running (pids {found.stdout.split()}): waiting")
            told = True
        time.sleep(10)


# --- database and data -----------------------------------------------------------------


def weighted(rng: random.Random, pairs):
    values = [value for value, _ in pairs]
    cum, total = [], 0
    for _, weight in pairs:
        total += weight
        cum.append(total)
    return lambda: values[bisect.bisect_right(cum, rng.random() * total)]


def load(args) -> int:
    """Create the workspace and COPY the people and events in; return the workspace id."""
    from django.db import connection

    from engage.services import create_workspace
    from people.models import Event, Person

    rng = random.Random(args.seed)
    workspace, _ = create_workspace(name="segments bench", identifier_mode="email_or_id")
    ws = workspace.pk
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=DAYS)
    window = DAYS * 86400
    raw = connection.connection  # the psycopg 3 connection, in autocommit

    plan, country = weighted(rng, PLANS), weighted(rng, COUNTRIES)
    n_people = args.people
    # Who is active when: each person signed up ``created`` days ago (up to 2 years) and
    # was active from then (or 180 days ago) until ``until`` days ago (0 for 45%).
    created, until = [], []
    for _ in range(n_people):
        c = rng.uniform(0, 730)
        created.append(c)
        until.append(rng.uniform(0, 1) if rng.random() < 0.45 else rng.uniform(0, min(c, DAYS)))

    log(f"people: COPY {n_people:,}")
    columns = ("workspace_id, cio_id, customer_id, email, email_key, attributes, "
               "unsubscribed, created_at, updated_at, attributes_timestamp")
    with raw.cursor() as cur:
        with cur.copy(f"COPY {Person._meta.db_table} ({columns}) FROM STDIN") as copy:
            for i in range(n_people):
                email = f"user{i:07d}@example.com"
                signed_up = now - timedelta(days=created[i])
                seen = now - timedelta(days=until[i])
                attributes = {"email": email, "plan": plan(), "country": country(),
                              "created_at": int(signed_up.timestamp()),
                              "last_seen_at": int(seen.timestamp()),
                              "score": rng.randrange(101)}
                if rng.random() < 0.8:
                    attributes["newsletter"] = rng.random() < 0.4
                attributes["tags"] = rng.sample(TAGS, rng.choice([0, 0, 1, 1, 2, 3]))
                profile = {"city": rng.choice(CITIES)}
                if rng.random() < 0.9:
                    profile["age"] = rng.randrange(18, 75)
                if rng.random() < 0.6:
                    profile["company"] = {"size": int(rng.paretovariate(0.8) * 5),
                                          "industry": rng.choice(INDUSTRIES)}
                attributes["profile"] = profile
                copy.write_row((ws, f"{i:06x}{rng.getrandbits(24):06x}", f"user-{i}", email,
                                email, json.dumps(attributes), rng.random() < 0.03,
                                signed_up, seen, None))
        cur.execute(f"SELECT id FROM {Person._meta.db_table} WHERE workspace_id = %s "
                    "ORDER BY id", [ws])
        person_ids = [row[0] for row in cur.fetchall()]

    # Heavy-tailed activity: Pareto weights, split exactly into --events events.
    weights = [min(rng.paretovariate(1.3), 500.0) for _ in range(n_people)]
    total = sum(weights)
    counts, cum, done = [], 0.0, 0
    for w in weights:
        cum += w
        upto = round(args.events * cum / total)
        counts.append(upto - done)
        done = upto
    log(f"events: drawing {args.events:,} in time order")
    keys = []
    stride = 2 * n_people
    for i, n in enumerate(counts):
        if not n:
            continue
        first = min(created[i], DAYS)  # days ago
        last = min(until[i], first)
        signup = created[i] < DAYS
        if signup:
            keys.append(int((DAYS - first) * 86400) * stride + 2 * i + 1)
            n -= 1
        low, high = (DAYS - first) * 86400, (DAYS - last) * 86400
        for _ in range(n):
            keys.append(int(rng.uniform(low, high)) * stride + 2 * i)
    keys.sort()

    minutes = [(start + timedelta(minutes=m)).strftime("%Y-%m-%d %H:%M")
               for m in range(window // 60 + 2)]
    name = weighted(rng, [((n, t), w) for n, t, w in EVENTS])
    pools = {
        "login": [json.dumps({"method": m}) for m in ("password", "google", "sso", "magic_link")],
        "page_viewed": [json.dumps({"path": p}) for p in (
            "/", "/pricing", "/docs", "/blog", "/features", "/pricing/enterprise", "/account",
            "/docs/api", "/changelog")],
        "opened_app": [json.dumps({"platform": p, "version": f"2.{k}"})
                       for p in ("ios", "android") for k in range(5)],
        "added_to_cart": [json.dumps({"sku": f"sku-{k}", "price": round(5 + k * 7.5, 2)})
                          for k in range(40)],
        "purchase": [json.dumps({"amount": round(rng.lognormvariate(3.5, 1.0), 2),
                                 "currency": rng.choice(["EUR", "USD", "USD", "GBP"]),
                                 "items": [{"sku": f"sku-{rng.randrange(40)}",
                                            "price": round(rng.uniform(5, 300), 2)}
                                           for _ in range(rng.randrange(1, 4))]})
                     for _ in range(200)],
        "logout": ["{}"],
        "signup": [json.dumps({"source": s}) for s in ("ads", "organic", "referral", "partner")],
    }
    log(f"events: COPY {len(keys):,}")
    columns = ("workspace_id, person_id, anonymous_id, name, type, timestamp, data, "
               "dedup_id, received_at")
    with raw.cursor() as cur:
        with cur.copy(f"COPY {Event._meta.db_table} ({columns}) FROM STDIN") as copy:
            chunk = []
            for n, key in enumerate(keys):
                second, rest = divmod(key, stride)
                index, is_signup = divmod(rest, 2)
                event, kind = ("signup", "event") if is_signup else name()
                pool = pools[event]
                stamp = f"{minutes[second // 60]}:{second % 60:02d}+00"
                chunk.append(f"{ws}\t{person_ids[index]}\t\\N\t{event}\t{kind}\t{stamp}\t"
                             f"{pool[n % len(pool)]}\t\\N\t{stamp}\n")
                if len(chunk) >= 50_000:
                    copy.write("".join(chunk))
                    chunk = []
            copy.write("".join(chunk))
    del keys
    log("VACUUM ANALYZE, CHECKPOINT")
    with connection.cursor() as cursor:
        for table in (Person._meta.db_table, Event._meta.db_table):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        cursor.execute("CHECKPOINT")
    return ws


def reset_segments() -> None:
    """Forget the segments of an earlier run (with --reuse)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE segments_membershipchange, segments_membership, "
                       "segments_segment_depends_on, segments_segment, "
                       "segments_pendingevaluation, segments_evaluationticket, "
                       "django_q_ormq RESTART IDENTITY CASCADE")
        cursor.execute("DROP TABLE IF EXISTS bench_floor_membership")


# --- the floor: the realistic set in hand-written SQL ----------------------------------


FLOORS = {
    # Logins of the last 7 days grouped per person, purchases of the last 30 days anti-joined.
    "group-by + anti-join": """
        SELECT p.id FROM people_person p
        JOIN (SELECT e.person_id FROM people_event e
              WHERE e.workspace_id = %(ws)s AND e.name = 'login' AND e.timestamp >= %(d7)s
              GROUP BY e.person_id HAVING count(*) >= 3) l ON l.person_id = p.id
        WHERE p.workspace_id = %(ws)s AND p.attributes ->> 'plan' IN ('pro', 'enterprise')
          AND NOT EXISTS (SELECT 1 FROM people_event e WHERE e.workspace_id = %(ws)s
                          AND e.person_id = p.id AND e.name = 'purchase'
                          AND e.timestamp >= %(d30)s)
    """,
    # Both event conditions per person, through the (person, name, timestamp) index.
    "correlated index probes": """
        SELECT p.id FROM people_person p
        WHERE p.workspace_id = %(ws)s AND p.attributes ->> 'plan' IN ('pro', 'enterprise')
          AND (SELECT count(*) FROM (SELECT 1 FROM people_event e WHERE e.person_id = p.id
               AND e.name = 'login' AND e.timestamp >= %(d7)s LIMIT 3) c) >= 3
          AND NOT EXISTS (SELECT 1 FROM people_event e WHERE e.person_id = p.id
                          AND e.name = 'purchase' AND e.timestamp >= %(d30)s)
    """,
    # Everything as hashed sets of person ids.
    "hashed sets": """
        SELECT p.id FROM people_person p
        WHERE p.workspace_id = %(ws)s AND p.attributes ->> 'plan' IN ('pro', 'enterprise')
          AND p.id IN (SELECT e.person_id FROM people_event e
                       WHERE e.workspace_id = %(ws)s AND e.name = 'login'
                         AND e.timestamp >= %(d7)s
                       GROUP BY e.person_id HAVING count(*) >= 3)
          AND p.id NOT IN (SELECT e.person_id FROM people_event e
                           WHERE e.workspace_id = %(ws)s AND e.name = 'purchase'
                             AND e.timestamp >= %(d30)s AND e.person_id IS NOT NULL)
    """,
}


def floor_params(ws: int, now: datetime) -> dict:
    return {"ws": ws, "d7": now - timedelta(days=7), "d30": now - timedelta(days=30)}


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def floor_count(sql: str, ws: int) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({sql}) s",
                       floor_params(ws, datetime.now(UTC)))
        return cursor.fetchone()[0]


def floor_insert(sql: str, ws: int) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO bench_floor_membership (segment_id, person_id, entered_at) "
                       f"SELECT 1, s.id, %(at)s FROM ({sql}) s ORDER BY s.id",
                       {**floor_params(ws, datetime.now(UTC)), "at": datetime.now(UTC)})
        return cursor.rowcount


def explain(sql: str, params) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


# --- (a) full recompute ------------------------------------------------------------------


def bench_recompute(args, workspace) -> dict:
    from django.db import connection

    from segments import services
    from segments.models import Membership, MembershipChange, Segment

    segment = Segment.objects.filter(workspace=workspace,
                                     name="Active pro, no recent purchase").first()
    if segment is None:
        segment = services.create_segment(workspace, name="Active pro, no recent purchase",
                                          conditions_tree=REALISTIC)
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_floor_membership")
        cursor.execute("CREATE TABLE bench_floor_membership "
                       "(LIKE segments_membership INCLUDING ALL)")

    def empty():
        Membership.objects.filter(segment=segment).delete()
        MembershipChange.objects.filter(segment=segment).delete()
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE bench_floor_membership")
            cursor.execute("VACUUM (ANALYZE) segments_membership")
            cursor.execute("VACUUM (ANALYZE) segments_membershipchange")
            cursor.execute("VACUUM (ANALYZE) bench_floor_membership")

    # Warm the caches once (untimed), the same way for every variant.
    empty()
    services.recompute_segment(segment)
    for sql in FLOORS.values():
        floor_count(sql, workspace.pk)

    first, second, first_changes, second_changes = [], [], [], []
    floors = {label: [] for label in FLOORS}
    inserts = []
    quiet = True
    for _ in range(args.repeat):
        empty()
        quiet &= wait_for_quiet(args.max_wait)
        seconds, changes = timed(services.recompute_segment, segment)
        first.append(seconds)
        first_changes.append(changes)
        seconds, changes = timed(services.recompute_segment, segment)
        second.append(seconds)
        second_changes.append(changes)
        for label, sql in FLOORS.items():
            seconds, count = timed(floor_count, sql, workspace.pk)
            floors[label].append(seconds)
    best = min(FLOORS, key=lambda label: statistics.median(floors[label]))
    for _ in range(args.repeat):
        empty()
        quiet &= wait_for_quiet(args.max_wait)
        seconds, _ = timed(floor_insert, FLOORS[best], workspace.pk)
        inserts.append(seconds)

    # Check: the service's membership is the floor's set at the service's "now".
    empty()
    services.recompute_segment(segment)
    segment.refresh_from_db()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT count(*) FROM ({FLOORS[best]}) f), "
            "(SELECT count(*) FROM segments_membership WHERE segment_id = %(segment)s), "
            f"(SELECT count(*) FROM (({FLOORS[best]}) EXCEPT (SELECT person_id FROM "
            "segments_membership WHERE segment_id = %(segment)s)) a) + "
            "(SELECT count(*) FROM ((SELECT person_id FROM segments_membership WHERE "
            f"segment_id = %(segment)s) EXCEPT ({FLOORS[best]})) b)",
            {**floor_params(workspace.pk, segment.computed_at), "segment": segment.pk},
        )
        floor_size, members, difference = cursor.fetchone()
    result = {
        "first": first, "second": second, "floors": floors, "best_floor": best,
        "floor_insert": inserts, "members": members, "floor_size": floor_size,
        "difference": difference, "quiet": quiet,
        "first_changes": [(c.entered, c.exited) for c in first_changes],
        "second_changes": [(c.entered, c.exited) for c in second_changes],
        "segment": segment,
    }
    if args.explain:
        explain_plans(workspace, best)
    return result


def explain_plans(workspace, best: str) -> None:
    from django.utils import timezone

    from segments import conditions

    now = timezone.now()
    compiled = conditions.compile_tree(REALISTIC, now=now)
    sql = (f"SELECT count(*) FROM people_person WHERE people_person.workspace_id = %s "
           f"AND {compiled.sql}")
    print("\n--- EXPLAIN of the compiled condition (count over the workspace) ---")
    print(explain(sql, [workspace.pk, *compiled.params]))
    print(f"\n--- EXPLAIN of the floor ({best}) ---")
    print(explain(f"SELECT count(*) FROM ({FLOORS[best]}) s", floor_params(workspace.pk, now)))


# --- (b) re-evaluating one person against 50 segments ------------------------------------


def fifty_segments(realistic_id: int) -> list[tuple[str, dict]]:
    """The 50 trees; ``{"ref": k}`` stands for a reference to the k-th segment of the list."""
    def attr(field, operator, value=None):
        body = {"field": field, "operator": operator}
        if value is not None:
            body["value"] = value
        return {"attribute": body}

    def event(name, *, count=None, within=None, filters=None):
        body = {"name": name}
        if count:
            body["count"] = {"operator": count[0], "value": count[1]}
        if within:
            body["within_days"] = within
        if filters:
            body["filters"] = filters
        return {"event": body}

    return [
        ("Pro", attr("plan", "eq", "pro")),
        ("Paying", attr("plan", "in", ["starter", "pro", "enterprise"])),
        ("Not free", attr("plan", "neq", "free")),
        ("Germany", attr("country", "eq", "DE")),
        ("Europe", attr("country", "in", ["DE", "GB", "FR", "NL", "ES", "IT"])),
        ("30 and over", attr("profile.age", "gte", 30)),
        ("Under 25", attr("profile.age", "lt", 25)),
        ("Large companies", attr("profile.company.size", "gt", 100)),
        ("Software industry", attr("profile.company.industry", "eq", "software")),
        ("San cities", attr("profile.city", "starts_with", "San")),
        ("Beta testers", attr("tags[]", "eq", "beta")),
        ("No tags", {"not": attr("tags[]", "exists")}),
        ("Newsletter", attr("newsletter", "eq", True)),
        ("Newsletter unknown", attr("newsletter", "not_exists")),
        ("New this month", attr("created_at", "timestamp_after", {"days_ago": 30})),
        ("Older than a year", attr("created_at", "timestamp_before", {"days_ago": 365})),
        ("Seen this week", attr("last_seen_at", "timestamp_after", {"days_ago": 7})),
        ("Subscribed", attr("unsubscribed", "eq", False)),
        ("High score", attr("score", "gte", 80)),
        ("Example emails", attr("email", "contains", "@example.com")),
        ("Logged in this week", event("login", within=7)),
        ("Frequent logins", event("login", count=("gte", 3), within=7)),
        ("No login this month", event("login", count=("eq", 0), within=30)),
        ("Bought this month", event("purchase", within=30)),
        ("Repeat buyers", event("purchase", count=("gte", 2), within=90)),
        ("Never bought", event("purchase", count=("eq", 0))),
        ("Big purchase", event("purchase", within=90,
                               filters=[{"field": "amount", "operator": "gt", "value": 100}])),
        ("Paid in EUR", event("purchase", within=30,
                              filters=[{"field": "currency", "operator": "eq", "value": "EUR"}])),
        ("Pricier items", event("purchase", within=60, filters=[
            {"field": "items[].price", "operator": "gte", "value": 250}])),
        ("Pricing page", event("page_viewed", within=14, filters=[
            {"field": "path", "operator": "starts_with", "value": "/pricing"}])),
        ("Cart abandoners", {"and": [event("added_to_cart", within=7),
                                     {"not": event("purchase", within=7)}]}),
        ("Signed up this month", event("signup", within=30)),
        ("Heavy readers", event("page_viewed", count=("gte", 10), within=30)),
        ("Few logins", event("login", count=("lt", 2), within=30)),
        ("Exactly one purchase", event("purchase", count=("eq", 1), within=180)),
        ("Android users", event("opened_app", within=30, filters=[
            {"field": "platform", "operator": "eq", "value": "android"}])),
        ("US pro", {"and": [attr("plan", "eq", "pro"), attr("country", "eq", "US")]}),
        ("Enterprise or big", {"or": [attr("plan", "eq", "enterprise"),
                                      attr("profile.company.size", "gte", 500)]}),
        ("Engaged newsletter", {"and": [attr("newsletter", "eq", True),
                                        event("login", within=14)]}),
        ("Free but active", {"and": [attr("plan", "eq", "free"),
                                     event("login", count=("gte", 5), within=30)]}),
        ("Churn risk", {"and": [attr("plan", "in", ["pro", "enterprise"]),
                                event("login", count=("eq", 0), within=14)]}),
        ("Upsell", {"and": [attr("plan", "eq", "starter"),
                            {"or": [event("page_viewed", within=7, filters=[
                                {"field": "path", "operator": "eq", "value": "/pricing"}]),
                                attr("score", "gt", 90)]}]}),
        ("Young mobile", {"and": [attr("profile.age", "lt", 30),
                                  event("opened_app", count=("gte", 2), within=14)]}),
        ("Win back", {"and": [{"not": event("login", within=60)},
                              event("purchase", within=180)]}),
        ("Realistic (a)", REALISTIC),
        ("Frequent pro (ref)", {"and": [{"ref": 21}, attr("plan", "eq", "pro")]}),
        ("Not buyers (ref)", {"not": {"ref": 23}}),
        ("Active or buying (ref)", {"or": [{"ref": 20}, {"ref": 23}]}),
        ("EU frequent pro (ref of ref)", {"and": [{"ref": 45}, {"ref": 4}]}),
        ("Pro in segment (a) (ref)", {"and": [{"segment": {"id": realistic_id}},
                                              attr("country", "in", ["US", "CA"])]}),
    ]


def resolve(tree, ids: list[int]):
    if isinstance(tree, dict):
        if set(tree) == {"ref"}:
            return {"segment": {"id": ids[tree["ref"]]}}
        return {key: resolve(value, ids) for key, value in tree.items()}
    if isinstance(tree, list):
        return [resolve(item, ids) for item in tree]
    return tree


def bench_evaluate(args, workspace, realistic) -> dict:
    from django.db import connection

    from segments import services
    from segments.models import Segment

    specs = fifty_segments(realistic.pk)
    assert len(specs) == 50
    existing = {segment.name: segment for segment in Segment.objects.filter(
        workspace=workspace, name__in=[name for name, _ in specs[:-1]])}
    recompute = {}
    if len(existing) == len(specs) - 1:  # kept from an earlier run (--keep-segments)
        log("reusing the 49 other segments of the last run, as they are")
        segments = [existing[name] for name, _ in specs[:-1]]
    else:
        segments, ids = [], []
        for name, tree in specs[:-1]:
            segment = services.create_segment(workspace, name=name,
                                              conditions_tree=resolve(tree, ids))
            segments.append(segment)
            ids.append(segment.pk)
        # The realistic segment of (a) is the 50th; it is already computed.
        log("computing the 49 other segments")
        for segment in segments:
            seconds, _ = timed(services.recompute_segment, segment)
            recompute[segment.name] = seconds
    segments.append(realistic)

    rng = random.Random(args.seed + 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM people_person WHERE workspace_id = %s", [workspace.pk])
        everyone = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT person_id FROM people_event WHERE workspace_id = %s AND "
                       "timestamp >= now() - interval '1 day' AND person_id IS NOT NULL",
                       [workspace.pk])
        recent = [row[0] for row in cursor.fetchall()]
    half = args.samples // 2
    sample = rng.sample(everyone, args.samples - half) + [rng.choice(recent)
                                                           for _ in range(half)]
    rng.shuffle(sample)

    for person_id in rng.sample(everyone, 20):  # warm up
        services.evaluate_people(workspace, [person_id])
    quiet = wait_for_quiet(args.max_wait)
    times, entered, exited = [], 0, 0
    for person_id in sample:
        seconds, changes = timed(services.evaluate_people, workspace, [person_id])
        times.append(seconds * 1000)
        entered += changes.entered
        exited += changes.exited
    return {"times": times, "entered": entered, "exited": exited, "quiet": quiet,
            "recompute": recompute, "segments": len(segments)}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- (c) preview ---------------------------------------------------------------------------


def bench_preview(args, workspace) -> dict:
    from segments import conditions, services

    def count_only():
        conditions.validate(REALISTIC, workspace=workspace)
        return conditions.matching_people(workspace, REALISTIC).count()

    services.preview(workspace, REALISTIC)  # warm up
    count_only()
    quiet = wait_for_quiet(args.max_wait)
    full, counts = [], []
    for _ in range(args.repeat):
        seconds, result = timed(services.preview, workspace, REALISTIC)
        full.append(seconds)
        seconds, count = timed(count_only)
        counts.append(seconds)
    return {"full": full, "count": counts, "matched": result.count,
            "sample": len(result.sample), "count_only": count, "quiet": quiet}


# --- driver ----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--samples", type=int, default=300,
                        help="people re-evaluated one at a time in (b) (default 300)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs of each (a) and (c) measurement (default 3)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-wait", type=float, default=2400,
                        help="seconds to wait for other benchmarks to finish (default 2400)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the database of the last run (loaded the same day)")
    parser.add_argument("--keep-segments", action="store_true",
                        help="with --reuse: keep the 50 segments of the last run (their first "
                             "computation at full size takes about 12 minutes)")
    parser.add_argument("--explain", action="store_true",
                        help="print EXPLAIN (ANALYZE, BUFFERS) of the compiled SQL and floor")
    args = parser.parse_args()

    if not args.reuse:
        common.recreate_database(DB_NAME)
    common.setup_django(DATABASE_URL)
    from django.core.management import call_command
    from django.db import connection

    from engage.models import Workspace
    from people.models import Event, Person
    from segments import conditions, services  # noqa: F401  (the code measured, loaded now)

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0]
    if args.reuse:
        if not args.keep_segments:
            reset_segments()
        workspace = Workspace.objects.get(name="segments bench")
    else:
        started = time.perf_counter()
        ws = load(args)
        log(f"loaded in {time.perf_counter() - started:.0f} s")
        workspace = Workspace.objects.get(pk=ws)
    people = Person.objects.filter(workspace=workspace).count()
    events = Event.objects.filter(workspace=workspace).count()
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, count(*) FROM people_event GROUP BY name ORDER BY 2 DESC")
        by_name = cursor.fetchall()
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('people_event')), "
                       "pg_size_pretty(pg_total_relation_size('people_person'))")
        sizes = cursor.fetchone()
    print(version)
    print(f"{people:,} people, {events:,} events "
          f"({', '.join(f'{n} {c:,}' for n, c in by_name)}); "
          f"people_event {sizes[0]}, people_person {sizes[1]} with indexes; "
          f"{os.cpu_count()} CPUs\n", flush=True)

    log("(a) full recompute")
    a = bench_recompute(args, workspace)
    log("(b) evaluate_people")
    b = bench_evaluate(args, workspace, a["segment"])
    log("(c) preview")
    c = bench_preview(args, workspace)

    med = statistics.median
    floor_count_s = med(a["floors"][a["best_floor"]])
    floor_insert_s = med(a["floor_insert"])
    print()
    print(f"(a) members {a['members']:,}; floor set {a['floor_size']:,}; "
          f"sets differ by {a['difference']} people")
    print(f"    first builds {fmt(a['first'])} s (entered, exited {a['first_changes']})")
    print(f"    recomputes unchanged {fmt(a['second'])} s "
          f"(entered, exited {a['second_changes']})")
    for label, values in a["floors"].items():
        print(f"    floor count [{label}] {fmt(values)} s")
    print(f"    floor insert [{a['best_floor']}] {fmt(a['floor_insert'])} s")
    times = b["times"]
    print(f"(b) {b['segments']} segments, {len(times)} people: p50 {percentile(times, 50):.2f} "
          f"ms, p95 {percentile(times, 95):.2f} ms, p99 {percentile(times, 99):.2f} ms, "
          f"max {max(times):.2f} ms; changes found: {b['entered']} entered, "
          f"{b['exited']} exited")
    slowest = sorted(b["recompute"].items(), key=lambda kv: -kv[1])
    if slowest:
        print(f"    recomputing the 49 others: total {sum(b['recompute'].values()):.2f} s; "
              f"slowest: " + ", ".join(f"{n} {s:.2f} s" for n, s in slowest[:5]))
    print(f"(c) preview {fmt(c['full'])} s, its count {fmt(c['count'])} s; "
          f"{c['matched']:,} matched, {c['sample']} sampled")
    print(f"quiet during all timings: {a['quiet'] and b['quiet'] and c['quiet']}\n")

    first, second = med(a["first"]), med(a["second"])
    rows = [
        ("(a) recompute, first build", f"{first:.2f} s",
         f"{floor_insert_s:.2f} s insert / {floor_count_s:.2f} s count",
         f"{first / floor_insert_s:.2f}x",
         first <= TARGET_RECOMPUTE_SECONDS and first / floor_insert_s <= TARGET_FLOOR_RATIO),
        ("(a) recompute, unchanged", f"{second:.2f} s",
         f"{floor_count_s:.2f} s count", f"{second / floor_count_s:.2f}x",
         second <= TARGET_RECOMPUTE_SECONDS and second / floor_count_s <= TARGET_FLOOR_RATIO),
        ("(b) evaluate_people, 1 person x 50 segments",
         f"p50 {percentile(times, 50):.1f} / p95 {percentile(times, 95):.1f} / "
         f"p99 {percentile(times, 99):.1f} ms", "", "",
         percentile(times, 95) <= TARGET_EVALUATE_P95_MS),
        ("(c) preview (count + sample)", f"{med(c['full']):.2f} s", "", "",
         med(c["full"]) <= TARGET_PREVIEW_SECONDS),
        ("(c) preview, count only", f"{med(c['count']):.2f} s",
         f"{floor_count_s:.2f} s count", f"{med(c['count']) / floor_count_s:.2f}x",
         med(c["count"]) <= TARGET_PREVIEW_SECONDS),
    ]
    print("| measurement | service (median) | floor | ratio | target met |")
    print("|---|---:|---:|---:|---|")
    for label, service, floor, ratio, ok in rows:
        print(f"| {label} | {service} | {floor} | {ratio} | {'yes' if ok else 'no'} |")
    print(f"\nTargets: (a) at most {TARGET_RECOMPUTE_SECONDS:g} s and within "
          f"{TARGET_FLOOR_RATIO}x the floor; (b) p95 at most {TARGET_EVALUATE_P95_MS:g} ms; "
          f"(c) at most {TARGET_PREVIEW_SECONDS:g} s.")
    ok = a["difference"] == 0 and a["members"] == a["floor_size"]
    return 0 if ok else 1


def fmt(values: list[float]) -> str:
    return " / ".join(f"{v:.3f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
