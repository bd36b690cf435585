"""Event-triggered campaigns: data filters, frequency, the 30-minute retry, the 72-hour rule."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from campaigns import engine, services, tasks, triggers
from campaigns.models import Campaign, Journey, PendingEntry
from people import services as people
from people.models import Person
from people.signals import StoredEvent
from tests.factories import make_person

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def travel():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def event_campaign(workspace, name="purchase", *, filters=None, frequency=None,
                   campaign_filters=None, steps=None) -> Campaign:
    definition = {"name": f"On {name}", "trigger": {"event": {"name": name,
                                                              "filters": filters or []}},
                  "workflow": {"steps": steps or []}}
    if frequency:
        definition["frequency"] = frequency
    if campaign_filters:
        definition["filters"] = campaign_filters
    return services.start_campaign(services.create_campaign(workspace, definition))


def track(capture, workspace, person_id, name="purchase", **fields):
    """Track an event through the people services, running what its commit queues."""
    with capture(execute=True):
        return people.track_event(workspace, people.Ref("id", person_id), name=name, **fields)


def journeys(campaign):
    return list(Journey.objects.filter(campaign=campaign).order_by("pk"))


@pytest.mark.django_db
def test_an_event_enters_its_person_with_the_event_as_context(
        workspace, travel, django_capture_on_commit_callbacks):
    campaign = event_campaign(workspace, steps=[
        {"id": "tag", "type": "update_attributes", "set": {"bought": "{{event.product}}"}}])
    ada = make_person(workspace, "ada")

    track(django_capture_on_commit_callbacks, workspace, "ada",
          data={"product": "socks"}, dedup_id="01J00000000000000000000001")

    (journey,) = journeys(campaign)
    assert journey.person_id == ada.pk
    assert journey.context == {"event": {"name": "purchase", "id": "01J00000000000000000000001",
                                         "data": {"product": "socks"}}}
    while engine.advance_due():
        pass
    ada.refresh_from_db()
    assert ada.attributes["bought"] == "socks"
    assert not PendingEntry.objects.exists()


@pytest.mark.django_db
def test_other_event_names_and_campaigns_not_running_enter_nobody(
        workspace, travel, django_capture_on_commit_callbacks):
    campaign = event_campaign(workspace)
    draft = services.create_campaign(workspace, {
        "name": "Draft", "trigger": {"event": {"name": "purchase"}}})
    make_person(workspace, "ada")

    track(django_capture_on_commit_callbacks, workspace, "ada", name="login")
    assert journeys(campaign) == []

    track(django_capture_on_commit_callbacks, workspace, "ada")
    assert len(journeys(campaign)) == 1
    assert journeys(draft) == []


@pytest.mark.django_db
def test_the_same_event_id_twice_is_one_journey(workspace, travel,
                                                django_capture_on_commit_callbacks):
    campaign = event_campaign(workspace)
    make_person(workspace, "ada")

    track(django_capture_on_commit_callbacks, workspace, "ada", dedup_id="evt-1")
    track(django_capture_on_commit_callbacks, workspace, "ada", dedup_id="evt-1")
    assert len(journeys(campaign)) == 1

    # A replayed announcement (a receiver run twice) changes nothing either.
    event = Person.objects.get(customer_id="ada").events.get()
    with django_capture_on_commit_callbacks(execute=True):
        triggers.note_events(workspace.pk, [StoredEvent(event.person_id, event.pk, "purchase")])
    tasks.enter_due_events()
    assert len(journeys(campaign)) == 1


@pytest.mark.django_db
def test_each_event_enters_again_by_default(workspace, travel,
                                            django_capture_on_commit_callbacks):
    campaign = event_campaign(workspace)
    make_person(workspace, "ada")

    track(django_capture_on_commit_callbacks, workspace, "ada")
    track(django_capture_on_commit_callbacks, workspace, "ada")

    assert len(journeys(campaign)) == 2


@pytest.mark.django_db
def test_frequency_once_enters_a_person_once_ever(workspace, travel,
                                                  django_capture_on_commit_callbacks):
    campaign = event_campaign(workspace, frequency={"mode": "once"})
    make_person(workspace, "ada")

    track(django_capture_on_commit_callbacks, workspace, "ada")
    travel.shift(timedelta(days=30))
    track(django_capture_on_commit_callbacks, workspace, "ada")

    assert len(journeys(campaign)) == 1


@pytest.mark.django_db
def test_at_most_once_within_hours(workspace, travel, django_capture_on_commit_callbacks):
    campaign = event_campaign(workspace, frequency={"mode": "at_most_once", "hours": 24})
    make_person(workspace, "ada")
    make_person(workspace, "bob")

    track(django_capture_on_commit_callbacks, workspace, "ada")
    travel.shift(timedelta(hours=23))
    track(django_capture_on_commit_callbacks, workspace, "ada")
    track(django_capture_on_commit_callbacks, workspace, "bob")
    assert [j.person.customer_id for j in journeys(campaign)] == ["ada", "bob"]

    travel.shift(timedelta(hours=2))
    track(django_capture_on_commit_callbacks, workspace, "ada")
    assert [j.person.customer_id for j in journeys(campaign)] == ["ada", "bob", "ada"]


@pytest.mark.django_db
def test_at_most_once_keeps_one_of_a_batch_of_events(workspace, travel,
                                                     django_capture_on_commit_callbacks,
                                                     monkeypatch):
    campaign = event_campaign(workspace, frequency={"mode": "at_most_once", "hours": 1})
    make_person(workspace, "ada")
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: None)
    for number in range(3):
        track(django_capture_on_commit_callbacks, workspace, "ada", data={"n": number},
              timestamp=int(timezone.now().timestamp()) - 60 + number)
    assert PendingEntry.objects.count() == 3

    travel.shift(timedelta(minutes=1))
    tasks.enter_due_events()  # the three in one batch

    (journey,) = journeys(campaign)
    assert journey.context["event"]["data"] == {"n": 0}
    assert not PendingEntry.objects.exists()


@pytest.mark.django_db
def test_data_filters_use_the_segment_operators(workspace, travel,
                                                django_capture_on_commit_callbacks):
    campaign = event_campaign(workspace, filters=[
        {"field": "plan", "operator": "eq", "value": "pro"},
        {"field": "items[].price", "operator": "gte", "value": 10}])
    make_person(workspace, "ada")

    track(django_capture_on_commit_callbacks, workspace, "ada",
          data={"plan": "pro", "items": [{"price": 5}]})
    track(django_capture_on_commit_callbacks, workspace, "ada",
          data={"plan": "free", "items": [{"price": 50}]})
    assert journeys(campaign) == []

    track(django_capture_on_commit_callbacks, workspace, "ada",
          data={"plan": "pro", "items": [{"price": 5}, {"price": "12"}]})
    assert len(journeys(campaign)) == 1
    # An event whose data does not match is settled at once: its data never changes.
    assert not PendingEntry.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("operator", "entered"), [
    ("contains", ["socks", "hats"]),
    ("not_contains", ["gloves"]),
])
def test_a_bar_in_a_filter_value_means_any_of_the_values(
        workspace, travel, django_capture_on_commit_callbacks, operator, entered):
    campaign = event_campaign(workspace, filters=[
        {"field": "product", "operator": operator, "value": "socks|hats"}])
    make_person(workspace, "ada")

    for product in ("socks", "hats", "gloves"):
        track(django_capture_on_commit_callbacks, workspace, "ada", data={"product": product})

    assert [j.context["event"]["data"]["product"] for j in journeys(campaign)] == entered


@pytest.mark.django_db
def test_a_person_who_matches_the_filters_within_30_minutes_enters(
        workspace, travel, django_capture_on_commit_callbacks):
    campaign = event_campaign(workspace, campaign_filters={
        "attribute": {"field": "plan", "operator": "eq", "value": "pro"}})
    make_person(workspace, "ada", plan="free")

    track(django_capture_on_commit_callbacks, workspace, "ada")
    assert journeys(campaign) == []
    assert PendingEntry.objects.count() == 1

    travel.shift(timedelta(minutes=10))
    tasks.enter_due_events()
    assert journeys(campaign) == []

    make_person(workspace, "ada", plan="pro")
    travel.shift(timedelta(minutes=1))
    tasks.enter_due_events()
    assert len(journeys(campaign)) == 1
    assert not PendingEntry.objects.exists()


@pytest.mark.django_db
def test_a_person_who_does_not_match_within_30_minutes_never_enters(
        workspace, travel, django_capture_on_commit_callbacks):
    campaign = event_campaign(workspace, campaign_filters={
        "attribute": {"field": "plan", "operator": "eq", "value": "pro"}})
    make_person(workspace, "ada", plan="free")
    track(django_capture_on_commit_callbacks, workspace, "ada")

    travel.shift(timedelta(minutes=31))
    tasks.enter_due_events()
    assert not PendingEntry.objects.exists()

    make_person(workspace, "ada", plan="pro")
    travel.shift(timedelta(minutes=1))
    tasks.enter_due_events()
    assert journeys(campaign) == []


@pytest.mark.django_db
def test_events_timestamped_more_than_72_hours_ago_never_trigger(
        workspace, travel, django_capture_on_commit_callbacks):
    campaign = event_campaign(workspace)
    make_person(workspace, "ada")
    now = int(timezone.now().timestamp())

    track(django_capture_on_commit_callbacks, workspace, "ada", data={"age": "73h"},
          timestamp=now - 73 * 3600)
    track(django_capture_on_commit_callbacks, workspace, "ada", data={"age": "71h"},
          timestamp=now - 71 * 3600)

    assert [j.context["event"]["data"]["age"] for j in journeys(campaign)] == ["71h"]
    assert not PendingEntry.objects.exists()


@pytest.mark.django_db
def test_an_event_enters_only_its_own_workspaces_campaigns(
        workspace, other_workspace, travel, django_capture_on_commit_callbacks):
    ours = event_campaign(workspace)
    theirs = event_campaign(other_workspace)
    make_person(workspace, "ada")
    make_person(other_workspace, "ada")

    track(django_capture_on_commit_callbacks, workspace, "ada")

    assert len(journeys(ours)) == 1
    assert journeys(theirs) == []
    # Even an announcement naming another workspace's event enters nobody there.
    event = Person.objects.get(workspace=workspace, customer_id="ada").events.get()
    with django_capture_on_commit_callbacks(execute=True):
        triggers.note_events(other_workspace.pk,
                             [StoredEvent(event.person_id, event.pk, "purchase")])
    assert journeys(theirs) == []


@pytest.mark.django_db
def test_nothing_is_lost_when_queueing_the_work_fails(workspace, travel, monkeypatch,
                                                      django_capture_on_commit_callbacks):
    campaign = event_campaign(workspace)
    make_person(workspace, "ada")

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr("django_q.tasks.async_task", broker_down)
    track(django_capture_on_commit_callbacks, workspace, "ada")
    assert journeys(campaign) == []

    tasks.enter_due_events()  # not due yet: the queued task may still come
    assert journeys(campaign) == []
    travel.shift(timedelta(minutes=1))
    tasks.enter_due_events()
    assert len(journeys(campaign)) == 1
    assert not PendingEntry.objects.exists()


@pytest.mark.django_db
def test_a_stopped_campaign_drops_what_it_was_owed(workspace, travel, monkeypatch,
                                                   django_capture_on_commit_callbacks):
    campaign = event_campaign(workspace)
    make_person(workspace, "ada")
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: None)
    track(django_capture_on_commit_callbacks, workspace, "ada")
    services.stop_campaign(campaign)

    travel.shift(timedelta(minutes=1))
    tasks.enter_due_events()

    assert journeys(campaign) == []
    assert not PendingEntry.objects.exists()
