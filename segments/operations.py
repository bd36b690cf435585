"""What the segment pages do to people: list members, change manual segments in batches,
and delete a segment's profiles through the one deletion path.
"""

from collections.abc import Callable

from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

from people.models import DeletionJob, Person, Suppression
from people.services import start_deletion_job
from segments import services
from segments.models import Membership, Segment

# People added to or removed from a manual segment per statement batch (and transaction).
BATCH_SIZE = 1_000
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


def add_people(segment: Segment, people: QuerySet[Person], *,
               batch_size: int | None = None) -> int:
    """Add ``people`` to a manual segment in batches; return how many entered."""
    return _in_batches(segment, people, services.add_to_segment, batch_size)


def remove_people(segment: Segment, people: QuerySet[Person], *,
                  batch_size: int | None = None) -> int:
    """Remove ``people`` from a manual segment in batches; return how many left."""
    return _in_batches(segment, people, services.remove_from_segment, batch_size)


def _in_batches(segment: Segment, people: QuerySet[Person],
                change: Callable[[Segment, list[int]], int], batch_size: int | None) -> int:
    """Apply ``change`` to the people's primary keys, ``batch_size`` at a time, by keyset.

    Each batch commits on its own; at most one batch of ids is ever held in memory.
    """
    if not segment.is_manual:
        raise ValueError("only manual segments take people directly")
    if segment.archived:
        raise ValueError("an archived segment does not change")
    ids = (people.filter(workspace_id=segment.workspace_id).order_by("pk")
           .values_list("pk", flat=True))
    size = batch_size or BATCH_SIZE
    changed, after = 0, 0
    while batch := list(ids.filter(pk__gt=after)[:size]):
        changed += change(segment, batch)
        after = batch[-1]
    return changed


def delete_profiles(segment: Segment, *, suppress: bool, actor=None) -> DeletionJob:
    """Start a deletion job for the segment's members as they are now; the segment stays."""
    return start_deletion_job(
        segment.workspace, segment_members(segment), suppress=suppress, actor=actor,
        description=f"Delete Profiles of segment \u201c{segment.name}\u201d",
        source=Suppression.Source.UI,
    )
