"""The compiled SQL agrees with a plain-Python reading of the same random trees."""

from datetime import UTC, datetime, timedelta

from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from people.models import Event, Person
from segments.conditions import matching_people, validate
from segments.models import Membership, Segment
from tests.segments.oracle import matches

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
STAMP = int(NOW.timestamp())

scalars = st.one_of(
    st.sampled_from(["free", "pro", "Pro", "pro plan", "", " 3 ", "2.5", "abc", "true"]),
    st.integers(min_value=-1, max_value=4),
    st.sampled_from([0.5, 2.5, 42.0, -1.5]),
    st.booleans(),
    st.sampled_from([STAMP - 3 * 86400, STAMP - 40 * 86400, STAMP + 86400, 1_700_000_000_000]),
)
json_values = st.recursive(
    st.one_of(st.none(), scalars),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["price", "plan", "age", "tags"]), children, max_size=3),
    ),
    max_leaves=6,
)
# Mostly plain values, so that comparisons often meet a value of their own kind.
attribute_dicts = st.dictionaries(
    st.sampled_from(["plan", "score", "tags", "items", "profile", "seen_at"]),
    st.one_of(scalars, scalars, json_values), max_size=5,
)
fields = st.one_of(
    st.sampled_from(["plan", "score", "seen_at"]),
    st.sampled_from(["tags[]", "items[].price", "items[0].price", "items[0]", "profile.age",
                     "profile.tags[]", "id", "cio_id", "unsubscribed", "missing"]),
)
event_fields = st.sampled_from(["plan", "price", "tags[]", "items[].price"])
operators = st.sampled_from(["eq", "neq", "exists", "not_exists", "contains", "not_contains",
                             "starts_with", "gt", "gte", "lt", "lte", "in", "is_timestamp",
                             "timestamp_before", "timestamp_after"])


@st.composite
def attribute_conditions(draw, field_strategy=fields):
    operator = draw(operators)
    condition = {"field": draw(field_strategy), "operator": operator}
    if operator in ("gt", "gte", "lt", "lte"):
        condition["value"] = draw(st.one_of(st.integers(-1, 4), st.sampled_from(["2", 2.5])))
    elif operator in ("timestamp_before", "timestamp_after"):
        condition["value"] = draw(st.one_of(
            st.sampled_from([STAMP, STAMP - 10 * 86400]),
            st.builds(lambda d: {"days_ago": d}, st.integers(0, 60)),
            st.builds(lambda d: {"days_from_now": d}, st.integers(0, 5)),
        ))
    elif operator == "in":
        condition["value"] = draw(st.lists(scalars.filter(lambda v: v != ""), min_size=1,
                                           max_size=3))
    elif operator not in ("exists", "not_exists", "is_timestamp"):
        condition["value"] = draw(scalars.filter(lambda v: v != ""))
    return condition


@st.composite
def event_conditions(draw):
    body = {"name": draw(st.sampled_from(["login", "purchase"]))}
    if draw(st.booleans()):
        body["count"] = {"operator": draw(st.sampled_from(["eq", "neq", "gt", "gte", "lt",
                                                           "lte"])),
                         "value": draw(st.integers(0, 3))}
    if draw(st.booleans()):
        body["within_days"] = draw(st.sampled_from([1, 7, 30]))
    if draw(st.booleans()):
        body["filters"] = draw(st.lists(attribute_conditions(event_fields), max_size=2))
    return {"event": body}


def trees(segment_id):
    leaves = st.one_of(
        st.builds(lambda c: {"attribute": c}, attribute_conditions()),
        event_conditions(),
        st.just({"segment": {"id": segment_id}}),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.builds(lambda c: {"and": c}, st.lists(children, min_size=1, max_size=3)),
            st.builds(lambda c: {"or": c}, st.lists(children, min_size=1, max_size=3)),
            st.builds(lambda c: {"not": c}, children),
        ),
        max_leaves=6,
    )


people_specs = st.lists(
    st.fixed_dictionaries({
        "attributes": attribute_dicts,
        "has_id": st.booleans(),
        "unsubscribed": st.booleans(),
        "in_segment": st.booleans(),
        "events": st.lists(st.tuples(
            st.sampled_from(["login", "purchase", "other"]),
            st.sampled_from([0, 2, 10, 40]),
            st.dictionaries(st.sampled_from(["plan", "price", "tags", "items"]), json_values,
                            max_size=3),
        ), max_size=4),
    }),
    min_size=1, max_size=5,
)


class Rollback(Exception):
    pass


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_compiled_tree_matches_the_python_reading(workspace, data):
    segment = Segment.objects.create(workspace=workspace, name="Fixed", kind="manual",
                                     created_at=NOW, updated_at=NOW)
    tree = data.draw(trees(segment.pk))
    specs = data.draw(people_specs)
    validate(tree, workspace=workspace)
    try:
        with transaction.atomic():
            expected = set()
            for number, spec in enumerate(specs):
                person = Person.objects.create(
                    workspace=workspace, customer_id=f"p{number}" if spec["has_id"] else None,
                    attributes=spec["attributes"], unsubscribed=spec["unsubscribed"],
                    created_at=NOW, updated_at=NOW,
                )
                events = [(name, NOW - timedelta(days=age, hours=1), event_data)
                          for name, age, event_data in spec["events"]]
                Event.objects.bulk_create([
                    Event(workspace=workspace, person=person, name=name, timestamp=when,
                          data=event_data, received_at=NOW)
                    for name, when, event_data in events
                ])
                if spec["in_segment"]:
                    Membership.objects.create(segment=segment, person=person, entered_at=NOW)
                view = {
                    "attributes": spec["attributes"],
                    "columns": {"id": person.customer_id, "cio_id": person.cio_id,
                                "unsubscribed": person.unsubscribed},
                    "events": events,
                    "segments": {segment.pk} if spec["in_segment"] else set(),
                }
                if matches(tree, view, NOW):
                    expected.add(person.pk)
            # Both compiled forms: set-wide (recompute, preview) and correlated (a few people).
            for correlated in (False, True):
                found = matching_people(workspace, tree, now=NOW, correlated=correlated)
                assert set(found.values_list("pk", flat=True)) == expected, (correlated, tree)
            raise Rollback
    except Rollback:
        pass
    segment.delete()
