"""Campaign metrics: journeys by state, and per step who entered, waits and what was sent."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from campaigns import engine, metrics, services
from campaigns.models import Delivery, Journey
from people import services as people
from people.services import Ref
from segments.services import create_segment
from tests.factories import make_person

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
MAIL = {"id": "mail", "type": "email", "from": "team@example.com", "subject": "Hi",
        "body_html": "<p>Hi</p>"}
STEPS = [MAIL, {"id": "wait", "type": "delay", "duration": {"days": 2}},
         {"id": "tag", "type": "update_attributes", "set": {"stage": "done"}}]
ZERO = dict.fromkeys(metrics.STEP_METRICS, 0)


@pytest.fixture
def travel():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def running(workspace, steps=STEPS, name="Welcome"):
    segment = create_segment(workspace, name=f"{name} segment")
    campaign = services.create_campaign(workspace, {
        "name": name, "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "exit": "never", "workflow": {"steps": steps}})
    return services.start_campaign(campaign, audience="future_only")


def enter(campaign, people_):
    engine.enter(campaign, [engine.Entry(f"p{p.pk}", p.pk, p.cio_id) for p in people_])
    while engine.advance_due():
        pass


def delivery_of(campaign, person) -> Delivery:
    return Delivery.objects.get(campaign=campaign, cio_id=person.cio_id)


def test_metrics_count_journeys_and_each_steps_deliveries(workspace, travel):
    campaign = running(workspace)
    ada, bob, dee = (make_person(workspace, name, email=f"{name}@example.com")
                     for name in ("ada", "bob", "dee"))
    cy = make_person(workspace, "cy", email="cy@example.com", unsubscribed=True)
    enter(campaign, [ada, bob, cy, dee])
    now = timezone.now()
    Delivery.objects.filter(pk=delivery_of(campaign, ada).pk).update(
        state=Delivery.State.SENT, sent_at=now, opened_at=now, clicked_at=now, converted_at=now)
    Delivery.objects.filter(pk=delivery_of(campaign, bob).pk).update(state=Delivery.State.FAILED)
    Delivery.objects.filter(pk=delivery_of(campaign, dee).pk).update(
        state=Delivery.State.SENT, sent_at=now, bounced_at=now, unsubscribed_at=now)
    Journey.objects.filter(campaign=campaign, person=ada).update(converted_at=now)
    people.delete_person(workspace, Ref("id", "dee"))  # ends dee's journey

    found = metrics.campaign_metrics(campaign)

    assert {key: found[key] for key in ("entered", "active", "finished", "exited",
                                        "converted")} == {
        "entered": 4, "active": 3, "finished": 0, "exited": 1, "converted": 1}
    assert found["steps"] == {
        "mail": {**ZERO, "entered": 4, "sent": 2, "failed": 1, "skipped": 1, "opened": 1,
                 "clicked": 1, "bounced": 1, "unsubscribed": 1, "converted": 1},
        "wait": {**ZERO, "entered": 4, "waiting": 3},
        "tag": ZERO,
    }

    travel.move_to(START + timedelta(days=2))
    while engine.advance_due():
        pass
    found = metrics.campaign_metrics(campaign)
    assert (found["active"], found["finished"], found["exited"]) == (0, 3, 1)
    assert found["steps"]["wait"]["waiting"] == 0
    assert found["steps"]["tag"]["entered"] == 3


def test_drafted_and_unknown_deliveries_are_counted_apart(workspace, travel):
    campaign = running(workspace, [{**MAIL, "sending": "draft"}])
    ada, bob = make_person(workspace, "ada", email="a@example.com"), make_person(
        workspace, "bob", email="b@example.com")
    enter(campaign, [ada, bob])
    Delivery.objects.filter(pk=delivery_of(campaign, bob).pk).update(
        state=Delivery.State.UNKNOWN)

    steps = metrics.campaign_metrics(campaign)["steps"]

    assert steps["mail"] == {**ZERO, "entered": 2, "drafted": 1, "unknown": 1}


def test_a_step_removed_from_the_workflow_keeps_its_figures(workspace, travel):
    campaign = running(workspace)
    enter(campaign, [make_person(workspace, "ada", email="a@example.com")])
    services.stop_campaign(campaign, journeys="exit")
    campaign.refresh_from_db()
    services.update_campaign(campaign, {**campaign.definition, "workflow": {"steps": [
        step for step in campaign.definition["workflow"]["steps"] if step["id"] != "mail"]}})
    campaign.refresh_from_db()

    steps = metrics.campaign_metrics(campaign)["steps"]

    assert list(steps) == ["wait", "tag", "mail"]  # the workflow's order, then the gone
    assert steps["mail"]["entered"] == 1


def test_other_campaigns_do_not_count(workspace, other_workspace, travel):
    ours, theirs = running(workspace), running(other_workspace)
    enter(theirs, [make_person(other_workspace, "ada", email="a@example.com")])
    enter(ours, [])

    found = metrics.campaign_metrics(ours)

    assert found["entered"] == 0
    assert found["steps"]["mail"] == ZERO


def test_metrics_take_the_same_few_queries_for_many_journeys(workspace, travel,
                                                             django_assert_num_queries):
    campaign = running(workspace)
    enter(campaign, [make_person(workspace, f"p{n}", email=f"p{n}@example.com")
                     for n in range(12)])

    with django_assert_num_queries(4):
        found = metrics.campaign_metrics(campaign)
    assert found["steps"]["wait"]["waiting"] == 12


def test_journey_totals_for_many_campaigns_in_one_query(workspace, travel,
                                                        django_assert_num_queries):
    first, second = running(workspace, name="First"), running(workspace, name="Second")
    enter(first, [make_person(workspace, "ada", email="a@example.com")])

    with django_assert_num_queries(1):
        totals = metrics.journey_totals([first.pk, second.pk])

    assert totals[first.pk]["entered"] == 1 and totals[first.pk]["active"] == 1
    assert totals[second.pk] == dict.fromkeys(metrics.JOURNEY_METRICS, 0)
