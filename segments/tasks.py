"""django-q2 entry points for segments: ids in, one service call out."""

from segments import exports, services
from segments.models import Export, Segment


def recompute_segment(segment_id: int) -> None:
    segment = Segment.objects.filter(pk=segment_id).select_related("workspace").first()
    if segment is not None:
        services.recompute_segment(segment)


def evaluate_pending(workspace_id: int) -> None:
    services.evaluate_pending(workspace_id)


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
