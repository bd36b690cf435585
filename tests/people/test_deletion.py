"""Deleting people, suppressing identifiers, merging, and deletion jobs."""

import pytest
from django.db import connection
from django.dispatch import receiver
from django.test.utils import CaptureQueriesContext

from people import services, signals
from people.models import (
    Activity,
    DeletionJob,
    DeletionJobItem,
    Device,
    Event,
    Person,
    Suppression,
)
from people.services import Outcome, Ref
from tests.factories import UserFactory, make_person


def person_with_history(workspace, customer_id, email=None, **attributes):
    if email:
        attributes["email"] = email
    person = make_person(workspace, customer_id, **attributes)
    services.track_event(workspace, Ref("id", customer_id), name="login")
    services.track_event(workspace, Ref("id", customer_id), name="purchase", data={"amount": 5})
    services.add_device(workspace, Ref("id", customer_id), token=f"tok-{customer_id}",
                        platform="ios")
    return person


# --- delete ----------------------------------------------------------------------------


def test_delete_removes_the_person_and_all_their_data(workspace):
    person = person_with_history(workspace, "u1", "ada@example.com", plan="pro")
    keep = person_with_history(workspace, "u2")

    result = services.delete_people(workspace, [person], suppress=False)

    assert (result.deleted, result.suppressed) == (1, 0)
    assert not Person.objects.filter(pk=person.pk).exists()
    assert not Event.objects.filter(person_id=person.pk).exists()
    assert not Device.objects.filter(person_id=person.pk).exists()
    assert not Suppression.objects.exists()
    # Activity stays, tied to the deleted person's cio_id.
    kinds = set(Activity.objects.filter(cio_id=person.cio_id).values_list("kind", flat=True))
    assert {Activity.Kind.CREATED, Activity.Kind.DELETED} <= kinds
    assert Event.objects.filter(person=keep).count() == 2


def test_re_adding_a_deleted_identifier_gives_a_new_person_with_no_history(workspace):
    person = person_with_history(workspace, "u1", "ada@example.com", plan="pro")
    services.identify_person(workspace, Ref("id", "u1"), {"unsubscribed": True})
    services.delete_people(workspace, [person.pk], suppress=False)

    again = make_person(workspace, "u1", email="ada@example.com")

    assert again.cio_id != person.cio_id
    assert again.attributes == {"email": "ada@example.com"}
    assert again.unsubscribed is False
    assert not again.events.exists()
    assert not again.devices.exists()


def test_delete_of_people_already_gone_counts_nothing(workspace):
    person = make_person(workspace, "u1")
    services.delete_people(workspace, [person.pk], suppress=False)
    assert services.delete_people(workspace, [person.pk], suppress=False).deleted == 0


def test_delete_never_reaches_another_workspace(workspace, other_workspace):
    theirs = make_person(other_workspace, "u1")

    result = services.delete_people(workspace, [theirs.pk], suppress=True)
    assert result.deleted == 0
    result = services.delete_people(workspace, Person.objects.all(), suppress=True)
    assert result.deleted == 0
    assert Person.objects.filter(pk=theirs.pk).exists()
    assert not Suppression.objects.exists()


def test_delete_works_in_batches_with_a_bounded_number_of_queries(workspace, settings):
    settings.ENGAGE_DELETE_BATCH_SIZE = 10
    for number in range(35):
        person_with_history(workspace, f"u{number}")

    with CaptureQueriesContext(connection) as queries:
        result = services.delete_people(workspace, Person.objects.all(), suppress=True)

    assert result.deleted == 35
    assert not Person.objects.exists() and not Event.objects.exists()
    # A handful of statements per batch of 10, never a query per person (one of them
    # skips the people's unsent transactional emails, campaigns.transactional).
    assert len(queries) <= 4 * 16
    selects = [q["sql"] for q in queries.captured_queries if "people_event" in q["sql"]]
    assert len(selects) == 4


