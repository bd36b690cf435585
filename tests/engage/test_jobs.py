"""Background jobs: every kind is a subclass of BackgroundJob and nothing more."""

from datetime import timedelta

import time_machine
from django.utils import timezone
from django.utils.module_loading import import_string

from engage import jobs, tasks
from engage.models import IdentifierModeChange
from engage.schedules import SCHEDULES
from people.models import DeletionJob, Person
from segments.models import MembershipJob
from tests.chores.models import Chore
from tests.factories import make_person


def test_every_kind_is_found_and_names_a_task_that_exists():
    kinds = set(jobs.kinds())
    assert {DeletionJob, MembershipJob, IdentifierModeChange, Chore} <= kinds
    for kind in kinds:
        assert callable(import_string(kind.task)), kind
        assert kind.batch_size > 0


def test_one_schedule_resumes_every_kind_every_minute():
    resuming = [(func, minutes) for _, func, minutes in SCHEDULES if "stalled" in func]
    assert resuming == [("engage.tasks.resume_stalled_jobs", 1)]
    assert import_string(resuming[0][0]) is tasks.resume_stalled_jobs


def test_a_job_held_by_a_worker_that_died_is_handed_out_again_once_its_lease_lapses(
        workspace, django_capture_on_commit_callbacks):
    from tests.chores.tasks import run_chore

    for number in range(5):
        make_person(workspace, f"u{number}", email=f"u{number}@example.com")
    with django_capture_on_commit_callbacks(execute=False):
        chore = jobs.start(Chore(description="everyone"), Person.objects.all())
    run_chore(chore.pk)  # a worker runs it to the end: nothing is left held
    chore.refresh_from_db()
    assert (chore.state, chore.done, chore.leased_until, chore.lease_owner) == ("done", 5, None, "")

    with django_capture_on_commit_callbacks(execute=False):
        chore = jobs.start(Chore(description="everyone"), Person.objects.all())
    jobs.run(Chore, chore.pk, lambda job, pks: None, max_batches=1)
    # ... and here a worker that took the next batch was killed: it holds the job until its
    # lease lapses, renewed with every batch it would have run.
    died_at = timezone.now()
    Chore.objects.filter(pk=chore.pk).update(lease_owner="killed", updated_at=died_at,
                                             leased_until=died_at + jobs.LEASE)

    run_chore(chore.pk)  # another worker leaves a job whose lease holds
    chore.refresh_from_db()
    assert (chore.state, chore.done, chore.lease_owner) == ("running", 2, "killed")
    assert tasks.resume_stalled_jobs() == 0

    with time_machine.travel(died_at + jobs.LEASE + timedelta(seconds=1)):
        with django_capture_on_commit_callbacks(execute=True):
            assert tasks.resume_stalled_jobs() == 1
    chore.refresh_from_db()
    assert (chore.state, chore.done, chore.with_email) == ("done", 5, 3)
    assert jobs.LEASE <= timedelta(seconds=30)  # resumed within a minute of the last batch


def test_a_new_kind_is_started_run_and_resumed_from_its_declaration_alone(
        workspace, django_capture_on_commit_callbacks):
    for number in range(5):
        make_person(workspace, f"u{number}", **({"email": f"u{number}@example.com"}
                                                if number % 2 else {}))
    with django_capture_on_commit_callbacks(execute=False) as queued:  # the task is lost
        chore = jobs.start(Chore(description="people with an email"),
                           Person.objects.filter(workspace=workspace))
    assert (chore.state, chore.total, chore.items.count(), len(queued)) == ("pending", 5, 5, 1)
    assert tasks.resume_stalled_jobs() == 0  # not stalled yet: left to its task

    later = timezone.now() + jobs.STALLED_AFTER + timedelta(minutes=1)
    with time_machine.travel(later), django_capture_on_commit_callbacks(execute=True):
        assert tasks.resume_stalled_jobs() == 1

    chore.refresh_from_db()
    assert (chore.state, chore.done, chore.with_email) == ("done", 5, 2)
    assert not chore.items.exists()


def test_the_three_progress_pages_share_one_shell_in_their_own_words(client, workspace):
    from django.urls import reverse

    from engage.models import Membership
    from people import identifier_mode
    from people import services as people
    from segments import services as segments
    from tests.factories import make_member

    client.force_login(make_member(workspace, Membership.Role.ADMIN))
    for number in range(3):
        make_person(workspace, f"u{number}", email=f"u{number}@example.com")
    everyone = Person.objects.filter(workspace=workspace)
    deletion = people.start_deletion_job(workspace, everyone, suppress=False,
                                         description="everyone")
    segment = segments.create_segment(workspace, name="Beta")
    membership = jobs.start(MembershipJob(workspace=workspace, segment=segment,
                                          action="add", description="everyone"), everyone)
    change = identifier_mode.set_identifier_mode(workspace, "id")
    IdentifierModeChange.objects.filter(pk=change.pk).update(state="running")

    pages = {
        "job-deleted": reverse("deletionjob-detail", args=[deletion.pk]),
        "job-changed": reverse("segments:job", args=[membership.pk]),
        "mode-change-state": reverse("settings:identifiers") + "?progress=1",
    }
    for own_words, url in pages.items():
        response = client.get(url, HTTP_HX_REQUEST="true")
        assert "_job_progress.html" in {t.name for t in response.templates}, url
        assert f'id="{own_words}"' in response.content.decode(), url
