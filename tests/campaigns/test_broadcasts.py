"""API-triggered broadcasts: who a trigger enters, with what data, in batches, once."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from campaigns import broadcasts, engine, services
from campaigns.models import BroadcastTrigger, Campaign, Delivery, Journey
from engage import jobs
from people.errors import InvalidInput
from segments.services import add_to_segment, create_segment
from tests.factories import make_person

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
MAIL = {"id": "news", "type": "email", "name": "News", "from": "news@example.com",
        "subject": "{{trigger.headline}}", "body_html": "<p>{{trigger.text}}</p>"}


@pytest.fixture
def travel():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def make_broadcast(workspace, *, start=True, **extra) -> Campaign:
    campaign = services.create_campaign(workspace, {
        "name": "Breaking news", "trigger": {"api": {}}, "workflow": {"steps": [MAIL]}, **extra})
    return services.start_campaign(campaign) if start else campaign


def trigger(campaign, body, capture, *, run=True) -> BroadcastTrigger:
    """Trigger ``campaign``; with ``run``, let the queued task enter everyone."""
    with capture(execute=run):
        job = broadcasts.trigger_broadcast(campaign, body)
    job.refresh_from_db()
    return job


def entered(campaign) -> dict[str, dict]:
    """Return the journeys' people (by id) and their trigger data."""
    return {customer_id: context["trigger"] for customer_id, context in
            Journey.objects.filter(campaign=campaign).values_list("person__customer_id",
                                                                  "context")}


@pytest.fixture
def people(workspace):
    return [make_person(workspace, f"u{n}", email=f"u{n}@example.com",
                        plan="pro" if n % 2 else "free") for n in range(1, 6)]


# --- audiences -------------------------------------------------------------------------


def test_recipients_filter_enters_the_matching_people_with_the_data(
        workspace, people, travel, django_capture_on_commit_callbacks):
    campaign = make_broadcast(workspace)

    job = trigger(campaign, {"recipients": {"attribute": {"field": "plan", "operator": "eq",
                                                          "value": "pro"}},
                             "data": {"headline": "Hi"}}, django_capture_on_commit_callbacks)

    assert (job.state, job.total, job.done, job.entered, job.errors) == ("done", 3, 3, 3, [])
    assert entered(campaign) == {"u1": {"headline": "Hi"}, "u3": {"headline": "Hi"},
                                 "u5": {"headline": "Hi"}}
    assert set(Journey.objects.filter(campaign=campaign).values_list("entry_key", flat=True)) == {
        broadcasts.entry_key(job.pk, person.pk) for person in people if person.attributes[
            "plan"] == "pro"}


def test_without_an_audience_everyone_the_campaigns_filters_allow_enters(
        workspace, people, travel, django_capture_on_commit_callbacks):
    vip = create_segment(workspace, name="VIP")
    add_to_segment(vip, [people[0].pk, people[1].pk])
    campaign = make_broadcast(workspace, filters={"segment": {"id": vip.pk}})

    job = trigger(campaign, {}, django_capture_on_commit_callbacks)

    assert (job.audience, job.entered) == ("audience", 2)
    assert set(entered(campaign)) == {"u1", "u2"}


def test_the_campaigns_filters_narrow_an_explicit_list_too(
        workspace, people, travel, django_capture_on_commit_callbacks):
    campaign = make_broadcast(workspace, filters={"attribute": {
        "field": "plan", "operator": "eq", "value": "free"}})

    trigger(campaign, {"ids": ["u1", "u2", "u3", "u4"]}, django_capture_on_commit_callbacks)

    assert set(entered(campaign)) == {"u2", "u4"}