def test_deletion_signal_lets_other_apps_clean_up_in_the_same_transaction(workspace):
    person = make_person(workspace, "u1")
    seen = []

    @receiver(signals.people_deleting, weak=False)
    def record(sender, workspace, person_ids, cio_ids, suppress, **kwargs):
        # Rows still exist while receivers run.
        seen.append((list(person_ids), list(cio_ids), suppress,
                     Person.objects.filter(pk__in=person_ids).count()))

    try:
        services.delete_people(workspace, [person], suppress=True)
    finally:
        signals.people_deleting.disconnect(record)
    assert seen == [([person.pk], [person.cio_id], True, 1)]


def test_a_failing_cleanup_rolls_the_whole_batch_back(workspace):
    person = person_with_history(workspace, "u1")

    def fail(**kwargs):
        raise RuntimeError("clean-up failed")

    signals.people_deleting.connect(fail, weak=False)
    try:
        with pytest.raises(RuntimeError):
            services.delete_people(workspace, [person], suppress=True)
    finally:
        signals.people_deleting.disconnect(fail)
    assert Person.objects.filter(pk=person.pk).exists()
    assert Event.objects.filter(person=person).count() == 2
    assert not Suppression.objects.exists()


# --- suppress --------------------------------------------------------------------------


def test_delete_and_suppress_records_both_identifiers_and_forgets_activity(workspace):
    staff = UserFactory()
    person = person_with_history(workspace, "u1", "Ada@Example.com")

    result = services.delete_people(workspace, [person], suppress=True, actor=staff,
                                    source=Suppression.Source.UI)

    assert (result.deleted, result.suppressed) == (1, 2)
    assert set(Suppression.objects.values_list("identifier_type", "value")) == {
        ("id", "u1"), ("email", "ada@example.com")
    }
    suppression = Suppression.objects.first()
    assert suppression.created_by == staff and suppression.source == "ui"
    assert not Activity.objects.filter(cio_id=person.cio_id).exists()
    forgotten = Activity.objects.filter(forgotten=True)
    assert forgotten.filter(kind=Activity.Kind.SUPPRESSED).count() == 1
    assert all(entry.data == {} and entry.cio_id is None for entry in forgotten)
    assert str(forgotten.first()).endswith("forgotten (anonymous)")


def test_suppress_in_an_id_workspace_suppresses_only_the_id(id_workspace):
    person = make_person(id_workspace, "u1", email="ada@example.com")
    services.delete_people(id_workspace, [person], suppress=True)
    assert list(Suppression.objects.values_list("identifier_type", "value")) == [("id", "u1")]
    # The email is an attribute there, so someone else may use it.
    assert make_person(id_workspace, "u2", email="ada@example.com")


def test_suppressed_identifiers_are_ignored_afterwards(workspace):
    person = make_person(workspace, "u1", email="ada@example.com")
    services.suppress_identifier(workspace, Ref("id", "u1"))
    assert not Person.objects.filter(pk=person.pk).exists()

    outcomes = [
        services.identify_person(workspace, Ref("id", "u1"), {"plan": "pro"}).outcome,
        services.identify_person(workspace, Ref("email", "ADA@example.com"), {}).outcome,
        services.identify_person(workspace, Ref("id", "u9"), {"email": "ada@example.com"}).outcome,
        services.track_event(workspace, Ref("id", "u1"), name="login").outcome,
        services.track_event(workspace, Ref("email", "ada@example.com"), name="login").outcome,
        services.add_device(workspace, Ref("id", "u1"), token="t", platform="ios").outcome,
    ]

    assert set(outcomes) == {Outcome.SUPPRESSED}
    assert not Person.objects.exists() and not Event.objects.exists()
    assert not Device.objects.exists()


def test_suppressing_an_unknown_identifier_blocks_it(workspace):
    assert services.suppress_identifier(workspace, Ref("email", "Ghost@example.com")) == 1
    assert services.identify_person(
        workspace, Ref("email", "ghost@example.com"), {}
    ).outcome == Outcome.SUPPRESSED
    assert services.suppress_identifier(workspace, Ref("cio_id", "nobody")) == 0


