"""Benchmark the server time of the People page and a segment page at 1,000,000 people.

Run it by hand from the repository root, after ``bench/segments.py`` has loaded its
database (1,000,000 people, 10,000,000 events, 50 segments):

    .venv/bin/python bench/segments.py            # once: loads engage_segments_bench
    .venv/bin/python bench/pages.py               # then, as often as you like

It reuses ``engage_segments_bench`` on 127.0.0.1:5432 (it writes nothing but a user, a
membership and a session) and requests each page in this process through Django's test
client, signed in as an admin of the bench workspace, with DEBUG off. "Server time" is
the time from the request entering Django to the rendered response: URL routing,
middleware, queries and templates; no network and no browser. Each page is requested
``--warmup`` times, then ``--repeat`` times measured; the figures are the median, p95 and
max, with the number of queries and the time they took (of the last request).

Pages: the People page unfiltered, with an exact search, with an attribute filter, with a
segment filter (in and not in), its second page (keyset), and the pages of two segments:
the realistic one of ``bench/segments.py`` (a few hundred members) and the largest.
"""

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The repository's root in place of this script's folder, whose scripts are named like
# the apps and the standard library's modules (``segments``, ``campaigns``).
sys.path[0] = str(REPO_ROOT)

from bench import common  # noqa: E402

TARGET_MS = 300.0


def load_segments_bench():
    spec = importlib.util.spec_from_file_location("bench_segments",
                                                  REPO_ROOT / "bench" / "segments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(client, url: str, warmup: int, repeat: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(warmup):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    sql_ms = sum(float(query["time"]) for query in queries.captured_queries) * 1000
    ordered = sorted(times)
    return {"url": url, "median": statistics.median(times),
            "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
            "max": ordered[-1], "queries": len(queries.captured_queries), "sql_ms": sql_ms}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    bench = load_segments_bench()
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    common.setup_django(bench.DATABASE_URL)
    from django.contrib.auth import get_user_model
    from django.db.models import Count
    from django.test import Client
    from django.urls import reverse

    from engage.models import Membership, Workspace
    from people.models import Person
    from segments.models import Segment

    workspace = Workspace.objects.get(name="segments bench")
    people = Person.objects.filter(workspace=workspace).count()
    user, _ = get_user_model().objects.get_or_create(username="pages-bench")
    Membership.objects.update_or_create(user=user, workspace=workspace,
                                        defaults={"role": Membership.Role.ADMIN})
    client = Client()
    client.force_login(user)

    segments = (Segment.objects.filter(workspace=workspace)
                .annotate(members=Count("memberships")).order_by("-members"))
    largest = segments.first()
    realistic = segments.filter(name="Active pro, no recent purchase").first() or segments.last()
    some = Person.objects.filter(workspace=workspace).order_by("pk")[people // 2]
    # The keyset of the second page: the last person of the first (50 a page, newest first).
    first_page = (Person.objects.filter(workspace=workspace).order_by("-pk")
                  .values_list("pk", flat=True)[49])
    people_url = reverse("person-list")
    pages = [
        ("People, first page", people_url),
        ("People, second page (keyset)", f"{people_url}?before={first_page}"),
        ("People, exact search by email", f"{people_url}?q={some.email}"),
        ("People, attribute filter plan = pro",
         f"{people_url}?field=plan&operator=eq&value=pro"),
        (f"People, in segment '{largest.name}'",
         f"{people_url}?segment={largest.pk}"),
        (f"People, not in segment '{realistic.name}'",
         f"{people_url}?not_segment={realistic.pk}"),
        (f"Segment page '{realistic.name}' ({realistic.members:,} members)",
         reverse("segments:detail", kwargs={"pk": realistic.pk})),
        (f"Segment page '{largest.name}' ({largest.members:,} members)",
         reverse("segments:detail", kwargs={"pk": largest.pk})),
    ]
    print(f"{people:,} people in the workspace; {args.repeat} measured requests a page "
          f"after {args.warmup} to warm up\n")
    print("| page | median ms | p95 ms | max ms | queries | SQL ms | under 300 ms |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for label, url in pages:
        result = measure(client, url, args.warmup, args.repeat)
        met = "yes" if result["p95"] <= TARGET_MS else "no"
        print(f"| {label} | {result['median']:.0f} | {result['p95']:.0f} | "
              f"{result['max']:.0f} | {result['queries']} | {result['sql_ms']:.0f} | {met} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
