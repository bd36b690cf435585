"""The segments trigger: people who come to match enter, through the membership log."""

import pytest

from campaigns import segment_triggers, services, tasks
from campaigns.models import Journey
from segments.services import add_to_segment, create_segment, remove_from_segment
from tests.factories import make_person

pytestmark = pytest.mark.django_db


@pytest.fixture
def run_after_commit(django_capture_on_commit_callbacks):
    """Run what a change does after commit (segment evaluation, log announcements)."""
    def run(change, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return change(*args, **kwargs)
    return run


def campaign_on(workspace, segments, frequency=None, **extra):
    definition = {"name": "Welcome",
                  "trigger": {"segments": {"match": "all", "segments": segments}},
                  "workflow": {"steps": [{"id": "wait", "type": "delay",
                                          "duration": {"days": 30}}]}, **extra}
    if frequency:
        definition["frequency"] = frequency
    return services.create_campaign(workspace, definition)


def entered(campaign) -> list[str]:
    return sorted(Journey.objects.filter(campaign=campaign)
                  .values_list("person__customer_id", flat=True))


def test_future_additions_enter_when_they_join(workspace, run_after_commit):
    vip = create_segment(workspace, name="VIP")
    ada, bob = make_person(workspace, "ada"), make_person(workspace, "bob")
    add_to_segment(vip, [ada.pk])  # a member before the start: not entered
    campaign = campaign_on(workspace, [{"id": vip.pk}])
    services.start_campaign(campaign, audience="future_only")

    run_after_commit(add_to_segment, vip, [bob.pk])

    assert entered(campaign) == ["bob"]


def test_people_who_come_to_match_a_data_driven_segment_enter(workspace, run_after_commit):
    pro = run_after_commit(create_segment, workspace, name="Pro", conditions_tree={
        "attribute": {"field": "plan", "operator": "eq", "value": "pro"}})
    campaign = campaign_on(workspace, [{"id": pro.pk}])
    services.start_campaign(campaign, audience="future_only")

    run_after_commit(make_person, workspace, "ada", plan="pro")
    run_after_commit(make_person, workspace, "bob", plan="free")

    assert entered(campaign) == ["ada"]


@pytest.mark.parametrize("frequency, journeys", [
    (None, 1),  # once: never again
    ({"mode": "rematch"}, 2),
])
def test_frequency_when_people_leave_and_come_back(workspace, run_after_commit, frequency,
                                                   journeys):
    vip = create_segment(workspace, name="VIP")
    ada = make_person(workspace, "ada")
    campaign = campaign_on(workspace, [{"id": vip.pk}], frequency)
    services.start_campaign(campaign, audience="future_only")

    run_after_commit(add_to_segment, vip, [ada.pk])
    run_after_commit(remove_from_segment, vip, [ada.pk])
    run_after_commit(add_to_segment, vip, [ada.pk])

    assert Journey.objects.filter(campaign=campaign).count() == journeys


def test_not_in_segments_keep_people_out_until_they_leave_them(workspace, run_after_commit):
    vip, blocked = create_segment(workspace, name="VIP"), create_segment(workspace, name="No")
    ada, bob = make_person(workspace, "ada"), make_person(workspace, "bob")
    add_to_segment(blocked, [bob.pk])
    campaign = campaign_on(workspace, [{"id": vip.pk}, {"id": blocked.pk, "in": False}])
    services.start_campaign(campaign, audience="future_only")

    run_after_commit(add_to_segment, vip, [ada.pk, bob.pk])
    assert entered(campaign) == ["ada"]

    run_after_commit(remove_from_segment, blocked, [bob.pk])
    assert entered(campaign) == ["ada", "bob"]


def test_a_lost_announcement_is_caught_up_by_the_sweep(workspace, run_after_commit,
                                                      monkeypatch):
    vip = create_segment(workspace, name="VIP")
    ada = make_person(workspace, "ada")
    campaign = campaign_on(workspace, [{"id": vip.pk}])
    services.start_campaign(campaign, audience="future_only")

    def broker_down(*args, **kwargs):
        raise ConnectionError("the broker is unreachable")

    monkeypatch.setattr("django_q.tasks.async_task", broker_down)
    run_after_commit(add_to_segment, vip, [ada.pk])  # announced, but nothing was queued
    assert entered(campaign) == []

    assert tasks.sweep_segment_triggers() == 1
    assert entered(campaign) == ["ada"]
    assert tasks.sweep_segment_triggers() == 0  # read once: the cursor moved on


def test_reading_the_log_again_enters_nobody_twice(workspace, run_after_commit):
    vip = create_segment(workspace, name="VIP")
    people = [make_person(workspace, f"p{n}") for n in range(5)]
    campaign = campaign_on(workspace, [{"id": vip.pk}], {"mode": "rematch"})
    services.start_campaign(campaign, audience="future_only")
    add_to_segment(vip, [person.pk for person in people])  # not announced (no commit)

    assert segment_triggers.enter_from_log(campaign.pk) == 5
    campaign.refresh_from_db()
    campaign.log_cursor = {}  # as if the cursor had been lost: the log is read again
    campaign.save(update_fields=["log_cursor"])
    assert segment_triggers.enter_from_log(campaign.pk) == 0
    assert Journey.objects.filter(campaign=campaign).count() == 5


def test_current_people_and_later_additions_both_enter(workspace, run_after_commit):
    vip = create_segment(workspace, name="VIP")
    ada, bob = make_person(workspace, "ada"), make_person(workspace, "bob")
    add_to_segment(vip, [ada.pk])
    campaign = campaign_on(workspace, [{"id": vip.pk}])

    run_after_commit(services.start_campaign, campaign, audience="current_and_future")
    run_after_commit(add_to_segment, vip, [bob.pk])

    assert entered(campaign) == ["ada", "bob"]


def test_a_stopped_campaign_reads_nothing(workspace, run_after_commit):
    vip = create_segment(workspace, name="VIP")
    ada = make_person(workspace, "ada")
    campaign = campaign_on(workspace, [{"id": vip.pk}])
    services.start_campaign(campaign, audience="future_only")
    services.stop_campaign(campaign, journeys="exit")

    run_after_commit(add_to_segment, vip, [ada.pk])

    assert entered(campaign) == []


def test_every_n_days_people_who_still_match_enter_again(workspace, run_after_commit,
                                                         time_machine):
    from datetime import timedelta

    from django.utils import timezone

    from campaigns import engine

    time_machine.move_to(timezone.now(), tick=False)
    vip = create_segment(workspace, name="VIP")
    ada, bob = make_person(workspace, "ada"), make_person(workspace, "bob")
    campaign = services.create_campaign(workspace, {
        "name": "Weekly", "trigger": {"segments": {"segments": [{"id": vip.pk}]}},
        "frequency": {"mode": "interval", "days": 7}, "workflow": {"steps": []}})
    services.start_campaign(campaign, audience="future_only")
    run_after_commit(add_to_segment, vip, [ada.pk, bob.pk])
    while engine.advance_due():
        pass  # their journeys end at once
    remove_from_segment(vip, [bob.pk])  # bob no longer matches

    time_machine.shift(timedelta(days=6))
    tasks.sweep_segment_triggers()
    assert entered(campaign) == ["ada", "bob"]
    time_machine.shift(timedelta(days=1))
    tasks.sweep_segment_triggers()
    tasks.sweep_segment_triggers()  # a rerun enters nobody twice
    assert entered(campaign) == ["ada", "ada", "bob"]