def test_unsuppress_frees_both_identifiers_for_a_new_person(workspace):
    person = person_with_history(workspace, "u1", "ada@example.com")
    services.suppress_identifier(workspace, Ref("id", "u1"))

    assert services.unsuppress_identifier(workspace, Ref("email", "ADA@example.com")) == 2

    assert not Suppression.objects.exists()
    again = make_person(workspace, "u1", email="ada@example.com")
    assert again.cio_id != person.cio_id
    assert not again.events.exists()


def test_suppression_is_per_workspace(workspace, other_workspace):
    services.suppress_identifier(workspace, Ref("id", "u1"))
    result = services.identify_person(other_workspace, Ref("id", "u1"), {})
    assert result.outcome == Outcome.CREATED


# --- merge -----------------------------------------------------------------------------


def test_merge_moves_what_the_primary_lacks_and_deletes_the_secondary(workspace):
    primary = make_person(workspace, "p1", plan="pro", city="")
    secondary = person_with_history(workspace, "s1", "sec@example.com", plan="free",
                                    city="Berlin", vip=True)

    result = services.merge_people(workspace, primary=Ref("id", "p1"), secondary=Ref("id", "s1"))

    assert result.outcome == Outcome.UPDATED
    primary.refresh_from_db()
    assert primary.attributes["plan"] == "pro"
    assert primary.attributes["city"] == "Berlin" and primary.attributes["vip"] is True
    assert primary.email == "sec@example.com" and primary.email_key == "sec@example.com"
    assert primary.customer_id == "p1"
    assert not Person.objects.filter(pk=secondary.pk).exists()
    assert primary.events.count() == 2
    assert primary.devices.count() == 1
    assert Activity.objects.filter(cio_id=primary.cio_id, kind=Activity.Kind.MERGED).exists()
    deleted = Activity.objects.get(cio_id=secondary.cio_id, kind=Activity.Kind.DELETED)
    assert deleted.data["merged_into"] == primary.cio_id


def test_merge_moves_only_the_last_30_days_of_events(workspace):
    import time_machine
    from django.utils import timezone

    primary = make_person(workspace, "p1")
    make_person(workspace, "s1")
    with time_machine.travel(timezone.now() - timezone.timedelta(days=31), tick=False):
        services.track_event(workspace, Ref("id", "s1"), name="old")
    services.track_event(workspace, Ref("id", "s1"), name="recent")

    services.merge_people(workspace, primary=Ref("id", "p1"), secondary=Ref("cio_id",
                          Person.objects.get(customer_id="s1").cio_id))

    assert list(primary.events.values_list("name", flat=True)) == ["recent"]
    assert not Event.objects.filter(name="old").exists()


def test_merge_needs_both_people(workspace):
    make_person(workspace, "s1")
    result = services.merge_people(workspace, primary=Ref("id", "nobody"),
                                   secondary=Ref("id", "s1"))
    assert result.outcome == Outcome.NOT_FOUND
    assert Person.objects.filter(customer_id="s1").exists()


def test_merge_signal_is_sent_before_the_secondary_goes(workspace):
    primary = make_person(workspace, "p1")
    secondary = make_person(workspace, "s1")
    seen = []

    def record(sender, workspace, primary_id, secondary_id, **kwargs):
        seen.append((primary_id, secondary_id, Person.objects.filter(pk=secondary_id).exists()))

    signals.people_merging.connect(record, weak=False)
    try:
        services.merge_people(workspace, primary=Ref("id", "p1"), secondary=Ref("id", "s1"))
    finally:
        signals.people_merging.disconnect(record)
    assert seen == [(primary.pk, secondary.pk, True)]


# --- deletion jobs ---------------------------------------------------------------------


def make_people(workspace, count, **attributes):
    return [make_person(workspace, f"u{n}", **attributes) for n in range(count)]


