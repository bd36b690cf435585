"""The engine's batches: groups of journeys taking a step together, as sets."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from campaigns import engine, services
from campaigns.models import Campaign, Journey, JourneyStep
from people.models import Activity, Event, Person
from segments.services import create_segment
from tests.factories import make_person

pytestmark = pytest.mark.django_db
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
PRO = {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}}


@pytest.fixture
def travel():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def running(workspace, steps, **extra) -> Campaign:
    segment = create_segment(workspace, name="Everyone")
    campaign = services.create_campaign(workspace, {
        "name": "Batch", "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "exit": "never", "workflow": {"steps": steps}, **extra})
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    campaign.refresh_from_db()
    return campaign


def enter(campaign, people) -> list[Journey]:
    engine.enter(campaign, [engine.Entry(f"k{person.pk}", person.pk, person.cio_id)
                            for person in people])
    return list(Journey.objects.filter(campaign=campaign).order_by("pk"))


def path_of(journey) -> list[tuple[str, str]]:
    return list(JourneyStep.objects.filter(journey=journey).order_by("seq")
                .values_list("step_id", "outcome"))


def branch_update_delay() -> list[dict]:
    return [
        {"id": "b", "type": "branch", "condition": PRO, "paths": [
            {"key": "true", "steps": [{"id": "tag", "type": "update_attributes",
                                       "set": {"stage": "engaged"}, "unset": []}]},
            {"key": "false", "steps": []}]},
        {"id": "wait", "type": "delay", "duration": {"hours": 1}},
        {"id": "done", "type": "update_attributes", "set": {"stage": "done"}, "unset": []}]


def test_a_group_with_mixed_outcomes_takes_each_its_own_way(workspace, travel):
    campaign = running(workspace, [
        {"id": "b", "type": "branch", "condition": PRO, "paths": [
            {"key": "true", "steps": [{"id": "hi", "type": "update_attributes",
                                       "set": {"greeting": "Hi {{customer.first_name}}"},
                                       "unset": ["old"]}]},
            {"key": "false", "steps": [{"id": "bye", "type": "exit"}]}]},
        {"id": "wait", "type": "delay", "duration": {"hours": 1}}])
    ada = make_person(workspace, "ada", plan="pro", first_name="Ada", old="x")
    same = make_person(workspace, "same", plan="pro", first_name="Sam", greeting="Hi Sam")
    nameless = make_person(workspace, "nameless", plan="pro")  # the template fails
    free = make_person(workspace, "free", plan="free")
    journeys = dict(zip(["ada", "same", "nameless", "free"],
                        enter(campaign, [ada, same, nameless, free]), strict=True))

    assert engine.advance_due() == 4

    assert path_of(journeys["ada"]) == [("b", "path:true"), ("hi", "done"),
                                        ("wait", "waiting")]
    assert path_of(journeys["same"]) == [("b", "path:true"), ("hi", "done:unchanged"),
                                         ("wait", "waiting")]
    nameless_path = path_of(journeys["nameless"])
    assert nameless_path[:2] == [("b", "path:true"), ("hi", "failed")]
    assert nameless_path[2] == ("wait", "waiting")  # a failed update is recorded; it goes on
    assert path_of(journeys["free"]) == [("b", "path:false"), ("bye", "exited")]
    ada.refresh_from_db()
    assert ada.attributes == {"plan": "pro", "first_name": "Ada", "greeting": "Hi Ada"}
    assert list(Activity.objects.filter(cio_id=ada.cio_id,
                                        kind=Activity.Kind.ATTRIBUTES_CHANGED)
                .order_by("pk").values_list("data", flat=True))[-1] == {
        "changed": {"greeting": "Hi Ada", "old": None}}
    states = {name: (j.state, j.step_id, j.next_run_at, j.seq)
              for name, j in ((name, Journey.objects.get(pk=j.pk))
                              for name, j in journeys.items())}
    assert states == {"ada": ("active", "wait", START + timedelta(hours=1), 3),
                      "same": ("active", "wait", START + timedelta(hours=1), 3),
                      "nameless": ("active", "wait", START + timedelta(hours=1), 3),
                      "free": ("exited", "bye", None, 2)}


def test_a_failing_journey_inside_a_batch_is_redone_alone(workspace, travel, monkeypatch):
    campaign = running(workspace, branch_update_delay())
    crowd = [make_person(workspace, f"p{n}", plan="pro") for n in range(5)]
    journeys = enter(campaign, crowd)
    real = engine.STEP_RUNNERS["update_attributes"]

    def broken_batch(runs, step):
        raise RuntimeError("a fault in the batch")

    def broken_for_p2(run, step):
        if run.person.customer_id == "p2":
            raise RuntimeError("a fault in one journey")
        return real(run, step)

    monkeypatch.setitem(engine.BATCH_RUNNERS, "update_attributes", broken_batch)
    monkeypatch.setitem(engine.STEP_RUNNERS, "update_attributes", broken_for_p2)
    assert engine.advance_due() == 5

    for person, journey in zip(crowd, journeys, strict=True):
        person.refresh_from_db()
        journey.refresh_from_db()
        if person.customer_id == "p2":
            # The branch, taken in the batch, stands; the update was rolled back alone.
            assert path_of(journey) == [("b", "path:true")]
            assert (journey.step_id, journey.step_data) == ("tag", {"failures": 1})
            assert journey.next_run_at == START + engine.RETRY_AFTER_ERROR
            assert "stage" not in person.attributes
        else:
            assert path_of(journey) == [("b", "path:true"), ("tag", "done"),
                                        ("wait", "waiting")]
            assert person.attributes["stage"] == "engaged"

    monkeypatch.undo()
    for later in (engine.RETRY_AFTER_ERROR, timedelta(hours=1),
                  engine.RETRY_AFTER_ERROR + timedelta(hours=1)):
        travel.move_to(START + later)
        while engine.advance_due():
            pass
    assert Journey.objects.filter(campaign=campaign, state="finished").count() == 5
    assert Person.objects.filter(attributes__stage="done").count() == 5
    assert [row[0] for row in path_of(journeys[2])] == ["b", "tag", "wait", "wait", "done"]


def test_a_replayed_batch_repeats_nothing(workspace, travel, monkeypatch):
    campaign = running(workspace, [
        {"id": "b", "type": "branch", "condition": PRO, "paths": [
            {"key": "true", "steps": [{"id": "n", "type": "update_attributes",
                                       "set": {"visits": "{{customer.visits | plus: 1}}"},
                                       "unset": []}]},
            {"key": "false", "steps": []}]},
        {"id": "e", "type": "create_event", "name": "passed"}])
    crowd = [make_person(workspace, f"p{n}", plan="pro", visits=1) for n in range(4)]
    journeys = enter(campaign, crowd)
    real_save = engine.save_runs

    def save_then_die(runs):
        real_save(runs)
        raise SystemExit("the worker dies before the batch commits")

    monkeypatch.setattr(engine, "save_runs", save_then_die)
    with pytest.raises(SystemExit):
        engine.advance_due()
    assert not JourneyStep.objects.exists()  # the whole batch rolled back
    assert {person.attributes["visits"] for person in Person.objects.all()} == {1}

    monkeypatch.undo()
    assert engine.advance_due() == 4  # the batch again, from the start
    assert engine.advance_due() == 0  # and once more: nothing left to do

    assert {person.attributes["visits"] for person in Person.objects.all()} == {"2"}
    assert Event.objects.filter(name="passed").count() == 4
    for journey in journeys:
        assert path_of(journey) == [("b", "path:true"), ("n", "done"), ("e", "done")]


def test_a_batch_yields_after_max_steps_at_once(workspace, travel, monkeypatch):
    monkeypatch.setattr(engine, "MAX_STEPS_AT_ONCE", 3)
    splits = [{"id": f"s{n}", "type": "branch", "condition": PRO, "paths": [
        {"key": "true", "steps": []}, {"key": "false", "steps": []}]} for n in range(4)]
    campaign = running(workspace, [*splits, {"id": "e", "type": "create_event", "name": "x"}])
    (journey,) = enter(campaign, [make_person(workspace, "ada")])

    assert engine.advance_due() == 1
    journey.refresh_from_db()
    assert (journey.step_id, journey.seq, journey.next_run_at) == ("s3", 3, START)

    assert engine.advance_due() == 1  # the last branch in the batch, the event alone
    journey.refresh_from_db()
    assert (journey.state, journey.seq) == ("finished", 5)


def test_a_segment_goal_met_on_entry_ends_journeys_in_the_batch(workspace, travel):
    goal = create_segment(workspace, name="Paid")
    campaign = running(workspace, branch_update_delay(), exit="goal",
                       goal={"enters_segment": goal.pk})
    paid, unpaid = make_person(workspace, "paid"), make_person(workspace, "unpaid")
    from segments.services import add_to_segment

    add_to_segment(goal, [paid.pk])
    paid_journey, unpaid_journey = enter(campaign, [paid, unpaid])

    engine.advance_due()

    paid_journey.refresh_from_db()
    assert (paid_journey.state, paid_journey.exit_reason) == ("exited", "goal_met_on_entry")
    assert path_of(unpaid_journey) == [("b", "path:false"), ("wait", "waiting")]


@pytest.mark.parametrize("size", [4, 60])
def test_the_queries_of_a_batch_do_not_grow_with_its_journeys(
        workspace, travel, size, django_assert_max_num_queries):
    campaign = running(workspace, branch_update_delay())
    crowd = [make_person(workspace, f"p{n}", plan="pro" if n % 2 else "free")
             for n in range(size)]
    enter(campaign, crowd)

    # Whatever the size: due? (SQLite only), the batch's savepoint, claim, campaigns,
    # their workspaces; the branch (savepoint, one query, release); the update
    # (savepoint; on PostgreSQL one statement locking, writing and logging, on SQLite
    # three; segments owed; release); the delay (none); step rows and moves (one
    # statement on PostgreSQL, two on SQLite), stopping campaigns.
    with django_assert_max_num_queries(14 if connection.vendor == "postgresql" else 18):
        assert engine.advance_due(limit=size) == size

    assert JourneyStep.objects.count() == size * 2 + size // 2
    assert Person.objects.filter(attributes__stage="engaged").count() == size // 2


def test_step_rows_and_moves_are_written_as_the_models_read_them(workspace, travel):
    moment = START + timedelta(microseconds=123_456)
    campaign = running(workspace, [
        {"id": "b", "type": "branch", "condition": PRO, "paths": [
            {"key": "true", "steps": [{"id": "wait", "type": "delay",
                                       "duration": {"minutes": 90}}]},
            {"key": "false", "steps": [{"id": "bye", "type": "exit"}]}]}])
    waiting, leaving = enter(campaign, [make_person(workspace, "ada", plan="pro"),
                                        make_person(workspace, "bob", plan="free")])

    travel.move_to(moment)
    assert engine.advance_due() == 2

    waiting.refresh_from_db()
    until = moment + timedelta(minutes=90)
    assert (waiting.state, waiting.step_id, waiting.seq) == ("active", "wait", 2)
    assert (waiting.next_run_at, waiting.ended_at) == (until, None)
    assert waiting.step_data == {"until": until.isoformat(), "waiting": True}
    leaving.refresh_from_db()
    assert (leaving.state, leaving.exit_reason, leaving.step_id) == ("exited", "exit_step", "bye")
    assert (leaving.next_run_at, leaving.ended_at, leaving.step_data) == (None, moment, {})
    rows = list(JourneyStep.objects.filter(journey__in=[waiting, leaving])
                .order_by("journey_id", "seq")
                .values_list("journey_id", "seq", "step_id", "step_type", "outcome", "data",
                             "created_at"))
    assert rows == [
        (waiting.pk, 1, "b", "branch", "path:true", {}, moment),
        (waiting.pk, 2, "wait", "delay", "waiting", {"until": until.isoformat()}, moment),
        (leaving.pk, 1, "b", "branch", "path:false", {}, moment),
        (leaving.pk, 2, "bye", "exit", "exited", {"reason": "exit_step"}, moment)]
