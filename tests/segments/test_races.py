"""Membership stays exact while people change, are deleted and segments recompute at once.

These tests run writers in threads, each on its own PostgreSQL connection, a fixed number
of rounds each; on SQLite one writer runs at a time, so there is no race to show.
"""

import random
import threading
import time

import pytest
from django.db import connection, connections

from people import services as people
from people.models import Person
from people.services import Ref
from segments import services
from segments.models import Membership, MembershipChange, Segment
from tests.factories import make_person, make_workspace

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="concurrent writers need PostgreSQL; SQLite runs one writer at a time")

PRO = {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}}
LONDON = {"attribute": {"field": "city", "operator": "eq", "value": "London"}}


def race(*workers, rounds=30, alongside=()):
    """Run each ``worker(rng)`` ``rounds`` times in a thread of its own, all at once, and
    each of ``alongside`` over and over until they are done; return the errors raised."""
    done = threading.Event()
    errors = []

    def run(worker, seed, repeat):
        rng = random.Random(seed)
        try:
            for _ in repeat():
                worker(rng)
        except Exception as error:  # noqa: BLE001 (reported by the test)
            errors.append(f"{worker.__name__}: {error!r}")
        finally:
            connections.close_all()

    def until_done():
        while not done.is_set():
            yield

    threads = [threading.Thread(target=run, args=(worker, seed, lambda: range(rounds)))
               for seed, worker in enumerate(workers)]
    others = [threading.Thread(target=run, args=(worker, -seed, until_done))
              for seed, worker in enumerate(alongside, start=1)]
    for thread in threads + others:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    for thread in others:
        thread.join()
    return errors


def replayed(segment):
    """Return the members the log says the segment has, checking it alternates exactly."""
    inside = set()
    for person_id, change in (MembershipChange.objects.filter(segment=segment)
                              .order_by("pk").values_list("person_id", "change")):
        if change == "entered":
            assert person_id not in inside, f"{person_id} entered {segment} twice"
            inside.add(person_id)
        else:
            assert person_id in inside, f"{person_id} left {segment} without entering"
            inside.remove(person_id)
    return inside


def members(segment):
    return set(Membership.objects.filter(segment=segment).values_list("person_id", flat=True))


@pytest.mark.parametrize("run", range(2))
def test_recomputes_racing_flips_and_deletions_leave_membership_exact(transactional_db, run):
    workspace = make_workspace("Race")
    pro = services.create_segment(workspace, name="Pro", conditions_tree=PRO)
    london_pro = services.create_segment(workspace, name="London pro", conditions_tree={
        "and": [{"segment": {"id": pro.pk}}, LONDON]})
    for number in range(40):
        make_person(workspace, f"p{number}", plan="pro" if number % 2 else "free",
                    city="London" if number % 3 else "Paris")
    services.recompute_segment(Segment.objects.get(pk=pro.pk))
    services.recompute_segment(Segment.objects.get(pk=london_pro.pk))
    doomed = [f"p{number}" for number in range(0, 40, 3)]
    random.Random(run).shuffle(doomed)

    def flip(rng):
        ref = Ref("id", f"p{rng.randrange(40)}")
        people.identify_person(workspace, ref, {"plan": rng.choice(["pro", "free"])})

    def delete(rng):
        if doomed:
            people.delete_person(workspace, Ref("id", doomed.pop()))
        time.sleep(0.02)

    def recompute_pro(rng):
        services.recompute_segment(Segment.objects.get(pk=pro.pk))

    def recompute_london_pro(rng):
        services.recompute_segment(Segment.objects.get(pk=london_pro.pk))

    errors = race(flip, flip, delete, recompute_pro, recompute_london_pro)

    assert errors == []
    # Whatever is still owed (people a recompute had to leave to real-time evaluation)
    # is caught up, as the worker would.
    services.evaluate_pending(workspace.pk)
    everyone = Person.objects.filter(workspace=workspace)
    want_pro = set(everyone.filter(attributes__plan="pro").values_list("pk", flat=True))
    want_london_pro = set(everyone.filter(attributes__plan="pro", attributes__city="London")
                          .values_list("pk", flat=True))
    assert members(pro) == want_pro
    assert members(london_pro) == want_london_pro
    assert replayed(pro) == want_pro
    assert replayed(london_pro) == want_london_pro