def test_ids_nobody_has_fail_the_trigger_unless_ignored(
        workspace, people, travel, django_capture_on_commit_callbacks):
    campaign = make_broadcast(workspace)

    failed = trigger(campaign, {"ids": ["u1", "ghost", 7]}, django_capture_on_commit_callbacks)

    assert failed.state == "failed"
    assert failed.errors == [{"reason": "id_not_found", "id": "ghost"},
                             {"reason": "id_not_found", "id": "7"}]
    assert "2 recipients could not be found" in failed.error
    assert not Journey.objects.exists()

    travel.shift(timedelta(seconds=11))
    ignored = trigger(campaign, {"ids": ["u1", "ghost"], "id_ignore_missing": True},
                      django_capture_on_commit_callbacks)

    assert (ignored.state, ignored.entered, ignored.errors) == ("done", 1, [])
    assert set(entered(campaign)) == {"u1"}
    assert broadcasts.retry_trigger(failed) is False  # it has nobody to enter


def test_emails_nobody_has_fail_unless_ignored(workspace, people, travel,
                                               django_capture_on_commit_callbacks):
    campaign = make_broadcast(workspace)

    failed = trigger(campaign, {"emails": ["U2@Example.com", "ghost@example.com"]},
                     django_capture_on_commit_callbacks)
    travel.shift(timedelta(seconds=11))
    ignored = trigger(campaign, {"emails": ["U2@Example.com", "ghost@example.com"],
                                 "email_ignore_missing": True},
                      django_capture_on_commit_callbacks)

    assert failed.errors == [{"reason": "email_not_found", "email": "ghost@example.com"}]
    assert (ignored.state, ignored.entered) == ("done", 1)
    assert set(entered(campaign)) == {"u2"}


def test_an_email_several_people_share_needs_email_add_duplicates(
        id_workspace, travel, django_capture_on_commit_callbacks):
    make_person(id_workspace, "a", email="shared@example.com")
    make_person(id_workspace, "b", email="Shared@example.com")
    make_person(id_workspace, "c", email="own@example.com")
    campaign = make_broadcast(id_workspace)

    refused = trigger(campaign, {"emails": ["shared@example.com", "own@example.com"]},
                      django_capture_on_commit_callbacks)
    travel.shift(timedelta(seconds=11))
    both = trigger(campaign, {"emails": ["shared@example.com", "own@example.com"],
                              "email_add_duplicates": True}, django_capture_on_commit_callbacks)

    assert refused.errors == [{"reason": "email_shared", "email": "shared@example.com",
                               "people": 2}]
    assert (both.state, both.entered) == ("done", 3)
    assert set(entered(campaign)) == {"a", "b", "c"}


def test_per_user_data_is_merged_over_the_trigger_data(
        workspace, people, travel, django_capture_on_commit_callbacks):
    campaign = make_broadcast(workspace)

    job = trigger(campaign, {
        "data": {"headline": "Sale", "text": "10% off"},
        "per_user_data": [{"id": "u1", "data": {"text": "20% off", "code": "A1"}},
                          {"email": "u2@example.com", "data": {"code": "B2"}},
                          {"id": "u3"}]}, django_capture_on_commit_callbacks)

    assert (job.audience, job.entered) == ("per_user_data", 3)
    assert entered(campaign) == {
        "u1": {"headline": "Sale", "text": "20% off", "code": "A1"},
        "u2": {"headline": "Sale", "text": "10% off", "code": "B2"},
        "u3": {"headline": "Sale", "text": "10% off"}}


def test_each_recipient_gets_their_own_message_with_the_trigger_data(
        workspace, people, travel, django_capture_on_commit_callbacks):
    campaign = make_broadcast(workspace)
    trigger(campaign, {"ids": ["u1", "u2"], "data": {"headline": "Hi", "text": "News"}},
            django_capture_on_commit_callbacks)

    engine.advance_due()

    deliveries = Delivery.objects.filter(campaign=campaign)
    assert set(deliveries.values_list("recipient", "state")) == {
        ("u1@example.com", "queued"), ("u2@example.com", "queued")}
    assert set(deliveries.values_list("cio_id", flat=True)) == {people[0].cio_id,
                                                                people[1].cio_id}
    journey = Journey.objects.get(campaign=campaign, person=people[0])
    run = engine.Run(journey, None, START)
    assert run.liquid_context()["trigger"] == {"headline": "Hi", "text": "News"}
    assert run.liquid_context()["customer"]["id"] == "u1"


