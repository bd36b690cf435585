"""A v2 batch and the same operations sent one by one leave exactly the same people,
events, activity and announcements: both run the one identify and event kernel."""

from datetime import UTC, datetime, timedelta

import time_machine
from django.test import TestCase
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from people import batch, services
from people.models import Activity, Event, Person
from people.signals import events_stored, people_changed
from tests.factories import make_workspace

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

ids = st.sampled_from(["u1", "u2", "u3", "u9"])  # u9 is suppressed
emails = st.sampled_from(["a@example.com", "A@example.com", "b@example.com", "c@example.com"])
identifiers = st.one_of(st.builds(lambda v: {"id": v}, ids),
                        st.builds(lambda v: {"email": v}, emails))
values = st.one_of(st.none(), st.just(""), st.sampled_from(["pro", "free"]),
                   st.integers(0, 2), st.booleans())
attributes = st.fixed_dictionaries({}, optional={
    "plan": values,
    "city": values,
    "id": ids,
    "email": st.one_of(emails, st.just("")),
    "created_at": st.sampled_from([1_600_000_000, 1_700_000_000, "1700000000"]),
    "_timestamp": st.sampled_from([100, 200, 300]),
    "unsubscribed": st.booleans(),
    "_update": st.booleans(),
    "anonymous_id": st.just("anon-1"),
    "cio_subscription_preferences.topics.news": st.booleans(),
})
identify_ops = st.builds(
    lambda who, attrs, ts: {"type": "person", "action": "identify", "identifiers": who,
                            "attributes": attrs, **({"timestamp": ts} if ts else {})},
    identifiers, attributes, st.sampled_from([None, None, 250]))
event_ops = st.builds(
    lambda who, action, name, dedup, data: {
        "type": "person", "action": action, "identifiers": who, "name": name,
        "attributes": data, **({"id": dedup} if dedup else {})},
    identifiers, st.sampled_from(["event", "event", "page", "screen"]),
    st.sampled_from(["login", "buy"]), st.sampled_from([None, None, "e1", "e2"]),
    st.sampled_from([{}, {"total": 3}]))
delete_ops = st.builds(
    lambda who: {"type": "person", "action": "delete", "identifiers": who}, identifiers)
operations = st.one_of(identify_ops, identify_ops, event_ops, event_ops, delete_ops)
steps = st.lists(st.lists(operations, min_size=1, max_size=8), min_size=1, max_size=3)


def one_by_one(workspace, raw):
    """Send one operation as its own call to the people services (as /api/v2/entity)."""
    try:
        ref = services.make_ref(workspace, *next(iter(raw["identifiers"].items())))
    except services.InvalidInput:
        return
    try:
        if raw["action"] == "delete":
            services.delete_person(workspace, ref)
        elif raw["action"] == "identify":
            body = dict(raw["attributes"])
            if raw.get("timestamp") is not None:
                body.setdefault("_timestamp", raw["timestamp"])
            services.identify_person(workspace, ref, body)
        else:
            services.track_event(workspace, ref, name=raw["name"], data=raw["attributes"],
                                 dedup_id=raw.get("id"), type=raw["action"])
    except services.InvalidInput:
        pass


def prepare(workspace):
    services.suppress_identifier(workspace, services.Ref("id", "u9"))
    for name in ("visit", "signup"):
        services.track_anonymous_event(workspace, anonymous_id="anon-1", name=name)


def snapshot(workspace, announced):
    """Everything a workspace holds, with people and events named by their position
    (-1 for those deleted since)."""
    people = list(Person.objects.filter(workspace=workspace).order_by("pk"))
    person_at = {person.pk: n for n, person in enumerate(people)}
    cio_at = {person.cio_id: n for n, person in enumerate(people)}
    events = list(Event.objects.filter(workspace=workspace).order_by("pk"))
    event_at = {event.pk: n for n, event in enumerate(events)}
    return {
        "people": [(p.customer_id, p.email, p.email_key, p.attributes, p.created_at,
                    p.updated_at, p.unsubscribed, p.attributes_timestamp) for p in people],
        "events": [(person_at.get(e.person_id), e.anonymous_id, e.name, e.type, e.timestamp,
                    e.data, e.dedup_id, e.received_at) for e in events],
        "activity": [(cio_at.get(a.cio_id), a.kind, a.data) for a in
                     Activity.objects.filter(workspace=workspace).order_by("pk")],
        "changed": [sorted({person_at.get(pk, -1) for pk in step["changed"]})
                    for step in announced],
        "stored": [sorted((person_at.get(p, -1), event_at.get(e, -1), name)
                          for p, e, name in step["stored"]) for step in announced],
    }


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=steps, mode=st.sampled_from(["email_or_id", "id"]),
       email_update_by_id=st.booleans())
def test_a_batch_stores_what_the_same_calls_one_by_one_store(db, steps, mode,
                                                             email_update_by_id):
    single, bulk = (make_workspace(name, mode=mode,
                                   allow_email_update_by_id=email_update_by_id)
                    for name in ("One by one", "Batch"))
    announced = {single.pk: [], bulk.pk: []}

    def on_change(sender, workspace_id, person_ids, **kwargs):
        if workspace_id in announced:
            announced[workspace_id][-1]["changed"].update(person_ids)

    def on_events(sender, workspace_id, events, **kwargs):
        if workspace_id in announced:
            announced[workspace_id][-1]["stored"] += events

    people_changed.connect(on_change)
    events_stored.connect(on_events)
    try:
        with time_machine.travel(START - timedelta(days=1), tick=False):
            prepare(single)
            prepare(bulk)
        for n, operations in enumerate(steps):
            for workspace in (single, bulk):
                announced[workspace.pk].append({"changed": set(), "stored": []})
            with time_machine.travel(START + timedelta(hours=n), tick=False):
                with TestCase.captureOnCommitCallbacks(execute=True):
                    for raw in operations:
                        one_by_one(single, raw)
                with TestCase.captureOnCommitCallbacks(execute=True):
                    batch.apply_batch(bulk, operations)
    finally:
        people_changed.disconnect(on_change)
        events_stored.disconnect(on_events)

    assert snapshot(bulk, announced[bulk.pk]) == snapshot(single, announced[single.pk])
