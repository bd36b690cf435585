"""Track API v2: /entity and /batch, with v2 error shapes and set-based batches."""

import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext

from people import batch, services
from people.models import Activity, Device, Event, Person, Suppression
from people.signals import events_stored, people_changed
from tests.factories import make_person, make_workspace


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def identify(identifiers, **attributes):
    return {"type": "person", "action": "identify", "identifiers": identifiers,
            "attributes": attributes}


def event(identifiers, name, **extra):
    return {"type": "person", "action": "event", "identifiers": identifiers, "name": name, **extra}


def test_entity_identify_and_event(track, workspace):
    response = post(track, "/api/v2/entity", identify({"id": "u1"}, email="ada@example.com",
                                                      plan="pro"))
    assert (response.status_code, response.json()) == (200, {})
    post(track, "/api/v2/entity", event({"email": "ada@example.com"}, "login",
                                        attributes={"ip": "x"}, timestamp=1_700_000_000))
    person = Person.objects.get()
    assert person.attributes["plan"] == "pro"
    assert list(person.events.values_list("name", "data")) == [("login", {"ip": "x"})]


def test_entity_page_screen_devices_merge_suppress(track, workspace):
    base = {"type": "person", "identifiers": {"id": "u1"}}
    for body in [
        {**base, "action": "page", "name": "/pricing"},
        {**base, "action": "screen", "name": "Home"},
        {**base, "action": "add_device", "device": {"token": "tok", "platform": "android"}},
    ]:
        assert post(track, "/api/v2/entity", body).status_code == 200
    assert sorted(Event.objects.values_list("type", flat=True)) == ["page", "screen"]
    assert Device.objects.get().platform == "android"
    post(track, "/api/v2/entity", {**base, "action": "delete_device", "device": {"token": "tok"}})
    assert not Device.objects.exists()

    post(track, "/api/v2/entity", identify({"id": "u2"}, city="Berlin"))
    post(track, "/api/v2/entity", {"type": "person", "action": "merge",
                                   "primary": {"id": "u1"}, "secondary": {"id": "u2"}})
    assert Person.objects.get().attributes["city"] == "Berlin"

    post(track, "/api/v2/entity", {**base, "action": "suppress"})
    assert not Person.objects.exists() and Suppression.objects.count() == 1
    post(track, "/api/v2/entity", {**base, "action": "unsuppress"})
    assert not Suppression.objects.exists()
    post(track, "/api/v2/entity", {**base, "action": "delete"})


@pytest.mark.parametrize("body, field, reason", [
    ({"type": "person", "action": "identify"}, "identifiers", "invalid"),
    (identify({"id": "u1", "email": "a@example.com"}), "identifiers", "invalid"),
    (identify({"phone": "+4912345"}), "identifiers.phone", "not_enabled"),
    (identify({"shoe_size": "9"}), "identifiers.shoe_size", "unknown_identifier_type"),
    ({"type": "object", "action": "identify", "identifiers": {"object_id": "1"}}, "type",
     "unsupported"),
    ({"type": "person", "action": "fly", "identifiers": {"id": "u1"}}, "action", "invalid"),
    (event({"id": "u1"}, "e" * 101), "name", "too_long"),
    (identify({"id": "u1"}, bio="x" * 1001), "bio", "too_long"),
])
def test_entity_errors_name_field_and_reason(track, body, field, reason):
    response = post(track, "/api/v2/entity", body)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert (errors[0]["field"], errors[0]["reason"]) == (field, reason)
    assert errors[0]["message"]
    assert not Person.objects.exists()


def test_entity_over_32_kb_is_refused(track):
    response = post(track, "/api/v2/entity", identify({"id": "u1"}, **{
        f"a{n}": "x" * 900 for n in range(40)}))
    assert response.status_code == 400
    assert response.json()["errors"][0]["reason"] == "too_large"


def test_v2_bad_json_and_credentials(track, workspace):
    response = track.post("/api/v2/batch", data="{", content_type="application/json")
    assert response.status_code == 400 and "errors" in response.json()
    response = post(track.__class__(), "/api/v2/batch", {"batch": []})
    assert response.status_code == 401 and "errors" in response.json()


def test_batch_applies_the_valid_operations_and_reports_the_others(track, workspace):
    response = post(track, "/api/v2/batch", {"batch": [
        identify({"id": "u1"}, plan="pro"),
        identify({"id": "u2"}, bio="x" * 1001),
        event({"id": "u1"}, "login"),
        {"type": "person", "action": "identify"},
        event({"id": "u3"}, "signup"),
    ]})

    assert response.status_code == 207
    assert [(e["batch_index"], e["field"]) for e in response.json()["errors"]] == [
        (1, "bio"), (3, "identifiers")]
    assert sorted(Person.objects.values_list("customer_id", flat=True)) == ["u1", "u3"]
    assert Event.objects.count() == 2


