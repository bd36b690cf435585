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


def test_one_schedule_resumes_every_kind():
    resuming = [func for _, func, _ in SCHEDULES if "stalled" in func]
    assert resuming == ["engage.tasks.resume_stalled_jobs"]
    assert import_string(resuming[0]) is tasks.resume_stalled_jobs


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

    from engage import services
    from engage.models import Membership
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
    change = services.set_identifier_mode(workspace, "id")
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
