"""django-q2 entry points for people: ids in, one service call out."""

import logging
from datetime import timedelta

from django.utils import timezone

from people import services
from people.models import DeletionJob

logger = logging.getLogger(__name__)

# A running job whose counts have not moved for this long lost its worker.
STALLED_AFTER = timedelta(minutes=15)


def run_deletion_job(job_id: int) -> None:
    """Delete a deletion job's people; mark the job failed if an error stops it."""
    try:
        services.run_deletion_job(job_id)
    except Exception as error:
        logger.exception("deletion job %s failed", job_id)
        services.fail_deletion_job(job_id, f"{type(error).__name__}: {error}")
        raise


def resume_stalled_deletion_jobs() -> int:
    """Hand out again the jobs whose worker died or whose task was lost."""
    stalled = DeletionJob.objects.filter(
        state__in=[DeletionJob.State.PENDING, DeletionJob.State.RUNNING],
        updated_at__lt=timezone.now() - STALLED_AFTER,
    )
    count = 0
    for job in stalled.only("pk").iterator():
        services.retry_deletion_job(job)
        count += 1
    return count