def test_batch_over_500_kb_is_refused_whole(track):
    ops = [identify({"id": f"u{n}"}, bio="x" * 990) for n in range(600)]
    response = post(track, "/api/v2/batch", {"batch": ops})
    assert response.status_code == 400
    assert response.json()["errors"][0]["reason"] == "too_large"
    assert not Person.objects.exists()


def test_batch_operation_over_32_kb_is_one_error(track):
    big = identify({"id": "big"}, **{f"a{n}": "x" * 900 for n in range(40)})
    response = post(track, "/api/v2/batch", {"batch": [identify({"id": "u1"}), big]})
    assert response.status_code == 207
    assert response.json()["errors"][0]["batch_index"] == 1
    assert list(Person.objects.values_list("customer_id", flat=True)) == ["u1"]


def test_batch_needs_a_list(track):
    response = post(track, "/api/v2/batch", {"batch": "nope"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "batch"


def test_a_batch_of_identifies_and_events_takes_a_few_statements(track, workspace):
    make_person(workspace, "u0", plan="free")
    ops = []
    for n in range(50):
        ops.append(identify({"id": f"u{n}"}, email=f"u{n}@example.com", plan="pro", n=n))
        ops.append(event({"id": f"u{n}"}, "login", id=f"evt-{n}"))

    with CaptureQueriesContext(connection) as queries:
        response = post(track, "/api/v2/batch", {"batch": ops})

    assert response.status_code == 200
    assert Person.objects.count() == 50 and Event.objects.count() == 50
    assert Person.objects.get(customer_id="u0").attributes["plan"] == "pro"
    assert Person.objects.get(customer_id="u7").email_key == "u7@example.com"
    assert Activity.objects.filter(kind=Activity.Kind.CREATED).count() == 50
    assert len(queries) <= 15, [q["sql"][:80] for q in queries.captured_queries]


def test_repeated_event_ids_in_a_batch_are_ignored(track, workspace):
    post(track, "/api/v2/batch", {"batch": [event({"id": "u1"}, "buy", id="e1"),
                                            event({"id": "u1"}, "buy", id="e1")]})
    post(track, "/api/v2/batch", {"batch": [event({"id": "u1"}, "buy", id="e1")]})
    assert Event.objects.count() == 1


def test_batch_keeps_order_around_operations_that_need_the_services(track, workspace):
    response = post(track, "/api/v2/batch", {"batch": [
        identify({"id": "u1"}, plan="pro"),
        event({"id": "u1"}, "login"),
        {"type": "person", "action": "delete", "identifiers": {"id": "u1"}},
        identify({"id": "u1"}, plan="free"),
    ]})
    assert response.status_code == 200
    person = Person.objects.get()
    assert person.attributes == {"plan": "free"}
    assert not person.events.exists()


def test_batch_ignores_suppressed_identifiers(track, workspace):
    services.suppress_identifier(workspace, services.Ref("email", "gone@example.com"))
    post(track, "/api/v2/batch", {"batch": [
        identify({"id": "u1"}, email="gone@example.com"),
        identify({"email": "gone@example.com"}, plan="x"),
        event({"email": "gone@example.com"}, "login"),
        identify({"id": "u2"}),
    ]})
    assert list(Person.objects.values_list("customer_id", flat=True)) == ["u2"]
    assert not Event.objects.exists()


def test_batch_conflicts_follow_the_identify_rules(track, workspace):
    make_person(workspace, "u1")
    make_person(workspace, "u2", email="taken@example.com")
    response = post(track, "/api/v2/batch", {"batch": [
        identify({"id": "u1"}, email="taken@example.com", plan="pro"),
        identify({"email": "new@example.com"}, id="u1"),
    ]})
    assert response.status_code == 200
    first = Person.objects.get(customer_id="u1")
    assert first.email == "new@example.com" and "plan" not in first.attributes


OPERATIONS = [
    identify({"id": "a"}, plan="free", n=1),
    identify({"id": "a"}, plan="pro", unsubscribed="true"),
    event({"id": "a"}, "login", id="x1", timestamp=1_700_000_000),
    event({"email": "b@example.com"}, "visit", timestamp=1_700_000_001),
    identify({"email": "b@example.com"}, id="b", city="Oslo"),
    identify({"id": "c"}, email="b@example.com"),
    identify({"id": "a"}, _update=True, plan=""),
    {"type": "person", "action": "add_device", "identifiers": {"id": "c"},
     "device": {"token": "t1", "platform": "ios"}},
    identify({"id": "d"}, email="d@example.com", created_at=1_600_000_000),
    {"type": "person", "action": "merge", "primary": {"id": "d"}, "secondary": {"id": "c"}},
    event({"id": "a"}, "login", id="x1"),
    identify({"id": "e"}, _update=True, plan="pro"),
    identify({"id": "d"}, _timestamp=5, rank=2),
    identify({"id": "d"}, _timestamp=4, rank=1),
]


def state(workspace):
    people = sorted(
        (p.customer_id, p.email, p.attributes, p.unsubscribed, int(p.created_at.timestamp())
         if p.customer_id == "d" else None,
         sorted((e.name, int(e.timestamp.timestamp())) for e in p.events.all()),
         sorted(p.devices.values_list("token", flat=True)))
        for p in Person.objects.filter(workspace=workspace).prefetch_related("events")
    )
    return people


def test_a_batch_ends_where_the_same_operations_one_by_one_end(workspace):
    single = make_workspace("One by one")
    for raw in OPERATIONS:
        try:
            batch.apply_operation(single, batch.parse_operation(single, raw))
        except services.InvalidInput:
            pass

    assert batch.apply_batch(workspace, OPERATIONS) == []

    assert state(workspace) == state(single)
    assert len(state(workspace)) == 3


def test_a_batch_repeating_created_at_and_a_newer_timestamp_changes_nothing(
        track, workspace, django_capture_on_commit_callbacks):
    with time_machine.travel(datetime(2026, 3, 1, tzinfo=UTC), tick=False):
        post(track, "/api/v2/batch", {"batch": [
            identify({"id": "u1"}, plan="pro", created_at=1_700_000_000, _timestamp=100)]})
    before = Person.objects.get()
    announced = []
    people_changed.connect(receiver := lambda **kw: announced.append(kw["person_ids"]))
    try:
        with (time_machine.travel(datetime(2026, 3, 2, tzinfo=UTC), tick=False),
              django_capture_on_commit_callbacks(execute=True)):
            post(track, "/api/v2/batch", {"batch": [
                identify({"id": "u1"}, plan="pro", created_at=1_700_000_000, _timestamp=200)]})
    finally:
        people_changed.disconnect(receiver)
    after = Person.objects.get()
    assert (after.updated_at, after.attributes_timestamp) == (before.updated_at, 200)
    assert announced == []
    assert not Activity.objects.exclude(kind=Activity.Kind.CREATED).exists()


def mixed_batch():
    """Identifies, a delete that the services apply alone, more identifies and events."""
    return ([identify({"id": f"a{n}"}, n=n) for n in range(5)]
            + [{"type": "person", "action": "delete", "identifiers": {"id": "gone"}},
               {"type": "person", "action": "identify", "identifiers": {}}]  # invalid: 207
            + [identify({"id": f"b{n}"}, n=n) for n in range(5)]
            + [event({"id": "b1"}, "buy", id="e1")])


def test_a_batch_that_fails_part_way_stores_nothing(track, workspace, monkeypatch,
                                                    django_capture_on_commit_callbacks):
    make_person(workspace, "gone", plan="free")
    before = list(Activity.objects.values_list("pk", flat=True))
    real_insert = batch.insert_rows

    def failing_insert(model, names, rows, **kwargs):
        if model is Event and rows:
            raise OperationalError("the server closed the connection unexpectedly")
        return real_insert(model, names, rows, **kwargs)

    monkeypatch.setattr(batch, "insert_rows", failing_insert)
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(track, "/api/v2/batch", {"batch": mixed_batch()})

    assert response.status_code == 500 and "errors" in response.json()  # JSON, v2's shape
    assert list(Person.objects.values_list("customer_id", "attributes")) == [
        ("gone", {"plan": "free"})]
    assert list(Activity.objects.values_list("pk", flat=True)) == before
    assert not Event.objects.exists()
    assert callbacks == []  # nothing announced


def test_a_batch_around_a_delete_stores_everything_in_order(track, workspace,
                                                           django_capture_on_commit_callbacks):
    make_person(workspace, "gone", plan="free")
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(track, "/api/v2/batch", {"batch": mixed_batch()})
    assert response.status_code == 207
    assert [error["batch_index"] for error in response.json()["errors"]] == [6]
    assert list(Person.objects.order_by("pk").values_list("customer_id", flat=True)) == [
        *(f"a{n}" for n in range(5)), *(f"b{n}" for n in range(5))]
    assert list(Event.objects.values_list("person__customer_id", "name")) == [("b1", "buy")]
    assert callbacks  # changes are announced once the whole batch commits


def test_entity_and_batch_events_are_announced_after_commit(track, workspace,
                                                            django_capture_on_commit_callbacks):
    sends = []
    events_stored.connect(receiver := lambda **kw: sends.append(kw["events"]))
    try:
        with django_capture_on_commit_callbacks(execute=True):
            post(track, "/api/v2/entity", {"type": "person", "action": "screen",
                                           "identifiers": {"id": "u1"}, "name": "Home"})
        with django_capture_on_commit_callbacks(execute=True):
            post(track, "/api/v2/batch", {"batch": [
                identify({"id": "u2"}, plan="pro"), event({"id": "u2"}, "login", id="e1"),
                event({"id": "u1"}, "login", id="e1"), event({"id": "u1"}, "buy")]})
    finally:
        events_stored.disconnect(receiver)
    home, login, buy = Event.objects.order_by("pk")
    assert sends == [[(home.person_id, home.pk, "Home")],
                     [(login.person_id, login.pk, "login"), (buy.person_id, buy.pk, "buy")]]
    assert login.person.customer_id == "u2" and buy.person.customer_id == "u1"
