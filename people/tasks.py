"""django-q2 entry points for people: ids in, one service call out."""

from engage import jobs
from engage.models import IdentifierModeChange
from people import identifier_mode, services
from people.models import DeletionJob


def run_deletion_job(job_id: int) -> None:
    """Delete a deletion job's people; mark the job failed if an error stops it."""
    jobs.run_task(DeletionJob, job_id, services.run_deletion_job)


def resume_stalled_deletion_jobs() -> int:
    """Hand out again the jobs whose worker died or whose task was lost."""
    return jobs.resume_stalled(DeletionJob)


def run_identifier_mode_change(change_id: int) -> None:
    """Carry out an identifier mode change; mark it failed if an error stops it."""
    jobs.run_task(IdentifierModeChange, change_id, identifier_mode.run_identifier_mode_change)


def resume_stalled_identifier_mode_changes() -> int:
    """Hand out again the identifier mode changes whose worker died or whose task was lost."""
    return jobs.resume_stalled(IdentifierModeChange)
