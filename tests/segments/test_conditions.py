"""Each node kind and operator of the condition contract, in SQL, on this database."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from people import services
from segments.conditions import ConditionError, matching_people, parse_path, validate
from segments.models import Membership, Segment
from tests.factories import make_person

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
STAMP = int(NOW.timestamp())


@pytest.fixture
def people(workspace):
    make_person(workspace, "ada", plan="pro", score=42, ratio="2.5", vip=True,
                tags=["a", "b"], items=[{"price": 5, "sku": "x"}, {"price": 50}],
                profile={"age": 36, "city": "London"}, seen_at=STAMP - 3 * 86400,
                note="pro plan", empty=None)
    make_person(workspace, "bob", plan="free", score="7", vip=False, tags=[],
                items=[{"price": 20}], profile={"age": "x"}, seen_at=STAMP - 100 * 86400)
    make_person(workspace, "cy", email="cy@example.com", score=True, seen_at="yesterday")
    return workspace


@pytest.fixture(params=[False, True], ids=["set-wide", "correlated"])
def correlated(request):
    """Every test that takes this runs with both forms of the compiled conditions."""
    return request.param


def match(workspace, field, operator, value=None, *, now=NOW, correlated=False):
    condition = {"field": field, "operator": operator}
    if value is not None:
        condition["value"] = value
    tree = {"attribute": condition}
    validate(tree, workspace=workspace)
    found = matching_people(workspace, tree, now=now, correlated=correlated)
    return set(found.values_list("customer_id", flat=True))


@pytest.mark.parametrize("field, operator, value, expected", [
    ("plan", "eq", "pro", {"ada"}),
    ("plan", "eq", "Pro", set()),  # case-sensitive
    ("plan", "neq", "pro", {"bob", "cy"}),  # a missing attribute matches neq
    ("score", "eq", 42, {"ada"}),
    ("score", "eq", "42", {"ada"}),  # numbers compare in their JSON text form
    ("score", "eq", "7", {"bob"}),
    ("score", "eq", True, {"cy"}),
    ("vip", "eq", "false", {"bob"}),
    ("plan", "in", ["pro", "free"], {"ada", "bob"}),
    ("plan", "contains", "r", {"ada", "bob"}),
    ("note", "contains", "plan", {"ada"}),
    ("note", "not_contains", "plan", {"bob", "cy"}),
    ("plan", "starts_with", "pr", {"ada"}),
    ("note", "starts_with", "plan", set()),
    ("score", "gt", 7, {"ada"}),
    ("score", "gte", 7, {"ada", "bob"}),  # "7" holds a number
    ("score", "lt", 42, {"bob"}),
    ("score", "lte", "42", {"ada", "bob"}),
    ("ratio", "gt", 2, {"ada"}),
    ("plan", "gt", 0, set()),  # text never compares as a number
    ("plan", "exists", None, {"ada", "bob"}),
    ("plan", "not_exists", None, {"cy"}),
    ("empty", "exists", None, set()),  # JSON null counts as missing
    ("profile.age", "eq", 36, {"ada"}),
    ("profile.age", "gt", 1, {"ada"}),
    ("profile.city", "exists", None, {"ada"}),
    ("tags[]", "eq", "b", {"ada"}),
    ("tags[]", "exists", None, {"ada"}),
    ("tags[0]", "eq", "b", set()),
    ("tags[1]", "eq", "b", {"ada"}),
    ("items[].price", "gte", 20, {"ada", "bob"}),
    ("items[0].price", "gte", 20, {"bob"}),
    ("items[].sku", "exists", None, {"ada"}),
    ("id", "starts_with", "a", {"ada"}),
    ("id", "not_exists", None, set()),
    ("unsubscribed", "eq", False, {"ada", "bob", "cy"}),
    ("email", "eq", "cy@example.com", {"cy"}),
])
def test_attribute_operators(people, field, operator, value, expected, correlated):
    assert match(people, field, operator, value, correlated=correlated) == expected


def test_timestamp_operators(people):
    assert match(people, "seen_at", "is_timestamp") == {"ada", "bob"}
    assert match(people, "seen_at", "timestamp_after", {"days_ago": 7}) == {"ada"}
    assert match(people, "seen_at", "timestamp_before", {"days_ago": 90}) == {"bob"}
    assert match(people, "seen_at", "timestamp_before", STAMP) == {"ada", "bob"}
    assert match(people, "seen_at", "timestamp_before", {"days_from_now": 1}) == {"ada", "bob"}
    # Later, "in the last 7 days" no longer holds.
    later = NOW + timedelta(days=10)
    assert match(people, "seen_at", "timestamp_after", {"days_ago": 7}, now=later) == set()


def test_timestamps_in_milliseconds_never_match(workspace):
    make_person(workspace, "ms", seen_at=STAMP * 1000)
    assert match(workspace, "seen_at", "is_timestamp") == set()
    assert match(workspace, "seen_at", "timestamp_before", {"days_from_now": 1}) == set()


def track(workspace, who, name, days_ago, **data):
    with time_machine.travel(NOW - timedelta(days=days_ago), tick=False):
        services.track_event(workspace, services.Ref("id", who), name=name, data=data)


def event_match(workspace, correlated=False, **body):
    tree = {"event": body}
    validate(tree, workspace=workspace)
    found = matching_people(workspace, tree, now=NOW, correlated=correlated)
    return set(found.values_list("customer_id", flat=True))


def test_event_conditions(people, correlated):
    for days in (1, 2, 3):
        track(people, "ada", "login", days)
    track(people, "ada", "login", 20)
    track(people, "bob", "login", 40)
    track(people, "bob", "purchase", 5, plan="pro", items=[{"price": 99}])
    track(people, "cy", "purchase", 5, plan="free")

    def found(**body):
        return event_match(people, correlated, **body)

    assert found(name="login") == {"ada", "bob"}
    assert found(name="login", count={"operator": "eq", "value": 0}) == {"cy"}
    assert found(name="login", count={"operator": "gte", "value": 3},
                 within_days=7) == {"ada"}
    assert found(name="login", count={"operator": "eq", "value": 4}) == {"ada"}
    assert found(name="login", count={"operator": "lt", "value": 2}) == {"bob", "cy"}
    assert found(name="login", within_days=30) == {"ada"}
    assert found(name="purchase",
                 filters=[{"field": "plan", "operator": "eq", "value": "pro"}]) == {"bob"}
    assert found(name="purchase", filters=[
        {"field": "items[].price", "operator": "gt", "value": 50}]) == {"bob"}
    assert found(name="purchase", count={"operator": "eq", "value": 0},
                 filters=[{"field": "plan", "operator": "eq", "value": "free"}]) == {"ada", "bob"}


def test_and_or_not_and_segment(people, correlated):
    segment = Segment.objects.create(workspace=people, name="VIPs", kind="manual",
                                     created_at=NOW, updated_at=NOW)
    Membership.objects.create(segment=segment, person=people.people.get(customer_id="bob"),
                              entered_at=NOW)
    tree = {"or": [
        {"and": [{"attribute": {"field": "plan", "operator": "eq", "value": "pro"}},
                 {"not": {"attribute": {"field": "vip", "operator": "eq", "value": False}}}]},
        {"segment": {"id": segment.pk}},
    ]}
    validate(tree, workspace=people)
    found = matching_people(people, tree, now=NOW, correlated=correlated)
    assert set(found.values_list("customer_id", flat=True)) == {"ada", "bob"}
    not_in = {"not": {"segment": {"id": segment.pk}}}
    found = matching_people(people, not_in, correlated=correlated)
    assert set(found.values_list("customer_id", flat=True)) == {"ada", "cy"}


def test_other_workspaces_never_match(people, other_workspace):
    make_person(other_workspace, "ada", plan="pro")
    assert match(people, "plan", "eq", "pro") == {"ada"}
    assert matching_people(people, {"attribute": {"field": "plan", "operator": "eq",
                                                  "value": "pro"}}).get().workspace == people


@pytest.mark.parametrize("path, steps", [
    ("a", [("key", "a")]),
    ("a.b", [("key", "a"), ("key", "b")]),
    ("items[]", [("key", "items"), ("any", None)]),
    ("items[0]", [("key", "items"), ("index", 0)]),
    ("items[].price", [("key", "items"), ("any", None), ("key", "price")]),
    ("m[1][]", [("key", "m"), ("index", 1), ("any", None)]),
    ("it's", [("key", "it's")]),
])
def test_parse_path(path, steps):
    assert [(s.kind, s.value) for s in parse_path(path)] == steps


def test_quotes_in_field_names_are_safe(workspace):
    make_person(workspace, "q", **{"it's": "yes"})
    assert match(workspace, "it's", "eq", "yes") == {"q"}


@pytest.mark.parametrize("tree, where, words", [
    ({"attribute": {"field": "plan", "operator": "equals", "value": 1}}, "attribute.operator",
     "unknown operator 'equals'"),
    ({"attrib": {}}, "(root)", "unknown condition 'attrib'"),
    ({"and": []}, "and", "non-empty list"),
    ({"and": [{"attribute": {"field": "a", "operator": "gt", "value": "x"}}]},
     "and[0].attribute.value", "needs a number"),
    ({"attribute": {"field": "a..b", "operator": "exists"}}, "attribute.field",
     "not a valid field path"),
    ({"attribute": {"field": "a[x]", "operator": "exists"}}, "attribute.field",
     "not a valid field path"),
    ({"attribute": {"field": "a", "operator": "in", "value": "x"}}, "attribute.value",
     "'in' needs a list"),
    ({"attribute": {"field": "a", "operator": "exists", "value": 3}}, "attribute.value",
     "takes no value"),
    ({"attribute": {"field": "a", "operator": "timestamp_before", "value": {"weeks": 1}}},
     "attribute.value", "unix seconds"),
    ({"event": {"name": ""}}, "event.name", "event name"),
    ({"event": {"name": "x", "count": {"operator": "gte", "value": -1}}}, "event.count",
     "whole number"),
    ({"event": {"name": "x", "within_days": 0}}, "event.within_days", "above 0"),
    ({"event": {"name": "x", "filters": [{"field": "id", "operator": "exists"}]}},
     "event.filters[0].field", "no nested fields"),
    # Engagement is the campaigns app's kind (campaigns.engagement), checked like the rest.
    ({"engagement": {"metric": "read"}}, "engagement.metric", "metric must be one of"),
    ({"segment": {"id": 999999}}, "segment", "no segment 999999"),
    ({"segment": {"id": "7"}}, "segment", "integer id"),
    ({"not": {"and": [1]}}, "not.and[0]", "exactly one of"),
])
def test_validation_names_the_place_in_the_tree(workspace, tree, where, words):
    with pytest.raises(ConditionError) as error:
        validate(tree, workspace=workspace)
    places = dict(error.value.problems)
    assert where in places, error.value.problems
    assert words in places[where]


def test_excessive_depth_is_refused(workspace):
    tree = {"attribute": {"field": "a", "operator": "exists"}}
    for _ in range(20):
        tree = {"not": tree}
    with pytest.raises(ConditionError, match="nested at most"):
        validate(tree, workspace=workspace)


def test_cycles_between_segments_are_refused(workspace):
    first = Segment.objects.create(workspace=workspace, name="A", kind="data_driven",
                                   conditions={"attribute": {"field": "a", "operator": "exists"}},
                                   created_at=NOW, updated_at=NOW)
    second = Segment.objects.create(workspace=workspace, name="B", kind="data_driven",
                                    conditions={"segment": {"id": first.pk}},
                                    created_at=NOW, updated_at=NOW)
    second.depends_on.add(first)
    with pytest.raises(ConditionError, match="cannot reference themselves"):
        validate({"segment": {"id": second.pk}}, workspace=workspace, segment_id=first.pk)
    with pytest.raises(ConditionError, match="cannot reference themselves"):
        validate({"segment": {"id": first.pk}}, workspace=workspace, segment_id=first.pk)


def test_another_workspaces_segment_cannot_be_referenced(workspace, other_workspace):
    theirs = Segment.objects.create(workspace=other_workspace, name="X", kind="manual",
                                    created_at=NOW, updated_at=NOW)
    with pytest.raises(ConditionError, match="no segment"):
        validate({"segment": {"id": theirs.pk}}, workspace=workspace)


def test_validation_reports_time_relative_trees(workspace):
    assert validate({"event": {"name": "x", "within_days": 7}}, workspace=workspace).time_relative
    assert not validate({"attribute": {"field": "a", "operator": "gt", "value": 1}},
                        workspace=workspace).time_relative