def test_a_broadcasts_steps_act_on_the_recipient_without_naming_a_person(workspace):
    from campaigns.definition import DefinitionError

    campaign = make_broadcast(workspace, start=False)
    assert campaign.definition["exit"] == "never"
    assert "person" not in campaign.definition["workflow"]["steps"][0]

    with pytest.raises(DefinitionError) as raised:
        make_broadcast(workspace, start=False, workflow={"steps": [
            {**MAIL, "person": {"email": "{{trigger.email}}"}}]})
    assert [problem.place for problem in raised.value.problems] == ["workflow.steps[0].person"]


# --- the job: batches, progress, retries ---------------------------------------------------


def test_the_job_enters_in_batches_with_progress_and_a_retry_enters_nobody_twice(
        workspace, people, travel, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(BroadcastTrigger, "batch_size", 2)
    campaign = make_broadcast(workspace)
    job = trigger(campaign, {"data": {"headline": "Hi"}}, django_capture_on_commit_callbacks,
                  run=False)
    assert (job.state, job.total, job.done, job.progress) == ("pending", 5, 0, 0)

    broadcasts.run_trigger(job.pk, max_batches=1)
    job.refresh_from_db()
    assert (job.state, job.done, job.entered, job.progress) == ("running", 2, 2, 40)
    assert Journey.objects.filter(campaign=campaign).count() == 2

    jobs.fail(BroadcastTrigger, job.pk, "the worker died")
    job.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        assert broadcasts.retry_trigger(job) is True
    job.refresh_from_db()
    assert (job.state, job.done, job.entered, job.skipped) == ("done", 5, 5, 0)
    assert Journey.objects.filter(campaign=campaign).count() == 5

    # A batch replayed (its items handed out again) finds every journey entered already.
    for person in people[:2]:
        job.items.create(person_pk=person.pk)
    job.state = BroadcastTrigger.State.RUNNING
    job.save(update_fields=["state"])
    broadcasts.run_trigger(job.pk)
    job.refresh_from_db()
    assert (job.state, job.entered, job.skipped) == ("done", 5, 2)
    assert Journey.objects.filter(campaign=campaign).count() == 5


def test_a_campaign_stopped_midway_stops_the_job(
        workspace, people, travel, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(BroadcastTrigger, "batch_size", 2)
    campaign = make_broadcast(workspace)
    job = trigger(campaign, {}, django_capture_on_commit_callbacks, run=False)
    broadcasts.run_trigger(job.pk, max_batches=1)

    services.stop_campaign(campaign)
    broadcasts.run_trigger(job.pk)

    job.refresh_from_db()
    assert (job.state, job.entered) == ("failed", 2)
    assert "stopped" in job.error


def test_people_deleted_before_their_batch_are_skipped(
        workspace, people, travel, django_capture_on_commit_callbacks):
    from people import services as people_services

    campaign = make_broadcast(workspace)
    job = trigger(campaign, {}, django_capture_on_commit_callbacks, run=False)
    people_services.delete_person(workspace, people_services.Ref("id", "u1"))

    broadcasts.run_trigger(job.pk)

    job.refresh_from_db()
    assert (job.state, job.total, job.entered, job.skipped) == ("done", 5, 4, 1)
    assert "u1" not in entered(campaign)


# --- what a trigger may not do ---------------------------------------------------------------


def test_one_trigger_per_campaign_every_ten_seconds(workspace, people, travel,
                                                    django_capture_on_commit_callbacks):
    campaign = make_broadcast(workspace)
    other = make_broadcast(workspace)
    trigger(campaign, {}, django_capture_on_commit_callbacks)

    with pytest.raises(broadcasts.RateLimited):
        trigger(campaign, {}, django_capture_on_commit_callbacks)
    trigger(other, {}, django_capture_on_commit_callbacks)  # another campaign is free
    travel.shift(timedelta(seconds=10, milliseconds=1))
    trigger(campaign, {}, django_capture_on_commit_callbacks)

    assert BroadcastTrigger.objects.filter(campaign=campaign).count() == 2


def test_at_most_five_triggers_wait(workspace, people, travel,
                                    django_capture_on_commit_callbacks):
    campaign = make_broadcast(workspace)
    for _ in range(broadcasts.MAX_WAITING):
        trigger(campaign, {}, django_capture_on_commit_callbacks, run=False)
        travel.shift(timedelta(seconds=11))

    with pytest.raises(broadcasts.RateLimited, match="5 triggers"):
        trigger(campaign, {}, django_capture_on_commit_callbacks, run=False)


def test_only_a_running_api_triggered_campaign_can_be_triggered(
        workspace, people, django_capture_on_commit_callbacks):
    draft = make_broadcast(workspace, start=False)
    segment = create_segment(workspace, name="VIP")
    segments_campaign = services.create_campaign(workspace, {
        "name": "Welcome", "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "workflow": {"steps": [MAIL]}})

    with pytest.raises(broadcasts.TriggerRefused, match="draft, not running"):
        trigger(draft, {}, django_capture_on_commit_callbacks)
    with pytest.raises(broadcasts.TriggerRefused, match="not an API-triggered broadcast"):
        trigger(segments_campaign, {}, django_capture_on_commit_callbacks)
    assert not BroadcastTrigger.objects.exists()


@pytest.mark.parametrize(("body", "field"), [
    ({"data": "x"}, "data"),
    ({"data": {"text": "x" * 50_001}}, "data"),
    ({"ids": ["u1"], "emails": ["u1@example.com"]}, "emails"),
    ({"ids": []}, "ids"),
    ({"ids": [f"u{n}" for n in range(10_001)]}, "ids"),
    ({"ids": ["u1", {"no": 1}]}, "ids[1]"),
    ({"emails": ["not an email"]}, "emails[0]"),
    ({"per_user_data": [{"id": "u1", "email": "u1@example.com"}]}, "per_user_data[0]"),
    ({"per_user_data": [{"id": "u1", "data": [1]}]}, "per_user_data[0].data"),
    ({"recipients": {"attribute": {"field": "plan", "operator": "nope"}}}, "recipients"),
    ({"recipients": {"segment": {"id": 999_999}}}, "recipients"),
    ({"id_ignore_missing": "yes"}, "id_ignore_missing"),
    ({"data_file_url": "https://example.com/f.jsonl"}, "data_file_url"),
    ({"audience": "all"}, "audience"),
])
def test_a_bad_trigger_names_the_field(workspace, people, body, field,
                                       django_capture_on_commit_callbacks):
    campaign = make_broadcast(workspace)

    with pytest.raises(InvalidInput) as raised:
        trigger(campaign, body, django_capture_on_commit_callbacks)

    assert field in [problem.field for problem in raised.value.problems]
    assert not BroadcastTrigger.objects.exists()


# --- the admin ---------------------------------------------------------------------------


def test_support_staff_see_triggers_and_retry_a_stopped_one(
        client, workspace, people, travel, django_capture_on_commit_callbacks):
    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
    from django.urls import reverse

    from tests.factories import UserFactory

    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    campaign = make_broadcast(workspace)
    job = trigger(campaign, {"data": {"headline": "Hi"}}, django_capture_on_commit_callbacks,
                  run=False)
    jobs.fail(BroadcastTrigger, job.pk, "the worker died")

    listing = client.get(reverse("admin:campaigns_broadcasttrigger_changelist"))
    detail = client.get(reverse("admin:campaigns_broadcasttrigger_change", args=[job.pk]))
    assert listing.status_code == detail.status_code == 200
    assert "the worker died" in detail.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("admin:campaigns_broadcasttrigger_changelist"), {
            "action": "retry", "index": "0", "select_across": "0",
            ACTION_CHECKBOX_NAME: [str(job.pk)]})

    job.refresh_from_db()
    assert (job.state, job.entered) == ("done", 5)
