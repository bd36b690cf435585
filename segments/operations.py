"""What the segment pages do to people: list members, change manual segments in batches,
and delete a segment's profiles through the one deletion path.
"""

from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

from engage import jobs
from people.models import DeletionJob, Person, Suppression
from people.services import start_deletion_job
from segments import services
from segments.models import Membership, MembershipJob, Segment

# Segment lists count members up to this many, then say "more than".
MEMBER_COUNT_CAP = 10_000


def with_member_counts(segments: QuerySet[Segment]) -> QuerySet[Segment]:
    """Annotate ``member_count``: each segment's members, counted up to the cap plus one.

    One correlated subquery per row of the same statement, each reading at most
    ``MEMBER_COUNT_CAP + 1`` entries of the membership index, so a page of segments costs
    one query however many segments or members there are.
    """
    return segments.annotate(member_count=RawSQL(
        "SELECT COUNT(*) FROM (SELECT 1 FROM segments_membership capped_m "
        "WHERE capped_m.segment_id = segments_segment.id LIMIT %s) capped",
        (MEMBER_COUNT_CAP + 1,),
    ))


def segment_members(segment: Segment) -> QuerySet[Person]:
    """Return the people who are members of ``segment`` now, joined through its memberships.

    To page them, order by ``segment_memberships__person_id`` (the membership index's
    order): ordered by the people's own key instead, PostgreSQL may walk every person of
    the workspace looking for the few members of a small segment.
    """
    return Person.objects.filter(workspace_id=segment.workspace_id,
                                 segment_memberships__segment_id=segment.pk)


def memberships(segment: Segment) -> QuerySet[Membership]:
    """The segment's memberships (one per member: what its member count counts)."""
    return Membership.objects.filter(segment_id=segment.pk)


def start_membership_job(segment: Segment, people: QuerySet[Person], *, add: bool,
                         actor=None, description: str) -> MembershipJob:
    """Record the people to add to (or remove from) a manual segment as they are now.

    A worker then changes the segment a batch at a time; a selection of at most one
    batch is changed before this returns, so a few ticked people need no worker.
    """
    _check_changeable(segment)
    job = MembershipJob(
        workspace_id=segment.workspace_id, segment=segment, requested_by=actor,
        action=MembershipJob.Action.ADD if add else MembershipJob.Action.REMOVE,
        description=description[:300])
    job = jobs.start(job, people.filter(workspace_id=segment.workspace_id),
                     queue_over=job.batch_size)
    if not job.is_finished and job.total <= job.batch_size:
        job = run_membership_job(job.pk)
    return job


def run_membership_job(job_id: int, *, max_batches: int | None = None) -> MembershipJob | None:
    """Change a job's segment batch by batch; safe to run again after any interruption."""
    return jobs.run(MembershipJob, job_id, _change_batch, max_batches=max_batches,
                    finish=_finish, select_related=("segment",))


def _check_changeable(segment: Segment) -> None:
    if not segment.is_manual:
        raise ValueError("only manual segments take people directly")
    if segment.archived:
        raise ValueError("an archived segment does not change")


def _change_batch(job: MembershipJob, person_pks: list[int]) -> None:
    segment = job.segment
    if segment.archived:
        raise jobs.Stop(f"{segment.name} was archived, so its members no longer change; "
                        f"{job.done} of {job.total} people were handled before.")
    job.changed += services.change_manual(segment, person_pks, add=job.adds, dependents=False)


def _finish(job: MembershipJob) -> None:
    """Once a job ends, have the segments that reference its segment recomputed, once."""
    if job.changed:
        services.recompute_dependents(job.segment)


def fail_membership_job(job_id: int, error: str) -> None:
    jobs.fail(MembershipJob, job_id, error)


def retry_membership_job(job: MembershipJob) -> None:
    jobs.retry(job)


def delete_profiles(segment: Segment, *, suppress: bool, actor=None) -> DeletionJob:
    """Start a deletion job for the segment's members as they are now; the segment stays."""
    return start_deletion_job(
        segment.workspace, segment_members(segment), suppress=suppress, actor=actor,
        description=f"Delete Profiles of segment \u201c{segment.name}\u201d",
        source=Suppression.Source.UI,
    )
