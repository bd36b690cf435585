"""The journey engine: entering once, steps with time travel, effects exactly once."""

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection, connections
from django.utils import timezone

from campaigns import engine, services, tasks
from campaigns.models import Campaign, Delivery, Journey, JourneyStep
from people.models import Event, Person, Suppression
from segments.services import add_to_segment, create_segment, remove_from_segment
from tests.factories import make_person

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday


@pytest.fixture
def travel():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def vip(workspace):
    return create_segment(workspace, name="VIP")


def running(workspace, segment, steps, **extra) -> Campaign:
    campaign = services.create_campaign(workspace, {
        "name": "Journey", "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "workflow": {"steps": steps}, **extra})
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    campaign.refresh_from_db()
    return campaign


def enter(campaign, *people, key="k", **context) -> list[Journey]:
    engine.enter(campaign, [engine.Entry(f"{key}:{person.pk}", person.pk, person.cio_id,
                                         context) for person in people])
    return list(Journey.objects.filter(campaign=campaign).order_by("pk"))


def advance_all():
    while engine.advance_due():
        pass


def path_of(journey) -> list[tuple[str, str]]:
    return list(JourneyStep.objects.filter(journey=journey).order_by("seq")
                .values_list("step_id", "outcome"))


@pytest.mark.django_db
def test_entering_is_idempotent_per_key(workspace, vip, travel):
    campaign = running(workspace, vip, [])
    ada = make_person(workspace, "ada")

    assert engine.enter(campaign, [engine.Entry("seg:1", ada.pk, ada.cio_id)]) == 1
    assert engine.enter(campaign, [engine.Entry("seg:1", ada.pk, ada.cio_id),
                                   engine.Entry("seg:2", ada.pk, ada.cio_id)]) == 1

    assert Journey.objects.filter(campaign=campaign).count() == 2


@pytest.mark.django_db
def test_a_delay_is_data_and_the_step_after_it_runs_once_when_due(workspace, vip, travel):
    campaign = running(workspace, vip, [
        {"id": "wait", "type": "delay", "duration": {"days": 7}},
        {"id": "tag", "type": "update_attributes",
         "set": {"stage": "{{ event.stage | default: 'nudged' }}",
                 "greeting": "Hi {{customer.first_name}}"}}])
    ada = make_person(workspace, "ada", first_name="Ada")
    (journey,) = enter(campaign, ada, event={"data": {"stage": "trial"}})

    advance_all()
    journey.refresh_from_db()
    assert (journey.step_id, journey.next_run_at) == ("wait", START + timedelta(days=7))

    travel.move_to(START + timedelta(days=7) - timedelta(seconds=1))
    assert engine.advance_due() == 0
    travel.move_to(START + timedelta(days=7))
    advance_all()

    journey.refresh_from_db()
    ada.refresh_from_db()
    assert ada.attributes["stage"] == "trial" and ada.attributes["greeting"] == "Hi Ada"
    assert (journey.state, journey.exit_reason) == ("finished", "finished")
    assert path_of(journey) == [("wait", "waiting"), ("wait", "done"), ("tag", "done")]
    assert engine.advance_due() == 0  # nothing is done twice


@pytest.mark.django_db
def test_branches_take_their_path_and_rejoin_after_the_block(workspace, vip, travel):
    campaign = running(workspace, vip, [
        {"id": "b", "type": "branch",
         "condition": {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}},
         "paths": [{"key": "true", "steps": [{"id": "pro", "type": "create_event",
                                               "name": "pro_path"}]},
                   {"key": "false", "steps": []}]},
        {"id": "after", "type": "create_event", "name": "after_branch"}])
    pro, free = make_person(workspace, "pro", plan="pro"), make_person(workspace, "free")
    pro_journey, free_journey = enter(campaign, pro, free)

    advance_all()

    assert path_of(pro_journey) == [("b", "path:true"), ("pro", "done"), ("after", "done")]
    assert path_of(free_journey) == [("b", "path:false"), ("after", "done")]
    assert sorted(Event.objects.values_list("person__customer_id", "name")) == [
        ("free", "after_branch"), ("pro", "after_branch"), ("pro", "pro_path")]


@pytest.mark.django_db
def test_a_random_split_follows_its_weights_and_chooses_once(workspace, vip, travel):
    campaign = running(workspace, vip, [{"id": "split", "type": "random_split", "paths": [
        {"key": "A", "weight": 80, "steps": []}, {"key": "B", "weight": 20, "steps": []}]}])
    crowd = [make_person(workspace, f"p{n}") for n in range(200)]
    journeys = enter(campaign, *crowd)

    advance_all()

    chosen = [path_of(journey)[0][1] for journey in journeys]
    assert 130 < chosen.count("path:A") < 190 and chosen.count("path:B") > 10
    paths = campaign.definition["workflow"]["steps"][0]["paths"]
    assert chosen == [f"path:{engine.choose_path(j.pk, 'split', paths)}" for j in journeys]


@pytest.mark.django_db
def test_wait_until_goes_on_when_met_or_at_the_deadline(workspace, vip, travel):
    campaign = running(workspace, vip, [{
        "id": "w", "type": "wait_until", "max": {"days": 3},
        "condition": {"attribute": {"field": "paid", "operator": "eq", "value": True}},
        "paths": [{"key": "met", "steps": []}, {"key": "max_time", "steps": []}]}])
    payer, idler = make_person(workspace, "payer"), make_person(workspace, "idler")
    payer_journey, idler_journey = enter(campaign, payer, idler)
    advance_all()

    travel.move_to(START + timedelta(hours=1))
    make_person(workspace, "payer", paid=True)
    travel.move_to(START + engine.WAIT_UNTIL_RECHECK + timedelta(hours=1))
    advance_all()
    assert path_of(payer_journey) == [("w", "waiting"), ("w", "path:met")]
    assert path_of(idler_journey) == [("w", "waiting")]

    travel.move_to(START + timedelta(days=3))
    advance_all()
    assert path_of(idler_journey) == [("w", "waiting"), ("w", "path:max_time")]
    assert Journey.objects.filter(state="finished").count() == 2


@pytest.mark.parametrize("now, days, start, end, zone, opening", [
    # Inside a weekday window: go on.
    ("2026-03-02T10:00:00+01:00", ["mon"], "09:00", "17:00", "Europe/Berlin", None),
    # After it closes on Friday: next Monday.
    ("2026-03-06T18:00:00+01:00", ["mon", "tue", "wed", "thu", "fri"], "09:00", "17:00",
     "Europe/Berlin", "2026-03-09T09:00:00+01:00"),
    # An overnight window still open after midnight.
    ("2026-03-03T01:00:00+00:00", ["mon"], "22:00", "02:00", "UTC", None),
    # A local time the spring DST change skips opens at the end of the gap.
    ("2026-03-28T12:00:00+01:00", ["sun"], "02:30", "04:00", "Europe/Berlin",
     "2026-03-29T03:30:00+02:00"),
])
def test_time_windows(now, days, start, end, zone, opening):
    found = engine.next_window_opening(datetime.fromisoformat(now), days, start, end,
                                       ZoneInfo(zone))
    assert found == (datetime.fromisoformat(opening) if opening else None)


@pytest.mark.django_db
def test_a_time_window_in_the_persons_zone(workspace, vip, travel):
    campaign = running(workspace, vip, [{"id": "tw", "type": "time_window", "days": ["mon"],
                                         "start": "09:00", "end": "10:00",
                                         "timezone": "person",
                                         "fallback_timezone": "America/New_York"}])
    berlin = make_person(workspace, "berlin", timezone="Europe/Berlin")  # 09:00 there now
    unknown = make_person(workspace, "unknown", timezone="Mars/Olympus")
    berlin_journey, unknown_journey = enter(campaign, berlin, unknown)

    advance_all()

    berlin_journey.refresh_from_db()
    unknown_journey.refresh_from_db()
    assert berlin_journey.state == "finished"
    assert unknown_journey.next_run_at == datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # 09:00 EST


@pytest.mark.django_db
def test_messages_become_deliveries_and_respect_unsubscribes(workspace, vip, travel):
    mail = {"type": "email", "from": "a@example.com", "subject": "Hi", "body_html": "x"}
    campaign = running(workspace, vip, [
        {"id": "m1", **mail},
        {"id": "m2", **mail, "sending": "draft"},
        {"id": "m3", **mail, "send_to_unsubscribed": True},
        {"id": "hook", "type": "webhook", "url": "https://example.com/hook"}], exit="never")
    ada = make_person(workspace, "ada", email="ada@example.com")
    bob = make_person(workspace, "bob", email="bob@example.com", unsubscribed=True)
    ada_journey, bob_journey = enter(campaign, ada, bob)

    advance_all()

    states = dict(Delivery.objects.filter(journey=ada_journey)
                  .values_list("step_id", "state"))
    assert states == {"m1": "queued", "m2": "drafted", "m3": "queued", "hook": "queued"}
    assert dict(Delivery.objects.filter(journey=bob_journey).values_list("step_id", "state")) \
        == {"m1": "skipped", "m2": "skipped", "m3": "queued", "hook": "queued"}
    ada_journey.refresh_from_db()
    # A webhook's answer may change what follows: the journey waits for it.
    assert (ada_journey.step_id, ada_journey.next_run_at, ada_journey.state) == (
        "hook", None, "active")
    assert Delivery.objects.get(journey=ada_journey, step_id="m1").recipient == "ada@example.com"


@pytest.mark.django_db
def test_people_who_stop_matching_exit_before_the_next_message(workspace, vip, travel):
    campaign = running(workspace, vip, [
        {"id": "wait", "type": "delay", "duration": {"hours": 1}},
        {"id": "mail", "type": "email", "from": "a@example.com", "subject": "Hi",
         "body_html": "x"}])
    stays, leaves = make_person(workspace, "stays"), make_person(workspace, "leaves")
    add_to_segment(vip, [stays.pk, leaves.pk])
    stays_journey, leaves_journey = enter(campaign, stays, leaves)
    advance_all()

    remove_from_segment(vip, [leaves.pk])
    travel.move_to(START + timedelta(hours=1))
    advance_all()

    stays_journey.refresh_from_db()
    leaves_journey.refresh_from_db()
    assert stays_journey.state == "finished"
    assert (leaves_journey.state, leaves_journey.exit_reason) == ("exited", "unmatched")
    assert list(Delivery.objects.values_list("journey", flat=True)) == [stays_journey.pk]


@pytest.mark.django_db
def test_people_who_stop_matching_exit_before_a_webhook(workspace, vip, travel):
    # The seed's recipe: a webhook that deletes people must not reach those who came back.
    campaign = running(workspace, vip, [
        {"id": "wait", "type": "delay", "duration": {"days": 7}},
        {"id": "delete", "type": "webhook", "method": "DELETE",
         "url": "https://example.com/customers/{{customer.id}}"}], exit="unmatch")
    stays, leaves = make_person(workspace, "stays"), make_person(workspace, "leaves")
    add_to_segment(vip, [stays.pk, leaves.pk])
    stays_journey, leaves_journey = enter(campaign, stays, leaves)
    advance_all()

    remove_from_segment(vip, [leaves.pk])
    travel.move_to(START + timedelta(days=7))
    advance_all()

    leaves_journey.refresh_from_db()
    assert (leaves_journey.state, leaves_journey.exit_reason) == ("exited", "unmatched")
    assert list(Delivery.objects.values_list("journey", "step_id")) == [
        (stays_journey.pk, "delete")]


@pytest.mark.django_db
def test_a_webhook_is_skipped_for_people_outside_the_filters(workspace, vip, travel):
    campaign = running(workspace, vip, [
        {"id": "hook", "type": "webhook", "url": "https://example.com/hook"}],
        exit="never", filters={"attribute": {"field": "plan", "operator": "eq",
                                             "value": "pro"}})
    ada = make_person(workspace, "ada", plan="free")
    (journey,) = enter(campaign, ada)
    advance_all()

    delivery = Delivery.objects.get(journey=journey)
    assert (delivery.state, delivery.reason) == (
        "skipped", "the person no longer matches the campaign's filters")
    journey.refresh_from_db()
    assert journey.state == "finished"


@pytest.mark.django_db
def test_data_steps_through_the_people_services(workspace, vip, travel):
    club = create_segment(workspace, name="Club")
    campaign = running(workspace, vip, [
        {"id": "join", "type": "segment_membership", "action": "add", "segment": club.pk},
        {"id": "evt", "type": "create_event", "name": "joined_{{customer.plan}}",
         "data": {"by": "{{campaign.name}}"}},
        {"id": "bye", "type": "exit"},
        {"id": "never", "type": "create_event", "name": "never"}])
    ada = make_person(workspace, "ada", plan="pro")
    (journey,) = enter(campaign, ada)

    advance_all()

    assert club.memberships.filter(person=ada).exists()
    assert list(Event.objects.values_list("name", "data")) == [("joined_pro", {"by": "Journey"})]
    journey.refresh_from_db()
    assert (journey.state, journey.exit_reason) == ("exited", "exit_step")


@pytest.mark.django_db
def test_a_template_error_is_recorded_and_the_journey_goes_on(workspace, vip, travel):
    campaign = running(workspace, vip, [
        {"id": "bad", "type": "update_attributes", "set": {"x": "{{ customer.nope }}"}},
        {"id": "next", "type": "create_event", "name": "went_on"}])
    (journey,) = enter(campaign, make_person(workspace, "ada"))

    advance_all()

    steps = list(JourneyStep.objects.filter(journey=journey).order_by("seq")
                 .values_list("step_id", "outcome", "data"))
    assert steps[0][:2] == ("bad", "failed") and "customer.nope is undefined" in \
        steps[0][2]["reason"]
    assert steps[1][:2] == ("next", "done")


@pytest.mark.django_db
@pytest.mark.parametrize("suppress", [False, True])
def test_a_delete_step_deletes_through_the_one_deletion_service(workspace, vip, travel,
                                                                suppress):
    campaign = running(workspace, vip, [
        {"id": "del", "type": "delete_person", "suppress": suppress}])
    ada = make_person(workspace, "ada", email="ada@example.com")
    (journey,) = enter(campaign, ada)

    advance_all()
    connection.check_constraints()

    assert not Person.objects.exists()
    assert Suppression.objects.count() == (2 if suppress else 0)
    journey.refresh_from_db()
    assert (journey.state, journey.exit_reason, journey.person_id) == (
        "exited", "deleted_by_campaign", None)
    assert journey.cio_id == (None if suppress else ada.cio_id)
    assert path_of(journey) == [("del", "exited")]


@pytest.mark.django_db
def test_one_failing_journey_does_not_stop_the_others(workspace, vip, travel, monkeypatch):
    campaign = running(workspace, vip, [{"id": "e", "type": "create_event", "name": "x"}])
    ada, bob = make_person(workspace, "ada"), make_person(workspace, "bob")
    ada_journey, bob_journey = enter(campaign, ada, bob)
    real = engine.STEP_RUNNERS["create_event"]

    def broken_for_ada(run, step):
        if run.person.customer_id == "ada":
            raise RuntimeError("a fault")
        return real(run, step)

    monkeypatch.setitem(engine.STEP_RUNNERS, "create_event", broken_for_ada)
    advance_all_once = engine.advance_due()

    assert advance_all_once == 2
    ada_journey.refresh_from_db()
    assert ada_journey.state == "active" and ada_journey.next_run_at > START
    assert not JourneyStep.objects.filter(journey=ada_journey).exists()  # rolled back alone
    assert list(Event.objects.values_list("person__customer_id", flat=True)) == ["bob"]

    monkeypatch.setitem(engine.STEP_RUNNERS, "create_event", real)
    travel.move_to(START + engine.RETRY_AFTER_ERROR)
    advance_all()
    assert Event.objects.count() == 2


@pytest.mark.django_db
def test_journeys_of_a_stopped_campaign_exit_when_next_due(workspace, vip, travel):
    campaign = running(workspace, vip, [{"id": "e", "type": "create_event", "name": "x"}])
    (journey,) = enter(campaign, make_person(workspace, "ada"))
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.STOPPED)

    advance_all()

    journey.refresh_from_db()
    assert (journey.state, journey.exit_reason) == ("exited", "campaign_stopped")
    assert not Event.objects.exists()


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="workers racing for journeys need row locks (PostgreSQL)")
@pytest.mark.django_db(transaction=True)
def test_two_workers_never_apply_one_step_twice(workspace, vip):
    campaign = running(workspace, vip, [
        {"id": "e1", "type": "create_event", "name": "first"},
        {"id": "u", "type": "update_attributes", "set": {"seen": "yes"}},
        {"id": "e2", "type": "create_event", "name": "second"}])
    crowd = [make_person(workspace, f"p{n}") for n in range(300)]
    enter(campaign, *crowd)
    errors = []

    def worker():
        try:
            while engine.advance_due(limit=25):
                pass
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors
    assert Journey.objects.filter(state="finished").count() == 300
    assert Event.objects.filter(name="first").count() == 300
    assert Event.objects.filter(name="second").count() == 300
    assert JourneyStep.objects.count() == 900
    assert timezone.now()  # the database is still answering after the race


