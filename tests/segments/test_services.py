"""Membership kept current: full recomputes, real-time re-evaluation, cascades, the log."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from people import services as people
from people.services import Ref
from segments import services, tasks
from segments.conditions import ConditionError
from segments.models import EvaluationTicket, Membership, MembershipChange, PendingEvaluation
from tests.factories import make_person

PRO = {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}}


@pytest.fixture
def live(django_capture_on_commit_callbacks):
    """Run after-commit work (tasks run inline in tests) as it is registered."""
    def run(action, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return action(*args, **kwargs)
    return run


def members(segment):
    return set(Membership.objects.filter(segment=segment)
               .values_list("person__customer_id", flat=True))


def log(segment):
    return [(change.person_id, change.change)
            for change in MembershipChange.objects.filter(segment=segment).order_by("pk")]


def test_new_data_driven_segment_is_computed_after_commit(workspace, live):
    ada = make_person(workspace, "ada", plan="pro")
    make_person(workspace, "bob", plan="free")

    segment = live(services.create_segment, workspace, name="Pro", conditions_tree=PRO)

    assert members(segment) == {"ada"}
    assert log(segment) == [(ada.pk, "entered")]
    segment.refresh_from_db()
    assert segment.computed_at is not None and segment.kind == "data_driven"


def test_invalid_conditions_create_nothing(workspace):
    with pytest.raises(ConditionError):
        services.create_segment(workspace, name="Bad",
                                conditions_tree={"attribute": {"field": "x", "operator": "nope"}})
    assert not workspace.segments.exists()


def test_identify_and_events_move_people_in_and_out(workspace, live):
    segment = live(services.create_segment, workspace, name="Active pro", conditions_tree={
        "and": [PRO, {"event": {"name": "login", "within_days": 7}}]})
    ada = live(make_person, workspace, "ada", plan="pro")
    assert members(segment) == set()

    live(people.track_event, workspace, Ref("id", "ada"), name="login")
    assert members(segment) == {"ada"}

    live(people.identify_person, workspace, Ref("id", "ada"), {"plan": "free"})
    assert members(segment) == set()
    assert log(segment) == [(ada.pk, "entered"), (ada.pk, "exited")]


def test_a_change_cascades_to_segments_that_reference_the_segment(workspace, live):
    pro = live(services.create_segment, workspace, name="Pro", conditions_tree=PRO)
    london_pro = live(services.create_segment, workspace, name="London pro", conditions_tree={
        "and": [{"segment": {"id": pro.pk}},
                {"attribute": {"field": "city", "operator": "eq", "value": "London"}}]})

    live(make_person, workspace, "ada", plan="pro", city="London")
    assert (members(pro), members(london_pro)) == ({"ada"}, {"ada"})

    live(people.identify_person, workspace, Ref("id", "ada"), {"plan": "free"})
    assert (members(pro), members(london_pro)) == (set(), set())


def test_recomputing_a_segment_recomputes_its_dependents(workspace, live):
    vip = live(services.create_segment, workspace, name="VIP")
    not_vip = live(services.create_segment, workspace, name="Not VIP",
                   conditions_tree={"not": {"segment": {"id": vip.pk}}})
    ada = make_person(workspace, "ada")
    live(services.recompute_segment, not_vip)
    assert members(not_vip) == {"ada"}

    live(services.add_to_segment, vip, [ada.pk])

    assert members(vip) == {"ada"}
    assert members(not_vip) == set()


def test_time_relative_segments_are_recomputed_on_schedule(workspace, live):
    make_person(workspace, "ada")
    people.track_event(workspace, Ref("id", "ada"), name="login")
    recent = live(services.create_segment, workspace, name="Recent",
                  conditions_tree={"event": {"name": "login", "within_days": 7}})
    static = live(services.create_segment, workspace, name="Static", conditions_tree=PRO)
    assert members(recent) == {"ada"}
    assert recent.time_relative and not static.time_relative

    with time_machine.travel(timezone.now() + timedelta(days=8)):
        assert live(tasks.recompute_time_relative_segments) == 1

    assert members(recent) == set()


def test_deleting_people_records_their_exits(workspace, live):
    segment = live(services.create_segment, workspace, name="Pro", conditions_tree=PRO)
    ada = live(make_person, workspace, "ada", plan="pro")
    manual = services.create_segment(workspace, name="Manual")
    services.add_to_segment(manual, [ada.pk])

    people.delete_people(workspace, [ada], suppress=True)

    assert not Membership.objects.exists()
    assert log(segment)[-1] == (ada.pk, "exited")
    assert log(manual)[-1] == (ada.pk, "exited")


def test_merge_moves_manual_segments(workspace):
    manual = services.create_segment(workspace, name="Beta testers")
    primary = make_person(workspace, "p1")
    secondary = make_person(workspace, "s1")
    services.add_to_segment(manual, [secondary.pk])

    people.merge_people(workspace, primary=Ref("id", "p1"), secondary=Ref("id", "s1"))

    assert members(manual) == {"p1"}
    assert (primary.pk, "entered") in log(manual)


def test_manual_segments_take_people_directly(workspace, other_workspace):
    manual = services.create_segment(workspace, name="Manual")
    ada = make_person(workspace, "ada")
    theirs = make_person(other_workspace, "ada")

    assert services.add_to_segment(manual, [ada.pk, theirs.pk]) == 1
    assert services.add_to_segment(manual, [ada.pk]) == 0
    assert members(manual) == {"ada"}
    assert services.remove_from_segment(manual, [ada.pk]) == 1
    assert log(manual) == [(ada.pk, "entered"), (ada.pk, "exited")]

    data_driven = services.create_segment(workspace, name="Pro", conditions_tree=PRO)
    with pytest.raises(ValueError):
        services.add_to_segment(data_driven, [ada.pk])


def test_archived_segments_stop_changing(workspace, live):
    segment = live(services.create_segment, workspace, name="Pro", conditions_tree=PRO)
    services.set_archived(segment, True)
    live(make_person, workspace, "ada", plan="pro")
    assert members(segment) == set()

    live(services.set_archived, segment, False)
    assert members(segment) == {"ada"}


def test_a_burst_of_changes_enqueues_one_evaluation(workspace, live):
    segment = live(services.create_segment, workspace, name="Pro", conditions_tree=PRO)
    ada = make_person(workspace, "ada", plan="pro")
    bob = make_person(workspace, "bob", plan="pro")
    EvaluationTicket.objects.update_or_create(workspace=workspace,
                                              defaults={"queued_at": timezone.now()})

    assert services.note_changed_people(workspace.pk, [ada.pk]) is True
    assert services.note_changed_people(workspace.pk, [ada.pk, bob.pk]) is True
    assert services.queue_evaluation(workspace.pk) is False  # a task is queued already
    assert PendingEvaluation.objects.count() == 2
    assert members(segment) == set()

    changes = services.evaluate_pending(workspace.pk)

    assert changes.entered == 2 and members(segment) == {"ada", "bob"}
    assert not PendingEvaluation.objects.exists()
    assert not EvaluationTicket.objects.get(workspace=workspace).queued


def test_workspaces_without_data_driven_segments_queue_nothing(workspace):
    ada = make_person(workspace, "ada")
    assert services.note_changed_people(workspace.pk, [ada.pk]) is False
    assert not PendingEvaluation.objects.exists()


def test_evaluating_people_reads_all_segments_at_once(
    workspace, live, django_assert_max_num_queries
):
    for number in range(10):
        live(services.create_segment, workspace, name=f"S{number}", conditions_tree={
            "attribute": {"field": "score", "operator": "gt", "value": number}})
    ada = make_person(workspace, "ada", score=5)

    # A fixed handful, whatever the number of segments: the locks on the person and on the
    # segments, the memberships, one query for every segment, the writes and the log.
    with django_assert_max_num_queries(12):
        changes = services.evaluate_people(workspace, [ada.pk])

    assert changes.entered == 5


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements: PostgreSQL")
@pytest.mark.parametrize("prepared", [True, False])
def test_evaluating_people_plans_its_statement_once(workspace, live, settings, prepared):
    settings.ENGAGE_PREPARED_STATEMENTS = prepared
    live(services.create_segment, workspace, name="Pro", conditions_tree=PRO)
    live(services.create_segment, workspace, name="Active", conditions_tree={
        "event": {"name": "login", "count": {"operator": "gte", "value": 2}, "within_days": 7}})
    people = [make_person(workspace, f"p{number}", plan="pro") for number in range(4)]

    for person in people:
        services.evaluate_people(workspace, [person.pk])

    with connection.cursor() as cursor:
        cursor.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                       "WHERE statement LIKE 'SELECT people_person.id, CASE%%'")
        plans = cursor.fetchall()
    # Prepared: one statement, planned once for every person; else nothing is kept.
    assert plans == ([(4, 0)] if prepared else [])
    assert Membership.objects.filter(segment__name="Pro").count() == 4


def test_preview_counts_and_samples_an_unsaved_tree(workspace):
    for number in range(15):
        make_person(workspace, f"u{number}", plan="pro" if number % 3 else "free")

    result = services.preview(workspace, PRO, sample_size=4)

    assert result.count == 10
    assert [p.customer_id for p in result.sample] == ["u14", "u13", "u11", "u10"]
    assert not workspace.segments.exists()
    nobody = services.preview(workspace, {"attribute": {"field": "plan", "operator": "eq",
                                                        "value": "enterprise"}})
    assert (nobody.count, nobody.sample) == (0, [])
    with pytest.raises(ConditionError):
        services.preview(workspace, {"attribute": {"field": "plan"}})
