"""django-q2 entry points for segments: ids in, one service call out."""

from engage import jobs
from segments import exports, operations, services
from segments.models import Export, MembershipJob, Segment


def recompute_segment(segment_id: int) -> None:
    segment = Segment.objects.filter(pk=segment_id).select_related("workspace").first()
    if segment is not None:
        services.recompute_segment(segment)


def evaluate_pending(workspace_id: int) -> None:
    services.evaluate_pending(workspace_id)


def queue_owed_evaluations() -> int:
    """Queue the evaluations owed but not queued (their enqueue failed after commit)."""
    return services.queue_owed_evaluations()


def recompute_time_relative_segments() -> int:
    """Recompute the segments whose conditions depend on the current time."""
    from django_q.tasks import async_task

    ids = list(Segment.objects.data_driven().active().filter(time_relative=True)
               .values_list("pk", flat=True))
    for segment_id in ids:
        async_task("segments.tasks.recompute_segment", segment_id,
                   task_name=f"recompute-segment-{segment_id}")
    return len(ids)


def build_export(export_id: int) -> None:
    export = Export.objects.filter(pk=export_id).select_related("workspace").first()
    if export is not None and export.state != Export.State.DONE:
        exports.build_export(export)


def run_membership_job(job_id: int) -> None:
    """Change a membership job's segment; mark the job failed if an error stops it."""
    jobs.run_task(MembershipJob, job_id, operations.run_membership_job)


def resume_stalled_membership_jobs() -> int:
    """Hand out again the membership jobs whose worker died or whose task was lost."""
    return jobs.resume_stalled(MembershipJob)
