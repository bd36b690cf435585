"""Adding people to a manual segment or removing them, as a membership job: a snapshot of
the confirmed set, batches a worker runs (and resumes), progress a page polls."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from engage import jobs
from engage.models import Membership
from people.models import Person
from segments import operations, tasks
from segments import services as segments
from segments.models import MembershipChange, MembershipJob, MembershipJobItem, Segment
from tests.factories import make_member, make_person

ADD = reverse("segments:people-add")
REMOVE = reverse("segments:people-remove")
FREE = {"select_all": "1", "field": "plan", "operator": "eq", "value": "free"}


def members_of(segment) -> list[str]:
    return sorted(operations.segment_members(segment).values_list("customer_id", flat=True))


def job_page(job):
    return reverse("segments:job", args=[job.pk])


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(MembershipJob, "batch_size", 2)


@pytest.fixture
def free_people(workspace):
    people = [make_person(workspace, f"u{n}", plan="free") for n in range(5)]
    make_person(workspace, "paid", plan="pro")
    return people


def beta(workspace, people=()):
    segment = segments.create_segment(workspace, name="Beta")
    segments.add_to_segment(segment, [person.pk for person in people])
    return segment


def everyone(workspace):
    return Person.objects.in_workspace(workspace)


# --- from the People page --------------------------------------------------------------


def test_a_large_selection_becomes_a_job_whose_page_shows_its_progress(
        client, editor, workspace, free_people, small_batches):
    segment = beta(workspace)
    response = client.post(ADD, {**FREE, "target": segment.pk, "token": "t1"},
                           HTTP_HX_REQUEST="true")
    job = MembershipJob.objects.get()
    assert response["HX-Redirect"] == job_page(job)
    assert (job.state, job.total, job.done, job.action) == ("pending", 5, 0, "add")
    assert job.requested_by == editor and job.segment == segment
    assert job.description == "People page: all people matching the filters"
    assert members_of(segment) == []  # nothing was changed inside the request

    operations.run_membership_job(job.pk, max_batches=1)
    page = client.get(job_page(job)).content.decode()
    assert "2 of 5 (40%)" in page and 'hx-trigger="every 1s"' in page
    partial = client.get(job_page(job), HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<div id="job-progress"') and "<html" not in partial

    operations.run_membership_job(job.pk)
    partial = client.get(job_page(job), HTTP_HX_REQUEST="true").content.decode()
    assert 'data-state="done"' in partial and "every 1s" not in partial
    assert "Added 5 people to Beta." in partial
    assert members_of(segment) == [f"u{n}" for n in range(5)]
    segment_page = client.get(reverse("segments:detail", args=[segment.pk])).content.decode()
    assert f'href="{job_page(job)}"' in segment_page


def test_a_double_submit_starts_one_job(client, editor, workspace, free_people, small_batches):
    segment = beta(workspace)
    first = client.post(ADD, {**FREE, "target": segment.pk, "token": "t1"})
    second = client.post(ADD, {**FREE, "target": segment.pk, "token": "t1"})
    job = MembershipJob.objects.get()
    assert first["Location"] == second["Location"] == job_page(job)
    assert MembershipJobItem.objects.count() == 5


def test_the_dialog_carries_a_fresh_token(client, editor, workspace, free_people):
    beta(workspace)
    confirm = reverse("segments:people-add-confirm")
    bodies = [client.post(confirm, FREE).content.decode() for _ in range(2)]
    tokens = [body.split('name="token" value="')[1].split('"')[0] for body in bodies]
    assert len(set(tokens)) == 2 and all(len(token) == 32 for token in tokens)


def test_a_few_people_change_at_once_with_no_worker(client, editor, workspace, free_people,
                                                    django_capture_on_commit_callbacks):
    segment = beta(workspace, free_people[:1])
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(ADD, {"person": [p.pk for p in free_people[:3]],
                                     "target": segment.pk}, follow=True)
    # No task was queued: the only after-commit work announces the log's new entries.
    assert [callback.__qualname__ for callback in queued] == ["write_changes.<locals>.<lambda>"]
    job = MembershipJob.objects.get()
    assert (job.state, job.total, job.changed, job.unchanged) == ("done", 3, 2, 1)
    assert "Added 2 people to Beta." in response.content.decode()
    assert members_of(segment) == ["u0", "u1", "u2"]


def test_removing_a_large_selection(client, editor, workspace, free_people, small_batches):
    segment = beta(workspace, free_people)
    client.post(REMOVE, {**FREE, "target": segment.pk})
    job = MembershipJob.objects.get()
    assert job.action == "remove" and job.state == "pending"
    operations.run_membership_job(job.pk)
    job.refresh_from_db()
    assert (job.state, job.done, job.changed) == ("done", 5, 5)
    assert members_of(segment) == []
    assert "Removed 5 people from Beta." in client.get(job_page(job)).content.decode()


def test_another_workspaces_job_is_404_and_viewers_may_watch(client, workspace, other_workspace,
                                                             free_people):
    job = operations.start_membership_job(beta(workspace), everyone(workspace), add=True,
                                          description="test")
    theirs = operations.start_membership_job(beta(other_workspace), everyone(other_workspace),
                                             add=True, description="test")
    client.force_login(make_member(workspace, Membership.Role.VIEWER))
    assert client.get(job_page(job)).status_code == 200
    assert client.get(job_page(theirs)).status_code == 404


# --- the job itself --------------------------------------------------------------------


def test_the_set_is_the_one_confirmed(workspace, free_people, small_batches):
    segment = beta(workspace)
    job = operations.start_membership_job(segment, everyone(workspace).filter(
        attributes__plan="free"), add=True, description="test")
    late = make_person(workspace, "late", plan="free")  # matches only after confirmation
    operations.run_membership_job(job.pk)
    assert late.customer_id not in members_of(segment)
    assert members_of(segment) == [f"u{n}" for n in range(5)]


def test_a_worker_killed_mid_job_loses_nothing_and_counts_nothing_twice(
        workspace, free_people, small_batches):
    segment = beta(workspace, free_people[:1])
    job = operations.start_membership_job(segment, everyone(workspace), add=True,
                                          description="test")
    operations.run_membership_job(job.pk, max_batches=1)  # the worker dies after one batch
    job.refresh_from_db()
    assert (job.state, job.done, job.changed) == ("running", 2, 1)
    assert MembershipJobItem.objects.filter(job=job).count() == 4

    operations.run_membership_job(job.pk)
    operations.run_membership_job(job.pk)  # a duplicate delivery of the task changes nothing
    job.refresh_from_db()
    assert (job.state, job.total, job.done, job.changed, job.unchanged) == ("done", 6, 6, 5, 1)
    assert len(members_of(segment)) == 6 and not MembershipJobItem.objects.exists()
    entered = MembershipChange.objects.filter(segment=segment, change="entered")
    assert entered.count() == 6  # one for u0 before the job, one for each person it added


def test_a_stalled_job_is_resumed_by_the_schedule(workspace, free_people, small_batches,
                                                  django_capture_on_commit_callbacks):
    segment = beta(workspace)
    job = operations.start_membership_job(segment, everyone(workspace), add=True,
                                          description="test")
    operations.run_membership_job(job.pk, max_batches=1)
    fresh = operations.start_membership_job(beta(workspace), everyone(workspace), add=True,
                                            description="test")
    MembershipJob.objects.filter(pk=job.pk).update(
        updated_at=timezone.now() - jobs.STALLED_AFTER - timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):  # the task runs (sync in tests)
        assert tasks.resume_stalled_membership_jobs() == 1
    job.refresh_from_db()
    fresh.refresh_from_db()
    assert (job.state, job.done, job.changed) == ("done", 6, 6)
    assert fresh.state == "pending"  # not stalled: left to its worker


def test_archiving_the_segment_mid_job_stops_it_and_says_so(workspace, free_people,
                                                            small_batches):
    segment = beta(workspace)
    job = operations.start_membership_job(segment, everyone(workspace), add=True,
                                          description="test")
    operations.run_membership_job(job.pk, max_batches=1)
    segments.set_archived(segment, True)
    job = operations.run_membership_job(job.pk)
    assert job.state == "failed" and job.finished_at is not None
    assert job.error == ("Beta was archived, so its members no longer change; "
                         "2 of 6 people were handled before.")
    assert (job.done, job.changed) == (2, 2) and len(members_of(segment)) == 2
    assert not MembershipJobItem.objects.exists()


def test_an_error_marks_the_job_failed_and_keeps_what_was_done(workspace, free_people,
                                                              small_batches, monkeypatch):
    segment = beta(workspace)
    job = operations.start_membership_job(segment, everyone(workspace), add=True,
                                          description="test")
    operations.run_membership_job(job.pk, max_batches=1)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(segments, "change_manual", broken)
    with pytest.raises(RuntimeError):
        tasks.run_membership_job(job.pk)
    job.refresh_from_db()
    assert (job.state, job.error, job.done) == ("failed", "RuntimeError: disk full", 2)
    assert MembershipJobItem.objects.filter(job=job).count() == 4


def test_segments_that_reference_it_are_recomputed_once_at_the_end(
        workspace, free_people, small_batches, monkeypatch, django_capture_on_commit_callbacks):
    segment = beta(workspace)
    in_beta = segments.create_segment(workspace, name="In Beta", conditions_tree={
        "segment": {"id": segment.pk, "operator": "in"}})
    queued = []
    monkeypatch.setattr(segments, "enqueue_recompute", queued.append)
    job = operations.start_membership_job(segment, everyone(workspace), add=True,
                                          description="test")
    operations.run_membership_job(job.pk)
    assert queued == [in_beta.pk]  # three batches, one recompute
    segments.recompute_segment(in_beta)
    assert len(members_of(in_beta)) == 6


def test_only_active_manual_segments_take_jobs(workspace):
    ada = make_person(workspace, "ada")
    pro = segments.create_segment(workspace, name="Pro", conditions_tree={
        "attribute": {"field": "plan", "operator": "exists"}})
    old = segments.set_archived(beta(workspace), True)
    for segment in (pro, old):
        with pytest.raises(ValueError):
            operations.start_membership_job(segment, Person.objects.filter(pk=ada.pk),
                                            add=True, description="test")
    assert not MembershipJob.objects.exists()


def test_another_workspaces_people_never_enter_the_snapshot(workspace, other_workspace):
    make_person(other_workspace, "theirs")
    job = operations.start_membership_job(beta(workspace), Person.objects.all(), add=True,
                                          description="test")
    assert (job.state, job.total) == ("done", 0)
    assert Segment.objects.get(pk=job.segment_id).memberships.count() == 0