def test_deletion_job_deletes_the_confirmed_set_only(workspace, settings,
                                                     django_capture_on_commit_callbacks):
    settings.ENGAGE_DELETE_BATCH_SIZE = 3
    make_people(workspace, 7, plan="free")
    staff = UserFactory()

    with django_capture_on_commit_callbacks() as callbacks:
        job = services.start_deletion_job(
            workspace, Person.objects.filter(attributes__plan="free"), suppress=True,
            actor=staff, description="People page: plan is free",
        )
    assert job.total == 7 and job.state == DeletionJob.State.PENDING
    # Someone matching the filter after confirmation is not in the job.
    late = make_person(workspace, "late", plan="free")
    for callback in callbacks:
        callback()

    job.refresh_from_db()
    assert job.state == DeletionJob.State.DONE
    assert (job.done, job.deleted, job.already_gone, job.suppressed) == (7, 7, 0, 7)
    assert job.progress == 100 and job.finished_at is not None
    assert list(Person.objects.all()) == [late]
    assert not DeletionJobItem.objects.exists()
    assert Suppression.objects.filter(created_by=staff).count() == 7


def test_an_interrupted_deletion_job_resumes_with_the_right_counts(workspace, settings):
    settings.ENGAGE_DELETE_BATCH_SIZE = 2
    people = make_people(workspace, 5)
    job = services.start_deletion_job(workspace, Person.objects.all(), suppress=False,
                                      description="all")

    services.run_deletion_job(job.pk, max_batches=1)  # a worker dies after one batch
    job.refresh_from_db()
    assert (job.state, job.done, job.deleted) == (DeletionJob.State.RUNNING, 2, 2)
    assert job.progress == 40
    services.delete_people(workspace, [people[4]], suppress=False)  # gone meanwhile

    services.run_deletion_job(job.pk)
    services.run_deletion_job(job.pk)  # a duplicate delivery of the task changes nothing

    job.refresh_from_db()
    assert job.state == DeletionJob.State.DONE
    assert (job.total, job.done, job.deleted, job.already_gone) == (5, 5, 4, 1)
    assert not Person.objects.exists()


def test_a_failed_deletion_job_can_be_retried(workspace, django_capture_on_commit_callbacks):
    from people import tasks

    make_people(workspace, 3)
    job = services.start_deletion_job(workspace, Person.objects.all(), suppress=False,
                                      description="all")

    def fail(**kwargs):
        raise RuntimeError("database went away")

    signals.people_deleting.connect(fail, weak=False)
    try:
        with pytest.raises(RuntimeError):
            tasks.run_deletion_job(job.pk)
    finally:
        signals.people_deleting.disconnect(fail)
    job.refresh_from_db()
    assert job.state == DeletionJob.State.FAILED and "database went away" in job.error
    assert Person.objects.count() == 3

    with django_capture_on_commit_callbacks(execute=True):
        services.retry_deletion_job(job)

    job.refresh_from_db()
    assert (job.state, job.deleted, job.error) == (DeletionJob.State.DONE, 3, "")


def test_stalled_jobs_are_handed_out_again(workspace, django_capture_on_commit_callbacks):
    import time_machine
    from django.utils import timezone

    from people import tasks

    make_people(workspace, 2)
    job = services.start_deletion_job(workspace, Person.objects.all(), suppress=False,
                                      description="all")  # its task never ran
    assert tasks.resume_stalled_deletion_jobs() == 0

    with time_machine.travel(timezone.now() + timezone.timedelta(minutes=20)):
        with django_capture_on_commit_callbacks(execute=True):
            assert tasks.resume_stalled_deletion_jobs() == 1

    job.refresh_from_db()
    assert job.state == DeletionJob.State.DONE and job.deleted == 2


def test_an_empty_deletion_job_is_done_at_once(workspace):
    job = services.start_deletion_job(workspace, Person.objects.none(), suppress=False,
                                      description="nobody")
    assert job.state == DeletionJob.State.DONE and job.total == 0 and job.progress == 100


def test_identifiers_already_suppressed_are_not_counted_twice(workspace):
    services.suppress_identifier(workspace, Ref("email", "ada@example.com"))
    services.unsuppress_identifier(workspace, Ref("email", "nobody@example.com"))
    person = make_person(workspace, "u1")
    # The person's email is set without identify, as data from before a suppression would be.
    Person.objects.filter(pk=person.pk).update(email="ada@example.com",
                                              email_key="ada@example.com")

    result = services.delete_people(workspace, [person], suppress=True)

    assert result.suppressed == 1
    assert Suppression.objects.count() == 2
