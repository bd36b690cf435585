"""Deletion jobs: a fixed set of people deleted by a worker in batches, resumable."""

from django.db.models import QuerySet

from engage import jobs
from engage.models import Workspace
from people.models import DeletionJob, Suppression
from people.services.deletion import _delete_batch

DELETION_TASK = DeletionJob.task


def start_deletion_job(
    workspace: Workspace,
    people: QuerySet,
    *,
    suppress: bool,
    actor=None,
    description: str,
    source: str = Suppression.Source.UI,
) -> DeletionJob:
    """Record the set to delete as it is now, and have a worker delete it in batches.

    The set is fixed at this moment: people who match the same filter later are not
    deleted. Only primary keys are kept, never personal data.
    """
    job = DeletionJob(workspace=workspace, requested_by=actor, source=source,
                      description=description[:300], suppress=suppress)
    return jobs.start(job, people.filter(workspace=workspace))


def run_deletion_job(job_id: int, *, max_batches: int | None = None) -> DeletionJob | None:
    """Delete a job's people batch by batch; safe to run again after any interruption."""
    return jobs.run(DeletionJob, job_id, _delete_job_batch, max_batches=max_batches,
                    select_related=("workspace", "requested_by"))


def _delete_job_batch(job: DeletionJob, person_pks: list[int]) -> None:
    deleted, suppressed = _delete_batch(job.workspace, person_pks, suppress=job.suppress,
                                        actor=job.requested_by, source=job.source)
    job.deleted += deleted
    job.suppressed += suppressed
    job.already_gone += len(person_pks) - deleted


def fail_deletion_job(job_id: int, error: str) -> None:
    """Mark a job failed with the error, keeping what it already did."""
    jobs.fail(DeletionJob, job_id, error)


def retry_deletion_job(job: DeletionJob) -> None:
    """Run a failed or stalled job again from where it stopped."""
    jobs.retry(job)
