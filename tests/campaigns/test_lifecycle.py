"""Starting, stopping, archiving, unarchiving and deleting campaigns."""

import pytest
from django.db import connection
from django.utils import timezone

from campaigns import engine, segment_triggers, services
from campaigns.definition import DefinitionError
from campaigns.models import (
    Campaign,
    CampaignEntryJob,
    Delivery,
    Journey,
    JourneyStep,
    settle_stopping,
)
from segments.models import Segment
from segments.services import add_to_segment, create_segment, set_archived
from tests.factories import make_person, make_workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def vip(workspace):
    return create_segment(workspace, name="VIP")


def campaign_for(workspace, segment, steps=None, **extra) -> Campaign:
    steps = steps if steps is not None else [{"id": "wait", "type": "delay",
                                              "duration": {"days": 2}}]
    return services.create_campaign(workspace, {
        "name": "Welcome", "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "workflow": {"steps": steps}, **extra})


def members(workspace, segment, count):
    people = [make_person(workspace, f"p{n}") for n in range(count)]
    add_to_segment(segment, [person.pk for person in people])
    return people


def test_start_with_current_people_enters_everyone_who_matches(workspace, vip):
    members(workspace, vip, 5)
    make_person(workspace, "outsider")
    campaign = campaign_for(workspace, vip)

    services.start_campaign(campaign, audience="current_and_future")

    campaign.refresh_from_db()
    assert campaign.state == "running" and campaign.first_started_at
    assert Journey.objects.filter(campaign=campaign).count() == 5  # one batch: at once
    assert not Journey.objects.filter(person__customer_id="outsider").exists()
    job = CampaignEntryJob.objects.get(campaign=campaign)
    assert (job.state, job.total, job.entered) == ("done", 5, 5)


def test_a_large_start_is_entered_by_a_worker_and_goes_on_where_a_dead_one_stopped(
        workspace, vip, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(segment_triggers, "ENTER_BATCH", 2)  # more than one batch
    monkeypatch.setattr(CampaignEntryJob, "batch_size", 2)
    members(workspace, vip, 5)
    make_person(workspace, "outsider")
    campaign = campaign_for(workspace, vip)

    with django_capture_on_commit_callbacks() as queued:
        services.start_campaign(campaign, audience="current_and_future")

    # The start answers at once; a worker's task enters them.
    assert not Journey.objects.exists() and len(queued) == 1
    job = CampaignEntryJob.objects.get(campaign=campaign)
    assert (job.state, job.total) == ("pending", 5)
    segment_triggers.run_entry(job.pk, max_batches=1)  # then its worker dies
    job.refresh_from_db()
    assert (job.state, job.done, job.entered) == ("running", 2, 2)
    assert Journey.objects.count() == 2

    segment_triggers.run_entry(job.pk)  # resumed (engage.jobs hands it out again)
    segment_triggers.run_entry(job.pk)  # and once more, for nothing

    job.refresh_from_db()
    assert (job.state, job.done, job.entered) == ("done", 5, 5)
    assert Journey.objects.filter(campaign=campaign).count() == 5
    assert not Journey.objects.filter(person__customer_id="outsider").exists()


def test_a_start_stopped_before_its_people_were_all_entered_enters_no_more(
        workspace, vip, monkeypatch):
    monkeypatch.setattr(segment_triggers, "ENTER_BATCH", 2)
    monkeypatch.setattr(CampaignEntryJob, "batch_size", 2)
    members(workspace, vip, 5)
    campaign = campaign_for(workspace, vip)
    services.start_campaign(campaign, audience="current_and_future")
    job = CampaignEntryJob.objects.get(campaign=campaign)
    segment_triggers.run_entry(job.pk, max_batches=1)

    services.stop_campaign(campaign, journeys="exit")
    segment_triggers.run_entry(job.pk)

    job.refresh_from_db()
    assert (job.state, job.entered) == ("failed", 2)
    assert "the campaign is stopped" in job.error
    assert not Journey.objects.filter(state="active").exists()


def test_a_start_walks_the_members_of_several_segments_entering_each_person_once(
        workspace, vip, monkeypatch):
    """With "any" of two segments, someone in both is one candidate: counted once,
    entered once, whatever batch boundaries fall between the memberships."""
    monkeypatch.setattr(segment_triggers, "ENTER_BATCH", 2)
    monkeypatch.setattr(CampaignEntryJob, "batch_size", 2)
    beta = create_segment(workspace, name="Beta")
    both = members(workspace, vip, 3)
    add_to_segment(beta, [person.pk for person in both])
    only_beta = [make_person(workspace, f"beta{n}") for n in range(2)]
    add_to_segment(beta, [person.pk for person in only_beta])
    make_person(workspace, "outsider")
    other = create_segment(make_workspace(), name="Elsewhere")
    add_to_segment(other, [make_person(other.workspace, "stranger").pk])
    campaign = services.create_campaign(workspace, {
        "name": "Either", "trigger": {"segments": {"match": "any", "segments": [
            {"id": vip.pk}, {"id": beta.pk}]}},
        "workflow": {"steps": [{"id": "wait", "type": "delay", "duration": {"days": 2}}]}})

    services.start_campaign(campaign, audience="current_and_future")
    job = CampaignEntryJob.objects.get(campaign=campaign)
    assert job.total == 5  # distinct people, not memberships
    segment_triggers.run_entry(job.pk)

    job.refresh_from_db()
    assert (job.state, job.done, job.entered) == ("done", 5, 5)
    entered = Journey.objects.filter(campaign=campaign)
    assert sorted(entered.values_list("person_id", flat=True)) == sorted(
        person.pk for person in both + only_beta)
    assert sorted(entered.values_list("entry_key", flat=True)) == sorted(
        f"p{person.pk}" for person in both + only_beta)  # frequency "once": one key each
    assert {journey.cio_id for journey in entered} == {p.cio_id for p in both + only_beta}


def test_start_with_future_additions_only_enters_nobody_now(workspace, vip):
    members(workspace, vip, 3)
    campaign = campaign_for(workspace, vip)

    services.start_campaign(campaign, audience="future_only")

    assert not Journey.objects.exists()


def test_not_members_and_filters_shape_who_enters(workspace, vip):
    blocked = create_segment(workspace, name="Blocked")
    people = members(workspace, vip, 4)
    add_to_segment(blocked, [people[0].pk])
    make_person(workspace, "p1", plan="pro")
    make_person(workspace, "p2", plan="pro")
    campaign = services.create_campaign(workspace, {
        "name": "x", "trigger": {"segments": {"match": "all", "segments": [
            {"id": vip.pk}, {"id": blocked.pk, "in": False}]}},
        "filters": {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}}})

    services.start_campaign(campaign)

    assert sorted(Journey.objects.values_list("person__customer_id", flat=True)) == ["p1", "p2"]


def test_start_refuses_unconfigured_steps_and_wrong_states(workspace, vip):
    campaign = campaign_for(workspace, vip, [{"type": "email"}])
    with pytest.raises(DefinitionError) as error:
        services.start_campaign(campaign)
    assert {p.place for p in error.value.problems} >= {"workflow.steps[0].subject"}
    campaign.refresh_from_db()
    assert campaign.state == "draft"

    ready = campaign_for(workspace, vip)
    services.start_campaign(ready)
    with pytest.raises(services.CampaignStateError):
        services.start_campaign(ready)


def test_a_restart_with_frequency_once_never_enters_anyone_twice(workspace, vip):
    members(workspace, vip, 3)
    campaign = campaign_for(workspace, vip)
    services.start_campaign(campaign)
    services.stop_campaign(campaign, journeys="exit")

    services.start_campaign(campaign, audience="current_and_future")

    assert Journey.objects.filter(campaign=campaign).count() == 3


def test_stop_and_exit_everyone_now(workspace, vip, monkeypatch):
    monkeypatch.setattr(services, "BATCH_SIZE", 2)
    members(workspace, vip, 5)
    campaign = campaign_for(workspace, vip)
    services.start_campaign(campaign)

    services.stop_campaign(campaign, journeys="exit")

    campaign.refresh_from_db()
    assert campaign.state == "stopped"
    assert set(Journey.objects.values_list("state", "exit_reason")) == {
        ("exited", "campaign_stopped")}


def test_stop_and_let_them_finish(workspace, vip, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    members(workspace, vip, 2)
    campaign = campaign_for(workspace, vip)
    services.start_campaign(campaign)
    while engine.advance_due():
        pass

    services.stop_campaign(campaign, journeys="finish")
    campaign.refresh_from_db()
    assert campaign.state == "stopping"

    time_machine.shift(2 * 86_400)
    while engine.advance_due():
        pass
    campaign.refresh_from_db()
    assert campaign.state == "stopped"
    assert set(Journey.objects.values_list("state", flat=True)) == {"finished"}


def test_a_campaign_stopping_while_a_batch_ends_its_last_journeys_is_stopped(
        workspace, vip, monkeypatch):
    members(workspace, vip, 2)
    campaign = campaign_for(workspace, vip, [{"id": "bye", "type": "exit"}])
    services.start_campaign(campaign)
    load = engine.load_campaigns

    def stopped_meanwhile(ids):  # the batch read it running; then someone stopped it
        loaded = load(ids)
        Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.STOPPING)
        return loaded

    monkeypatch.setattr(engine, "load_campaigns", stopped_meanwhile)
    assert engine.advance_due() == 2

    campaign.refresh_from_db()
    assert campaign.state == "stopped"
    assert set(Journey.objects.values_list("state", flat=True)) == {"exited"}


def test_only_stopping_campaigns_without_active_journeys_are_settled(workspace, vip):
    members(workspace, vip, 1)
    emptied, busy, running = (campaign_for(workspace, vip) for _ in range(3))
    for campaign in (emptied, busy, running):
        services.start_campaign(campaign)
    Journey.objects.filter(campaign=emptied).update(state=Journey.State.FINISHED)
    Campaign.objects.filter(pk__in=[emptied.pk, busy.pk]).update(
        state=Campaign.State.STOPPING)

    assert settle_stopping([emptied.pk, busy.pk, running.pk, emptied.pk]) == 1

    assert dict(Campaign.objects.values_list("pk", "state")) == {
        emptied.pk: "stopped", busy.pk: "stopping", running.pk: "running"}


def test_archive_forces_everyone_out_and_removes_drafts(workspace, vip):
    members(workspace, vip, 2)
    campaign = campaign_for(workspace, vip, [
        {"id": "m", "type": "email", "from": "a@example.com", "subject": "s", "body_html": "b",
         "sending": "draft"},
        {"id": "wait", "type": "delay", "duration": {"days": 1}}])
    services.start_campaign(campaign)
    while engine.advance_due():
        pass
    assert Delivery.objects.filter(state="drafted").count() == 2

    services.archive_campaign(campaign)

    assert set(Journey.objects.values_list("state", "exit_reason")) == {
        ("exited", "campaign_archived")}
    assert set(Delivery.objects.values_list("state", flat=True)) == {"discarded"}
    with pytest.raises(services.CampaignStateError):
        services.update_campaign(campaign, campaign.definition)


def test_unarchive_brings_back_its_segments(workspace, vip):
    campaign = campaign_for(workspace, vip)
    services.archive_campaign(campaign)
    set_archived(vip, True)

    services.unarchive_campaign(campaign)

    campaign.refresh_from_db()
    assert campaign.state == "stopped"
    assert not Segment.objects.get(pk=vip.pk).archived


def test_delete_keeps_anonymous_message_figures(workspace, vip):
    members(workspace, vip, 1)
    campaign = campaign_for(workspace, vip, [
        {"id": "m", "type": "email", "from": "a@example.com", "subject": "s",
         "body_html": "b"}], exit="never")
    services.start_campaign(campaign)
    while engine.advance_due():
        pass

    services.delete_campaign(campaign)
    connection.check_constraints()

    assert not Campaign.objects.exists() and not Journey.objects.exists()
    assert not JourneyStep.objects.exists()
    assert list(Delivery.objects.values_list("kind", "campaign", "cio_id", "recipient")) == [
        ("email", None, None, "")]


# --- editing a running campaign -------------------------------------------------------


def waiting_campaign(workspace, segment, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    members(workspace, segment, 2)
    campaign = campaign_for(workspace, segment, [
        {"id": "first", "type": "delay", "duration": {"days": 1}},
        {"id": "note", "type": "create_event", "name": "noted"},
        {"id": "last", "type": "create_event", "name": "last"}])
    services.start_campaign(campaign)
    while engine.advance_due():
        pass
    assert set(Journey.objects.values_list("step_id", flat=True)) == {"first"}
    return campaign


def test_people_at_a_removed_step_go_on_to_what_followed_it(workspace, vip, time_machine):
    from people.models import Event

    campaign = waiting_campaign(workspace, vip, time_machine)
    steps = campaign.definition["workflow"]["steps"]

    services.update_campaign(campaign, {**campaign.definition,
                                        "workflow": {"steps": steps[2:]}}, version=1)
    while engine.advance_due():
        pass

    assert set(Journey.objects.values_list("state", flat=True)) == {"finished"}
    assert list(Event.objects.values_list("name", flat=True)) == ["last", "last"]


def test_people_in_a_moved_block_move_with_it(workspace, vip, time_machine):
    from people.models import Event

    campaign = waiting_campaign(workspace, vip, time_machine)
    first, note, last = campaign.definition["workflow"]["steps"]
    branch = {"id": "b", "type": "branch",
              "condition": {"attribute": {"field": "plan", "operator": "exists"}},
              "paths": [{"key": "true", "steps": []}, {"key": "false", "steps": [first, note]}]}

    services.update_campaign(campaign, {**campaign.definition,
                                        "workflow": {"steps": [last, branch]}}, version=1)
    time_machine.shift(86_400)
    while engine.advance_due():
        pass

    # Still waiting at "first" (now inside the branch), then the rest of that path.
    assert sorted(Event.objects.values_list("name", flat=True)) == ["noted", "noted"]
    assert set(Journey.objects.values_list("state", flat=True)) == {"finished"}


def test_people_at_a_removed_step_may_exit_instead(workspace, vip, time_machine):
    campaign = waiting_campaign(workspace, vip, time_machine)
    steps = campaign.definition["workflow"]["steps"]

    services.update_campaign(campaign, {**campaign.definition,
                                        "workflow": {"steps": steps[1:]}},
                             removed_steps="exit")

    assert set(Journey.objects.values_list("state", "exit_reason")) == {
        ("exited", "step_removed")}


def test_removing_the_last_steps_finishes_their_journeys(workspace, vip, time_machine):
    campaign = waiting_campaign(workspace, vip, time_machine)

    services.update_campaign(campaign, {**campaign.definition, "workflow": {"steps": []}})

    assert set(Journey.objects.values_list("state", flat=True)) == {"finished"}


def test_a_scheduled_start_starts_when_its_time_comes(workspace, vip, time_machine):
    from datetime import timedelta

    from campaigns import tasks

    time_machine.move_to(timezone.now(), tick=False)
    members(workspace, vip, 2)
    campaign = campaign_for(workspace, vip)
    at = timezone.now() + timedelta(hours=2)

    services.schedule_start(campaign, at=at, audience="current_and_future")
    assert tasks.start_scheduled_campaigns() == 0
    time_machine.move_to(at)
    assert tasks.start_scheduled_campaigns() == 1

    campaign.refresh_from_db()
    assert (campaign.state, campaign.starts_at) == ("running", None)
    assert Journey.objects.filter(campaign=campaign).count() == 2


def test_a_scheduled_start_is_checked_now_and_may_be_cancelled(workspace, vip):
    from datetime import timedelta

    unready = campaign_for(workspace, vip, [{"type": "email"}])
    with pytest.raises(DefinitionError):
        services.schedule_start(unready, at=timezone.now() + timedelta(days=1))

    campaign = campaign_for(workspace, vip)
    services.schedule_start(campaign, at=timezone.now() - timedelta(minutes=1))
    services.schedule_start(campaign, at=None)
    from campaigns import tasks

    assert tasks.start_scheduled_campaigns() == 0
    campaign.refresh_from_db()
    assert campaign.state == "draft"
