"""A deletion job started from the People page survives its worker being killed."""

import time

import pytest
from django.urls import reverse
from django.utils import timezone

from engage.models import Membership
from engage.schedules import ensure_schedules
from people import tasks
from people.models import DeletionJob, Person, Suppression
from tests.factories import make_member
from tests.workers import cluster, needs_shared_database, real_tasks, redis_url, wait_for  # noqa: F401

pytestmark = needs_shared_database

PEOPLE = 4000
# The job must be taken up again well before the broker's own re-delivery of the killed
# task (Q_CLUSTER "retry", 660 s); measured figures are in docs/benchmarks.md.
RESUMED_WITHIN = 120


@pytest.fixture(params=["orm", "redis"])
def broker(request):
    """The environment of a cluster on the ORM broker, or on a Redis of its own."""
    if request.param == "orm":
        return {}
    return {"REDIS_URL": request.getfixturevalue("redis_url")}


def test_a_killed_worker_loses_nothing_and_the_job_finishes_with_the_right_counts(
        client, cluster, workspace, broker):  # noqa: F811 (the fixture imported above)
    now = timezone.now()
    Person.objects.bulk_create(
        Person(workspace=workspace, customer_id=f"u{number}", email=f"u{number}@example.com",
               email_key=f"u{number}@example.com" if workspace.email_is_identifier else None,
               attributes={"email": f"u{number}@example.com"}, created_at=now, updated_at=now)
        for number in range(PEOPLE))
    ensure_schedules()
    client.force_login(make_member(workspace, Membership.Role.EDITOR))
    # Small batches, so that the worker is killed somewhere in the middle of the job.
    first = cluster(ENGAGE_DELETE_BATCH_SIZE=20, **broker).start()

    response = client.post(reverse("person-bulk-delete"),
                           {"select_all": "1", "suppress": "1", "token": "t1",
                            "count": str(PEOPLE)})
    job = DeletionJob.objects.get()
    assert response["Location"] == reverse("deletionjob-detail", args=[job.pk])
    assert wait_for(lambda: DeletionJob.objects.get(pk=job.pk).done >= 200)
    first.kill()
    killed_at = time.monotonic()

    job.refresh_from_db()
    assert job.state == DeletionJob.State.RUNNING and 0 < job.done < PEOPLE
    # Whatever the worker finished is whole: every counted person is gone and suppressed.
    left = Person.objects.filter(workspace=workspace).count()
    assert (job.deleted, job.already_gone) == (PEOPLE - left, 0)
    identifiers = 2 if workspace.email_is_identifier else 1  # id, and email when it is one
    assert Suppression.objects.filter(workspace=workspace).count() == job.suppressed
    assert job.suppressed == identifiers * job.deleted
    assert job.items.count() == left
    # The dead worker's lease still holds: the job is not handed out yet.
    assert job.leased_until is not None and tasks.resume_stalled_deletion_jobs() == 0

    # A worker starts again (restarted by its supervisor, or on another node): the
    # every-minute schedule finds the lapsed lease and hands the job to it.
    cluster(ENGAGE_DELETE_BATCH_SIZE=500, **broker).start()
    assert wait_for(lambda: DeletionJob.objects.get(pk=job.pk).is_finished,
                    timeout=RESUMED_WITHIN, interval=0.2)
    print(f"{'redis' if broker else 'orm'} broker: the job finished "
          f"{time.monotonic() - killed_at:.1f} s after its worker was killed")

    job.refresh_from_db()
    assert (job.state, job.total, job.done, job.deleted, job.already_gone, job.suppressed) == (
        DeletionJob.State.DONE, PEOPLE, PEOPLE, PEOPLE, 0, identifiers * PEOPLE)
    assert not Person.objects.filter(workspace=workspace).exists()
    assert not job.items.exists()
    page = client.get(reverse("deletionjob-detail", args=[job.pk]))
    assert page.context["job"].state == DeletionJob.State.DONE