@pytest.mark.django_db
def test_the_journey_sweeper_also_resumes_jobs_whose_worker_died(
        workspace, django_capture_on_commit_callbacks):
    from engage import jobs
    from tests.chores.models import Chore

    for number in range(3):
        make_person(workspace, f"u{number}")
    with django_capture_on_commit_callbacks(execute=False):
        chore = jobs.start(Chore(description="everyone"), Person.objects.all())
    died_at = timezone.now() - jobs.LEASE - timedelta(seconds=1)  # its lease has lapsed
    Chore.objects.filter(pk=chore.pk).update(state="running", lease_owner="killed",
                                             updated_at=died_at,
                                             leased_until=died_at + jobs.LEASE)

    with django_capture_on_commit_callbacks(execute=True):  # the resumed task runs inline
        tasks.advance_journeys(seconds=0)

    chore.refresh_from_db()
    assert (chore.state, chore.done) == ("done", 3)


@pytest.mark.django_db
def test_a_grace_period_lets_people_match_again_before_the_message(workspace, vip, travel):
    mail = {"type": "email", "from": "a@example.com", "subject": "Hi", "body_html": "x"}
    campaign = running(workspace, vip, [{"id": "mail", **mail}],
                       grace_period={"hours": 2})
    back, gone = make_person(workspace, "back"), make_person(workspace, "gone")
    back_journey, gone_journey = enter(campaign, back, gone)  # neither is in the segment now

    advance_all()
    for journey in (back_journey, gone_journey):
        journey.refresh_from_db()
        assert (journey.state, journey.step_id) == ("active", "mail")  # waiting in grace
    add_to_segment(vip, [back.pk])
    travel.move_to(START + timedelta(hours=2))
    advance_all()

    back_journey.refresh_from_db()
    gone_journey.refresh_from_db()
    assert back_journey.state == "finished"
    assert (gone_journey.state, gone_journey.exit_reason) == ("exited", "unmatched")
    assert list(Delivery.objects.values_list("journey", flat=True)) == [back_journey.pk]
