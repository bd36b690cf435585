"""What the campaign pages read: counts per day, the steps with their figures, the
journeys at a step and a person's journeys with their paths."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from campaigns import metrics
from campaigns.models import Delivery, Journey
from tests.campaigns.insights_support import START, STEPS, delivery_of, enter, running
from tests.factories import make_person

pytestmark = pytest.mark.django_db


@pytest.fixture
def travel():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def people(workspace, *names):
    return [make_person(workspace, name, email=f"{name}@example.com") for name in names]


def test_daily_counts_bucket_each_figure_by_day_in_one_query(workspace, travel,
                                                            django_assert_num_queries):
    campaign = running(workspace)
    ada, bob = people(workspace, "ada", "bob")
    enter(campaign, [ada])
    travel.move_to(START + timedelta(days=1))
    enter(campaign, [bob])
    day_two = timezone.now()
    Delivery.objects.filter(pk=delivery_of(campaign, ada).pk).update(
        state=Delivery.State.SENT, sent_at=START, opened_at=day_two, clicked_at=day_two)
    Delivery.objects.filter(pk=delivery_of(campaign, bob).pk).update(
        state=Delivery.State.SENT, sent_at=day_two)
    Journey.objects.filter(person=bob).update(converted_at=day_two)

    with django_assert_num_queries(1):
        rows = metrics.daily_counts(campaign)

    assert len(rows) == 30
    assert rows[-1]["day"] == day_two.date() and rows[-2]["day"] == START.date()
    assert {key: rows[-2][key] for key in metrics.DAILY_METRICS} == {
        "entered": 1, "sent": 1, "opened": 0, "clicked": 0, "converted": 0}
    assert {key: rows[-1][key] for key in metrics.DAILY_METRICS} == {
        "entered": 1, "sent": 1, "opened": 1, "clicked": 1, "converted": 1}
    assert all(not any(row[key] for key in metrics.DAILY_METRICS) for row in rows[:-2])


def test_daily_counts_leave_out_older_days_and_other_campaigns(workspace, other_workspace,
                                                              travel):
    ours, theirs = running(workspace), running(other_workspace, name="Theirs")
    enter(ours, people(workspace, "ada"))
    enter(theirs, people(other_workspace, "bob"))
    travel.move_to(START + timedelta(days=31))

    rows = metrics.daily_counts(ours)

    assert all(not row["entered"] for row in rows)
    assert metrics.daily_counts(theirs, now=START)[-1]["entered"] == 1


def test_daily_counts_use_the_workspace_time_zone(workspace, travel):
    campaign = running(workspace)
    travel.move_to(START.replace(hour=23, minute=30))  # already tomorrow in Berlin
    enter(campaign, people(workspace, "ada"))

    utc = metrics.daily_counts(campaign, zone="UTC")
    berlin = metrics.daily_counts(campaign, zone="Europe/Berlin")

    assert utc[-1]["day"] == START.date() and utc[-1]["entered"] == 1
    assert berlin[-1]["day"] == START.date() + timedelta(days=1)
    assert berlin[-1]["entered"] == 1


def test_step_rows_give_every_step_its_depth_and_figures(workspace, travel):
    branch = {"id": "b", "type": "branch", "condition": {"attribute": {
        "field": "plan", "operator": "eq", "value": "pro"}},
        "paths": [{"key": "true", "steps": [{"id": "x", "type": "exit"}]},
                  {"key": "false", "steps": []}]}
    campaign = running(workspace, [*STEPS[:2], branch])
    enter(campaign, people(workspace, "ada", "bob"))

    rows = metrics.step_rows(campaign)

    assert [(row["id"], row["depth"]) for row in rows] == [
        ("mail", 0), ("wait", 0), ("b", 0), ("x", 1)]
    assert rows[0]["name"] == "Welcome mail" and rows[2]["name"] == "Branch"
    assert rows[1]["metrics"]["waiting"] == 2


def test_step_figures_take_the_same_queries_for_any_number_of_steps(
        workspace, travel, django_assert_num_queries):
    few = running(workspace, STEPS, name="Few")
    many = running(workspace, [*STEPS, *[{"id": f"d{n}", "type": "delay",
                                          "duration": {"days": n + 1}} for n in range(20)]],
                   name="Many")
    enter(few, people(workspace, "ada"))
    enter(many, people(workspace, "bob"))

    with django_assert_num_queries(3):
        metrics.step_rows(few)
    with django_assert_num_queries(3):
        rows = metrics.step_rows(many)
    assert len(rows) == 23


def test_journeys_at_a_step_are_the_active_ones_there(workspace, travel):
    campaign = running(workspace)
    ada, bob = people(workspace, "ada", "bob")
    enter(campaign, [ada, bob])
    Journey.objects.filter(person=bob).update(state=Journey.State.EXITED)

    found = list(metrics.journeys_at_step(campaign, "wait"))

    assert [journey.person for journey in found] == [ada]
    assert list(metrics.journeys_at_step(campaign, "mail")) == []


def test_a_persons_journeys_come_with_their_paths_in_two_queries(workspace, travel,
                                                                django_assert_num_queries):
    first, second = running(workspace, name="First"), running(workspace, name="Second")
    (ada,) = people(workspace, "ada")
    enter(first, [ada])
    travel.move_to(START + timedelta(hours=1))
    enter(second, [ada])

    with django_assert_num_queries(2):
        journeys = metrics.journeys_of_person(workspace, ada.pk)

    assert [journey.campaign.name for journey in journeys] == ["Second", "First"]
    assert [(step_id, outcome) for step_id, _, outcome, _, _ in journeys[0].path] == [
        ("mail", "delivery:queued"), ("wait", "waiting")]
    assert journeys[0].path[0][4] == delivery_of(second, ada).pk
    assert journeys[0].step_name == "Delay"


def test_a_persons_journeys_stay_in_their_workspace(workspace, other_workspace, travel):
    campaign = running(workspace)
    (ada,) = people(workspace, "ada")
    enter(campaign, [ada])

    assert metrics.journeys_of_person(other_workspace, ada.pk) == []
