"""django-q2 entry points for people: ids in, one service call out."""

from engage import jobs
from people import services
from people.models import DeletionJob


def run_deletion_job(job_id: int) -> None:
    """Delete a deletion job's people; mark the job failed if an error stops it."""
    jobs.run_task(DeletionJob, job_id, services.run_deletion_job)


def resume_stalled_deletion_jobs() -> int:
    """Hand out again the jobs whose worker died or whose task was lost."""
    return jobs.resume_stalled(DeletionJob)
