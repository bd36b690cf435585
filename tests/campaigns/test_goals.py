"""Conversion goals: the journey and the last message before the goal convert."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from campaigns import engine, services
from campaigns.models import Campaign, Delivery, Journey
from people import services as people
from segments.services import create_segment
from tests.factories import make_person

pytestmark = pytest.mark.django_db
START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
MAIL = {"type": "email", "from": "shop@example.com", "subject": "Come back",
        "body_html": "<p>Hi</p>"}


@pytest.fixture
def travel():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def campaign_with_goal(workspace, *, exit="goal", within_days=3, filters=()):
    segment = create_segment(workspace, name="Carts")
    campaign = services.create_campaign(workspace, {
        "name": "Abandoned cart", "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "goal": {"event": {"name": "purchase", "filters": list(filters)},
                 "within_days": within_days},
        "exit": exit,
        "workflow": {"steps": [{"id": "first", **MAIL},
                               {"id": "wait", "type": "delay", "duration": {"days": 2}},
                               {"id": "second", **MAIL}]}})
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    campaign.refresh_from_db()
    return campaign


def journey_of(campaign, person) -> Journey:
    engine.enter(campaign, [engine.Entry(f"p{person.pk}", person.pk, person.cio_id)])
    while engine.advance_due():
        pass
    return Journey.objects.get(campaign=campaign, person=person)


def purchase(workspace, person, django_capture_on_commit_callbacks, **data):
    with django_capture_on_commit_callbacks(execute=True):  # goals follow stored events
        people.track_event(workspace, people.Ref("id", person.customer_id), name="purchase",
                           data=data)


def test_the_goal_converts_the_journey_and_the_last_message_and_exits(
        workspace, travel, django_capture_on_commit_callbacks):
    campaign = campaign_with_goal(workspace)
    ada = make_person(workspace, "ada", email="ada@example.com")
    journey = journey_of(campaign, ada)
    travel.shift(timedelta(hours=5))

    purchase(workspace, ada, django_capture_on_commit_callbacks, total=40)

    journey.refresh_from_db()
    assert journey.converted_at == START + timedelta(hours=5)
    assert (journey.state, journey.exit_reason) == ("exited", "goal")
    first = Delivery.objects.get(journey=journey, step_id="first")
    assert first.converted_at == journey.converted_at
    travel.shift(timedelta(days=3))
    while engine.advance_due():
        pass
    assert not Delivery.objects.filter(step_id="second").exists()  # gone before the next one


def test_the_goal_counts_only_within_its_days_of_a_message(
        workspace, travel, django_capture_on_commit_callbacks):
    campaign = campaign_with_goal(workspace, exit="never", within_days=1)
    ada = make_person(workspace, "ada", email="ada@example.com")
    journey = journey_of(campaign, ada)
    travel.shift(timedelta(days=1, hours=1))

    purchase(workspace, ada, django_capture_on_commit_callbacks)

    journey.refresh_from_db()
    assert journey.converted_at is None and journey.state == "active"


def test_goal_filters_decide_which_events_count(workspace, travel,
                                                django_capture_on_commit_callbacks):
    campaign = campaign_with_goal(workspace, exit="never", filters=[
        {"field": "total", "operator": "gte", "value": 50}])
    ada = make_person(workspace, "ada", email="ada@example.com")
    journey = journey_of(campaign, ada)

    purchase(workspace, ada, django_capture_on_commit_callbacks, total=20)
    journey.refresh_from_db()
    assert journey.converted_at is None

    purchase(workspace, ada, django_capture_on_commit_callbacks, total=80)
    journey.refresh_from_db()
    assert journey.converted_at is not None and journey.state == "active"


def test_exiting_on_the_goal_needs_no_message(workspace, travel,
                                              django_capture_on_commit_callbacks):
    campaign = campaign_with_goal(workspace)
    bob = make_person(workspace, "bob", email="bob@example.com", unsubscribed=True)
    journey = journey_of(campaign, bob)  # unsubscribed: the first message is skipped

    purchase(workspace, bob, django_capture_on_commit_callbacks)

    journey.refresh_from_db()
    assert journey.converted_at is None
    assert (journey.state, journey.exit_reason) == ("exited", "goal")


def segment_goal_campaign(workspace, goal_segment, kind="enters_segment"):
    entry = create_segment(workspace, name="Trial")
    campaign = services.create_campaign(workspace, {
        "name": "Upgrade", "trigger": {"segments": {"segments": [{"id": entry.pk}]}},
        "goal": {kind: goal_segment.pk, "within_days": 5}, "exit": "goal",
        "workflow": {"steps": [{"id": "first", **MAIL},
                               {"id": "wait", "type": "delay", "duration": {"days": 2}},
                               {"id": "second", **MAIL}]}})
    services.start_campaign(campaign, audience="future_only")
    campaign.refresh_from_db()
    return campaign


def test_entering_the_goal_segment_converts_and_exits(workspace, travel,
                                                      django_capture_on_commit_callbacks):
    from segments.services import add_to_segment

    paying = create_segment(workspace, name="Paying")
    campaign = segment_goal_campaign(workspace, paying)
    ada = make_person(workspace, "ada", email="ada@example.com")
    journey = journey_of(campaign, ada)
    travel.shift(timedelta(hours=3))

    with django_capture_on_commit_callbacks(execute=True):  # the log is read after commit
        add_to_segment(paying, [ada.pk])

    journey.refresh_from_db()
    assert journey.converted_at == START + timedelta(hours=3)
    assert (journey.state, journey.exit_reason) == ("exited", "goal")
    assert Delivery.objects.get(journey=journey, step_id="first").converted_at is not None


def test_leaving_a_segment_can_be_the_goal(workspace, travel,
                                           django_capture_on_commit_callbacks):
    from segments.services import add_to_segment, remove_from_segment

    churn = create_segment(workspace, name="At risk")
    ada = make_person(workspace, "ada", email="ada@example.com")
    add_to_segment(churn, [ada.pk])
    campaign = segment_goal_campaign(workspace, churn, kind="leaves_segment")
    journey = journey_of(campaign, ada)

    with django_capture_on_commit_callbacks(execute=True):
        remove_from_segment(churn, [ada.pk])

    journey.refresh_from_db()
    assert journey.converted_at is not None and journey.exit_reason == "goal"


def test_people_who_already_meet_the_goal_exit_on_entry(workspace, travel):
    from segments.services import add_to_segment

    paying = create_segment(workspace, name="Paying")
    campaign = segment_goal_campaign(workspace, paying)
    ada = make_person(workspace, "ada", email="ada@example.com")
    add_to_segment(paying, [ada.pk])

    journey = journey_of(campaign, ada)

    assert (journey.state, journey.exit_reason, journey.converted_at) == (
        "exited", "goal_met_on_entry", None)
    assert not Delivery.objects.exists()  # nothing was sent


@pytest.mark.parametrize("size", [2, 30])
def test_reaching_the_goal_is_set_based_and_takes_the_moments_in_order(
        workspace, travel, size, django_assert_max_num_queries):
    from campaigns import goals

    campaign = campaign_with_goal(workspace, within_days=1)
    crowd = [make_person(workspace, f"p{n}", email=f"p{n}@example.com") for n in range(size)]
    journeys = [journey_of(campaign, person) for person in crowd]
    late = START + timedelta(days=2)  # too long after the first message to convert
    soon = START + timedelta(hours=2)
    # The first half reach the goal late (exiting then, without converting), then soon
    # (converting the journey they left); the others soon (converting and exiting), then
    # late (nothing more).
    half = size // 2
    moments = [(person.pk, late) for person in crowd[:half]]
    moments += [(person.pk, soon) for person in crowd]
    moments += [(person.pk, late) for person in crowd[half:]]

    # savepoint, lock the journeys, read the messages, two conversions and the exits,
    # then the converted people's owed segment evaluations (engagement conditions)
    with django_assert_max_num_queries(9):
        assert goals.reach_goal(campaign, moments) == size

    for index, journey in enumerate(journeys):
        journey.refresh_from_db()
        first = Delivery.objects.get(journey=journey, step_id="first")
        assert (journey.state, journey.exit_reason) == ("exited", "goal")
        if index < half:
            assert (journey.converted_at, journey.ended_at, first.converted_at) == (
                soon, late, soon)
        else:
            assert (journey.converted_at, journey.ended_at, first.converted_at) == (
                soon, soon, soon)
