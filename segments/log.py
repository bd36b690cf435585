"""The membership log: every entry into a segment and exit from it, in order, for campaigns.

One writer. ``write_changes`` is the only code that adds to ``MembershipChange``. It takes
the row lock of every segment it writes for (in id order) and holds it until commit, so
the writers of one segment run one after another, and the log ids of a segment follow
the order in which its changes committed. After commit it sends ``memberships_changed``.

Consumer contract. Read with ``read_changes(workspace, segment_ids, after=cursor)`` and
keep the returned cursor (a mapping of segment id to the last log id read, stored as
JSON). Within one segment, no entry can commit later with a smaller id than one already
committed, so reading "after the last id I saw, per segment" never skips an entry and
never reads one twice. Ids are not ordered across segments (writers of different
segments run at once), which is why the cursor is per segment. Entries and exits of one
person alternate within a segment, starting with an entry. Nothing is ever updated or
deleted, except with the segment or the workspace.
"""

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import Q

from engage.sql import in_ids, insert_rows
from segments.models import MembershipChange, Segment
from segments.signals import memberships_changed

ENTERED = MembershipChange.Change.ENTERED
EXITED = MembershipChange.Change.EXITED
LOG_COLUMNS = "workspace_id, segment_id, person_id, change, at"


def lock_segments(segment_ids: Iterable[int]) -> None:
    """Take the row locks of these segments until commit, in id order (PostgreSQL).

    Every writer of a segment's membership holds it, so writes of one segment, and the
    reads they are decided on, never interleave. It is a ``FOR NO KEY UPDATE`` lock:
    memberships referencing the segment may still be inserted meanwhile.
    """
    ids = sorted(set(segment_ids))
    if not ids or not connection.features.has_select_for_update:
        return
    where, params = in_ids("id", ids)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {Segment._meta.db_table} WHERE {where} ORDER BY id "
                       "FOR NO KEY UPDATE", params)


def write_changes(workspace_id: int, segment_ids: Collection[int], *, at,
                  rows: Iterable[tuple[int, int, str]] = (),
                  select: str = "", params: Iterable = ()) -> int:
    """Log entries and exits of the given segments; return how many were logged.

    The changes are either ``rows`` of (segment id, person id, change), logged in their
    order, or a ``select`` statement yielding those three columns (set-based writers),
    logged exits first, then by segment and person.
    Must run inside the transaction that changes the memberships themselves.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("the membership log is written in the transaction of the change")
    lock_segments(segment_ids)
    if select:
        stamp = connection.ops.adapt_datetimefield_value(at)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {MembershipChange._meta.db_table} ({LOG_COLUMNS}) "
                f"SELECT %s, c.segment_id, c.person_id, c.change, %s FROM ({select}) c "
                f"ORDER BY CASE WHEN c.change = %s THEN 0 ELSE 1 END, c.segment_id, "
                "c.person_id",
                [workspace_id, stamp, *params, EXITED])
            written = cursor.rowcount
    else:
        values = [(workspace_id, segment, person, change, at)
                  for segment, person, change in rows]
        insert_rows(MembershipChange, ["workspace", "segment", "person_id", "change", "at"],
                    values)
        written = len(values)
    if written:
        changed = sorted(set(segment_ids))
        # A lambda, not a partial: Django names the function when it logs a failure.
        transaction.on_commit(lambda: _announce(workspace_id, changed), robust=True)
    return written


def _announce(workspace_id: int, segment_ids: list[int]) -> None:
    memberships_changed.send(sender=MembershipChange, workspace_id=workspace_id,
                             segment_ids=segment_ids)


@dataclass
class Page:
    changes: list[MembershipChange]
    # Segment id to the last log id read: pass it back as ``after`` to read on.
    cursor: dict[int, int] = field(default_factory=dict)


def read_changes(workspace, segment_ids: Iterable[int], *,
                 after: Mapping[int | str, int] | None = None, limit: int = 1000) -> Page:
    """Return up to ``limit`` log entries of these segments after ``after``, and the cursor.

    Entries come in log id order. ``after`` is a cursor returned before (its keys may be
    strings, as JSON stores them); a segment missing from it is read from its start.
    """
    position = {int(key): int(value) for key, value in (after or {}).items()}
    ids = sorted({int(segment_id) for segment_id in segment_ids})
    cursor = {segment_id: position.get(segment_id, 0) for segment_id in ids}
    if not ids:
        return Page([], cursor)
    condition = Q()
    for segment_id in ids:
        condition |= Q(segment_id=segment_id, pk__gt=cursor[segment_id])
    changes = list(MembershipChange.objects.filter(condition, workspace=workspace)
                   .order_by("pk")[:limit])
    for change in changes:
        cursor[change.segment_id] = change.pk
    return Page(changes, cursor)
