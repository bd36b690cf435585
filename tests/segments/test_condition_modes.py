"""The set-wide and the correlated forms of a tree select the same people.

A full recompute (and previews, searches, exports) compile event counts set-wide, as
``GROUP BY person_id HAVING ...`` sets; re-evaluating a few people compiles them
correlated, counting each person's events through the index. Both must keep the count
semantics exactly, including people without any event and events without a person.
"""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from people.models import Event
from segments import services
from segments.conditions import compile_tree, matching_people, validate
from segments.models import Membership
from tests.factories import make_person

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
OPERATORS = ["eq", "neq", "gt", "gte", "lt", "lte"]
# name -> (logins within the last 7 days, older logins, of which with data plan=pro)
LOGINS = {"p0": (0, 0), "p1": (1, 0), "p2": (2, 1), "p3": (3, 0), "p4": (1, 3), "p5": (4, 2)}


def add_events(workspace, person, recent: int, old: int):
    rows = [Event(workspace=workspace, person=person, name="login",
                  timestamp=NOW - timedelta(days=1, hours=k), received_at=NOW,
                  data={"plan": "pro" if k % 2 == 0 else "free"})
            for k in range(recent)]
    rows += [Event(workspace=workspace, person=person, name="login",
                   timestamp=NOW - timedelta(days=20 + k), received_at=NOW, data={})
             for k in range(old)]
    rows.append(Event(workspace=workspace, person=person, name="purchase",
                      timestamp=NOW - timedelta(days=2), received_at=NOW, data={}))
    Event.objects.bulk_create(rows)


@pytest.fixture
def logins(workspace, other_workspace):
    expected = {}
    for name, (recent, old) in LOGINS.items():
        person = make_person(workspace, name)
        add_events(workspace, person, recent, old)
        expected[name] = (recent, old, (recent + 1) // 2)
    # Events of no person, and a busy person of another workspace, never count.
    Event.objects.bulk_create([
        Event(workspace=workspace, person=None, anonymous_id="anon", name="login",
              timestamp=NOW - timedelta(hours=k), received_at=NOW, data={"plan": "pro"})
        for k in range(5)
    ])
    add_events(other_workspace, make_person(other_workspace, "p3"), 6, 6)
    return expected


def count_matches(n: int, operator: str, value: int) -> bool:
    return {"eq": n == value, "neq": n != value, "gt": n > value, "gte": n >= value,
            "lt": n < value, "lte": n <= value}[operator]


@pytest.mark.parametrize("correlated", [False, True], ids=["set-wide", "correlated"])
@pytest.mark.parametrize("window, filtered", [(None, False), (7, False), (7, True),
                                              (None, True)])
def test_every_count_comparison(workspace, logins, correlated, window, filtered):
    for operator in OPERATORS:
        for value in range(6):
            body = {"name": "login", "count": {"operator": operator, "value": value}}
            if window:
                body["within_days"] = window
            if filtered:
                body["filters"] = [{"field": "plan", "operator": "eq", "value": "pro"}]
            tree = {"event": body}
            validate(tree, workspace=workspace)
            found = matching_people(workspace, tree, now=NOW, correlated=correlated)
            expected = set()
            for name, (recent, old, pro) in logins.items():
                n = pro if filtered else recent + (0 if window else old)
                if count_matches(n, operator, value):
                    expected.add(name)
            assert set(found.values_list("customer_id", flat=True)) == expected, body


@pytest.mark.parametrize("correlated", [False, True], ids=["set-wide", "correlated"])
def test_counts_under_not_and_or(workspace, logins, correlated):
    tree = {"or": [
        {"not": {"event": {"name": "login", "count": {"operator": "gte", "value": 3},
                           "within_days": 7}}},
        {"and": [{"event": {"name": "login", "count": {"operator": "lt", "value": 3}}},
                 {"attribute": {"field": "missing", "operator": "not_exists"}}]},
    ]}
    validate(tree, workspace=workspace)
    found = matching_people(workspace, tree, now=NOW, correlated=correlated)
    # Not 3+ recent logins (p0, p1, p2, p4), or fewer than 3 logins ever (p0, p1).
    assert set(found.values_list("customer_id", flat=True)) == {"p0", "p1", "p2", "p4"}


def test_the_forms_differ_where_they_should():
    tree = {"event": {"name": "login", "count": {"operator": "gte", "value": 3}}}
    set_wide = compile_tree(tree, now=NOW, workspace_id=1)
    correlated = compile_tree(tree, now=NOW, correlated=True, workspace_id=1)
    assert "GROUP BY ev.person_id" in set_wide.sql and "LIMIT" not in set_wide.sql
    assert "LIMIT 4" in correlated.sql and "GROUP BY" not in correlated.sql
    assert "ev.workspace_id" in set_wide.sql and "ev.workspace_id" not in correlated.sql


def test_re_evaluating_people_agrees_with_a_full_recompute(
        workspace, logins, django_capture_on_commit_callbacks):
    trees = [
        {"event": {"name": "login", "count": {"operator": op, "value": value},
                   "within_days": 30}}
        for op in OPERATORS for value in (0, 2, 3)
    ] + [
        {"and": [{"event": {"name": "login", "count": {"operator": "gte", "value": 3},
                            "within_days": 7}},
                 {"not": {"event": {"name": "purchase", "within_days": 30}}}]},
        {"not": {"event": {"name": "login", "count": {"operator": "lte", "value": 1}}}},
    ]
    with time_machine.travel(NOW, tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            for number, tree in enumerate(trees):
                services.create_segment(workspace, name=f"S{number}", conditions_tree=tree)
        assert Membership.objects.filter(segment__workspace=workspace).exists()
        ids = list(workspace.people.values_list("pk", flat=True))
        # The correlated form finds exactly what the set-wide recompute stored.
        changes = services.evaluate_people(workspace, ids)
    assert (changes.entered, changes.exited) == (0, 0)
