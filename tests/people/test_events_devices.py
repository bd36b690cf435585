"""Events, anonymous events and devices."""

import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from people import services
from people.models import Activity, Device, Event, Person
from people.services import Outcome, Ref
from tests.factories import make_person


def test_event_for_an_unknown_id_creates_the_person(workspace):
    result = services.track_event(workspace, Ref("id", "u1"), name="  signed_up ",
                                  data={"plan": "pro"}, timestamp=1_700_000_000)

    assert result.outcome == Outcome.CREATED
    event = Event.objects.get()
    assert event.person.customer_id == "u1"
    assert event.name == "signed_up"
    assert event.data == {"plan": "pro"}
    assert int(event.timestamp.timestamp()) == 1_700_000_000
    assert event.type == Event.Type.EVENT


def test_event_for_an_unknown_cio_id_is_dropped(workspace):
    result = services.track_event(workspace, Ref("cio_id", "nobody"), name="login")
    assert result.outcome == Outcome.NOT_FOUND
    assert not Event.objects.exists() and not Person.objects.exists()


def test_event_timestamp_defaults_to_now(workspace):
    moment = timezone.now().replace(microsecond=0)
    with time_machine.travel(moment, tick=False):
        services.track_event(workspace, Ref("id", "u1"), name="login")
    assert Event.objects.get().timestamp == moment


def test_repeated_event_id_is_ignored(workspace):
    first = services.track_event(workspace, Ref("id", "u1"), name="purchase", dedup_id="01HZX")
    again = services.track_event(workspace, Ref("id", "u1"), name="purchase", dedup_id="01HZX")

    assert (first.outcome, again.outcome) == (Outcome.CREATED, Outcome.DUPLICATE)
    assert Event.objects.count() == 1


def test_event_ids_are_per_workspace(workspace, other_workspace):
    services.track_event(workspace, Ref("id", "u1"), name="purchase", dedup_id="01HZX")
    services.track_event(other_workspace, Ref("id", "u1"), name="purchase", dedup_id="01HZX")
    assert Event.objects.count() == 2


def test_page_and_screen_events(workspace):
    services.track_event(workspace, Ref("id", "u1"), name="/pricing", type="page")
    services.track_event(workspace, Ref("id", "u1"), name="Home", type="screen")
    assert sorted(Event.objects.values_list("type", flat=True)) == ["page", "screen"]


def test_anonymous_event_without_anonymous_id_is_kept(workspace):
    services.track_anonymous_event(workspace, anonymous_id=None, name="invite",
                                   data={"recipient": "friend@example.com"})
    event = Event.objects.get()
    assert event.person is None and event.anonymous_id is None


def test_add_device_creates_and_moves_tokens(workspace):
    first = make_person(workspace, "u1")
    second = make_person(workspace, "u2")

    services.add_device(workspace, Ref("id", "u1"), token="tok", platform="ios",
                        last_used=1_700_000_000, attributes={"app_version": "1.2"})
    device = Device.objects.get()
    assert device.person == first and device.platform == "ios"
    assert device.attributes == {"app_version": "1.2"}

    services.add_device(workspace, Ref("id", "u2"), token="tok", platform="android")
    device.refresh_from_db()
    assert device.person == second and device.platform == "android"
    assert Device.objects.count() == 1
    assert Activity.objects.filter(cio_id=second.cio_id, kind=Activity.Kind.DEVICE_ADDED).exists()


def test_delete_device(workspace):
    person = make_person(workspace, "u1")
    services.add_device(workspace, Ref("id", "u1"), token="tok", platform="ios")

    result = services.delete_device(workspace, Ref("id", "u2"), token="tok")
    assert result.outcome == Outcome.NOT_FOUND
    assert Device.objects.exists()
    result = services.delete_device(workspace, Ref("id", "u1"), token="tok")
    assert result.outcome == Outcome.UPDATED
    assert not Device.objects.exists()
    assert Activity.objects.filter(cio_id=person.cio_id, kind=Activity.Kind.DEVICE_REMOVED).exists()


def suppression_statements(queries) -> list[str]:
    return [query["sql"] for query in queries
            if "people_suppression" in query["sql"] or "pg_advisory" in query["sql"]]


def test_events_and_devices_ask_the_suppression_list_only_when_they_create_someone(workspace):
    make_person(workspace, "ada")
    with CaptureQueriesContext(connection) as existing:
        services.track_event(workspace, services.Ref("id", "ada"), name="login")
        services.add_device(workspace, services.Ref("id", "ada"), token="t1", platform="ios")
    with CaptureQueriesContext(connection) as new:
        services.track_event(workspace, services.Ref("id", "new"), name="login")

    # A live person's identifiers cannot be suppressed: they would have been deleted.
    assert suppression_statements(existing.captured_queries) == []
    # Creating someone: lock the identifier (PostgreSQL), then one look at the list.
    expected = 2 if connection.vendor == "postgresql" else 1
    assert len(suppression_statements(new.captured_queries)) == expected
