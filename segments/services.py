"""Segments: creating them, and keeping their membership current with set-based SQL.

Membership is materialised. A full recompute inserts who entered and removes who left
in a couple of statements; a change to a few people re-evaluates every segment of the
workspace for them with one query per level of segment references. Every entry and
exit is logged through ``segments.log.write_changes``, for campaigns to consume.

Locks, in the one order every writer keeps: people first (``lock_people``, ``FOR KEY
SHARE``, by id; deletions and merges hold theirs ``FOR UPDATE``), then segments (by
id). A full recompute holds its segment's lock and never waits for a person: it skips
one that another transaction holds and leaves them to real-time evaluation.
"""

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import psycopg
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from engage.models import Workspace
from engage.sql import id_array, in_ids, insert_rows
from people.models import Person
from segments import conditions, log
from segments.models import (
    EvaluationTicket,
    Membership,
    MembershipChange,
    PendingEvaluation,
    Segment,
)

ENTERED = MembershipChange.Change.ENTERED
EXITED = MembershipChange.Change.EXITED


@dataclass
class Changes:
    entered: int = 0
    exited: int = 0


# --- segments --------------------------------------------------------------------------


def _apply_conditions(segment: Segment, tree: dict | None) -> None:
    if tree is None:
        segment.kind = Segment.Kind.MANUAL
        segment.conditions = None
        segment.time_relative = False
        return
    analysis = conditions.validate(tree, workspace=segment.workspace, segment_id=segment.pk)
    segment.kind = Segment.Kind.DATA_DRIVEN
    segment.conditions = tree
    segment.time_relative = analysis.time_relative
    segment._referenced = analysis.segment_ids


def create_segment(workspace: Workspace, *, name: str, description: str = "",
                   conditions_tree: dict | None = None) -> Segment:
    """Create a manual segment, or a data-driven one when a condition tree is given.

    A data-driven segment is computed in the background right after commit.
    """
    now = timezone.now()
    segment = Segment(workspace=workspace, name=name, description=description,
                      created_at=now, updated_at=now)
    _apply_conditions(segment, conditions_tree)
    with transaction.atomic():
        segment.save()
        if not segment.is_manual:
            segment.depends_on.set(segment._referenced)
            enqueue_recompute(segment.pk)
    return segment


def update_segment(segment: Segment, *, name: str | None = None,
                   description: str | None = None,
                   conditions_tree: dict | None = None) -> Segment:
    """Change a segment; new conditions are validated and the segment recomputed."""
    if name is not None:
        segment.name = name
    if description is not None:
        segment.description = description
    recompute = False
    if conditions_tree is not None:
        if segment.is_manual:
            raise conditions.ConditionError([("", "a manual segment has no conditions")])
        _apply_conditions(segment, conditions_tree)
        recompute = True
    segment.updated_at = timezone.now()
    with transaction.atomic():
        segment.save()
        if recompute:
            segment.depends_on.set(segment._referenced)
            enqueue_recompute(segment.pk)
    return segment


def set_archived(segment: Segment, archived: bool) -> Segment:
    """Archive a segment (its membership stops changing) or bring it back."""
    segment.archived = archived
    segment.updated_at = timezone.now()
    with transaction.atomic():
        segment.save(update_fields=["archived", "updated_at"])
        if not archived and not segment.is_manual:
            enqueue_recompute(segment.pk)
    return segment


def enqueue_recompute(segment_id: int) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task("segments.tasks.recompute_segment", segment_id,
                           task_name=f"recompute-segment-{segment_id}")
    )


# --- full recompute --------------------------------------------------------------------


def _condition_sql(segment: Segment, now, *, correlated: bool = False) -> tuple[str, list]:
    """Compile the segment's tree: set-wide for a full recompute, correlated for a few."""
    compiled = conditions.compile_tree(segment.conditions, now=now, correlated=correlated,
                                       workspace_id=segment.workspace_id)
    return compiled.sql, compiled.params


def _recompute_postgresql(segment: Segment, now) -> Changes:
    """Find the matching set once; remove who left, add who entered, log both, in order.

    The set is found by a statement of its own, which PostgreSQL may run with parallel
    workers (it never does for a statement that writes), into a temporary table dropped
    at commit; the writes then compare the membership with it. The caller holds the
    segment's lock, so no other writer of this segment commits in between.

    People who enter are locked (``FOR KEY SHARE``) so they cannot be deleted before this
    commits. One locked by someone else (being deleted, identified or merged right now)
    is skipped, not waited for: that would deadlock with a deletion, which locks people
    before segments. Skipped people are owed a real-time evaluation instead, which runs
    after their change commits.
    """
    condition, params = _condition_sql(segment, now)
    member = ("SELECT 1 FROM segments_membership m WHERE m.segment_id = %s "
              "AND m.person_id = w.id")
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE engage_wanted ON COMMIT DROP AS "
            "SELECT people_person.id FROM people_person "
            f"WHERE people_person.workspace_id = %s AND {condition}",
            [segment.workspace_id, *params],
        )
        cursor.execute("ANALYZE engage_wanted")
        # Who matches and is not a member yet: usually few, found in one pass.
        cursor.execute(
            "CREATE TEMPORARY TABLE engage_missing ON COMMIT DROP AS "
            f"SELECT w.id FROM engage_wanted w WHERE NOT EXISTS ({member})", [segment.pk])
        cursor.execute("ANALYZE engage_missing")
        cursor.execute("CREATE TEMPORARY TABLE engage_exited (person_id bigint) ON COMMIT DROP")
        cursor.execute("CREATE TEMPORARY TABLE engage_entered (id bigint) ON COMMIT DROP")
        cursor.execute(
            "WITH exited AS (DELETE FROM segments_membership m WHERE m.segment_id = %s "
            "AND NOT EXISTS (SELECT 1 FROM engage_wanted w WHERE w.id = m.person_id) "
            "RETURNING m.person_id) INSERT INTO engage_exited SELECT person_id FROM exited",
            [segment.pk])
        exited = cursor.rowcount
        cursor.execute(
            "INSERT INTO engage_entered SELECT p.id FROM people_person p "
            "JOIN engage_missing x ON x.id = p.id WHERE p.workspace_id = %s "
            "ORDER BY p.id FOR KEY SHARE OF p SKIP LOCKED", [segment.workspace_id])
        entered = cursor.rowcount
        cursor.execute(
            "INSERT INTO segments_membership (segment_id, person_id, entered_at) "
            "SELECT %s, id, %s FROM engage_entered ORDER BY id", [segment.pk, now])
        cursor.execute(
            "INSERT INTO segments_pendingevaluation (workspace_id, person_id) "
            "SELECT %s, x.id FROM engage_missing x "
            "WHERE NOT EXISTS (SELECT 1 FROM engage_entered e WHERE e.id = x.id) "
            "ORDER BY x.id ON CONFLICT DO NOTHING", [segment.workspace_id])
        if cursor.rowcount:
            workspace_id = segment.workspace_id
            # A lambda, not a partial: Django names the function when it logs a failure.
            transaction.on_commit(lambda: queue_evaluation(workspace_id), robust=True)
        log.write_changes(
            segment.workspace_id, [segment.pk], at=now,
            select="SELECT %s AS segment_id, person_id, %s AS change FROM engage_exited "
                   "UNION ALL SELECT %s, id, %s FROM engage_entered",
            params=[segment.pk, EXITED, segment.pk, ENTERED])
        cursor.execute("DROP TABLE engage_wanted, engage_missing, engage_exited, engage_entered")
    return Changes(entered=entered, exited=exited)


def _enter(segment: Segment, now) -> int:
    """Add the people who match and are not members yet (SQLite: one writer at a time)."""
    condition, params = _condition_sql(segment, now)
    where = (f"people_person.workspace_id = %s AND {condition} AND NOT EXISTS "
             "(SELECT 1 FROM segments_membership m WHERE m.segment_id = %s "
             "AND m.person_id = people_person.id)")
    where_params = [segment.workspace_id, *params, segment.pk]
    at = connection.ops.adapt_datetimefield_value(now)
    entered = log.write_changes(
        segment.workspace_id, [segment.pk], at=now,
        select="SELECT %s AS segment_id, people_person.id AS person_id, %s AS change "
               f"FROM people_person WHERE {where}",
        params=[segment.pk, ENTERED, *where_params])
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO segments_membership (segment_id, person_id, entered_at) "
            f"SELECT %s, people_person.id, %s FROM people_person WHERE {where}",
            [segment.pk, at, *where_params],
        )
    return entered


def _exit(segment: Segment, now) -> int:
    """Remove the members who no longer match (SQLite)."""
    condition, params = _condition_sql(segment, now)
    where = ("m.segment_id = %s AND NOT EXISTS (SELECT 1 FROM people_person WHERE "
             f"people_person.id = m.person_id AND {condition})")
    where_params = [segment.pk, *params]
    exited = log.write_changes(
        segment.workspace_id, [segment.pk], at=now,
        select="SELECT m.segment_id AS segment_id, m.person_id AS person_id, %s AS change "
               f"FROM segments_membership m WHERE {where}",
        params=[EXITED, *where_params])
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM segments_membership WHERE id IN (SELECT m.id FROM "
            f"segments_membership m WHERE {where})",
            where_params,
        )
    return exited


def recompute_segment(segment: Segment) -> Changes:
    """Bring a data-driven segment's membership up to date, all people at once.

    It holds the segment's lock from before it reads anyone until it commits, so it
    never interleaves with real-time evaluation, deletions or another recompute of the
    segment: the later writer always decides on what the earlier one committed.
    Segments that reference this one are recomputed after it, in the background.
    """
    with transaction.atomic():
        log.lock_segments([segment.pk])
        # Read again under the lock: the conditions may have changed, or it was archived.
        segment = Segment.objects.filter(pk=segment.pk).select_related("workspace").first()
        if segment is None or segment.is_manual or segment.archived:
            return Changes()
        now = timezone.now()
        if connection.vendor == "postgresql":
            changes = _recompute_postgresql(segment, now)
        else:
            changes = Changes(exited=_exit(segment, now), entered=_enter(segment, now))
        Segment.objects.filter(pk=segment.pk).update(computed_at=now)
        if changes.entered or changes.exited:
            for dependent in segment.dependents.filter(archived=False).values_list("pk",
                                                                                   flat=True):
                enqueue_recompute(dependent)
    return changes


# --- re-evaluating a few people --------------------------------------------------------


def _levels(workspace: Workspace, segments: list[Segment]) -> list[list[Segment]]:
    """Order segments so each comes after the segments its conditions reference."""
    by_id = {segment.pk: segment for segment in segments}
    references = {pk: set() for pk in by_id}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT d.from_segment_id, d.to_segment_id FROM segments_segment_depends_on d "
            "JOIN segments_segment s ON s.id = d.from_segment_id WHERE s.workspace_id = %s",
            [workspace.pk])
        for source, target in cursor.fetchall():
            if source in by_id and target in by_id:
                references[source].add(target)
    levels, placed = [], set()
    while len(placed) < len(by_id):
        level = [by_id[pk] for pk, refs in references.items()
                 if pk not in placed and refs <= placed]
        if not level:  # a cycle slipped through validation: evaluate the rest together
            level = [by_id[pk] for pk in by_id if pk not in placed]
        levels.append(level)
        placed |= {segment.pk for segment in level}
    return levels


def evaluate_people(workspace: Workspace, person_ids: list[int]) -> Changes:
    """Re-evaluate every active data-driven segment of the workspace for these people."""
    changes = Changes()
    if not person_ids:
        return changes
    segments = list(
        Segment.objects.in_workspace(workspace).data_driven().active()
        .only("pk", "workspace_id", "conditions")
    )
    if not segments:
        return changes
    levels = _levels(workspace, segments)
    with transaction.atomic():
        _prefer_generic_plans()
        # People first, then segments, as every writer locks them: these people cannot
        # change or be deleted, and no recompute of these segments commit, until this does.
        ids = lock_people(workspace.pk, person_ids)
        if not ids:
            return changes
        log.lock_segments(segment.pk for segment in segments)
        now = timezone.now()
        logged = []
        # Memberships of a level change only when that level is evaluated, so the current
        # ones of every level can be read at once, before any is written.
        current_all = _current_memberships(workspace, ids)
        for number, level in enumerate(levels):
            found, wanted = _matches(workspace, level, ids, now)
            if number == 0:
                ids = sorted(found)  # the people that exist, in this workspace
                if not ids:
                    return changes
            level_ids = {segment.pk for segment in level}
            current = {(s, p) for s, p in current_all if s in level_ids and p in found}
            entering = sorted(wanted - current)
            leaving = sorted(current - wanted)
            if entering:
                Membership.objects.bulk_create(
                    [Membership(segment_id=s, person_id=p, entered_at=now) for s, p in entering],
                    ignore_conflicts=True,
                )
            if leaving:
                condition = Q()
                for segment_id, person_id in leaving:
                    condition |= Q(segment_id=segment_id, person_id=person_id)
                Membership.objects.filter(condition).delete()
            logged += [(s, p, EXITED) for s, p in leaving] + [(s, p, ENTERED) for s, p in entering]
            changes.entered += len(entering)
            changes.exited += len(leaving)
        log.write_changes(workspace.pk, {s for s, _, _ in logged}, at=now, rows=logged)
    return changes


def lock_people(workspace_id: int, person_ids: Iterable[int]) -> list[int]:
    """Return which of these people exist in the workspace, locked until commit, in order.

    ``FOR KEY SHARE``: they cannot be deleted meanwhile, while their attributes may
    still be updated (a change that announces itself, so they are evaluated again).
    """
    ids = sorted(set(person_ids))
    if not ids:
        return []
    where, params = in_ids("id", ids)
    lock = " FOR KEY SHARE" if connection.features.has_select_for_update else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM people_person WHERE workspace_id = %s AND {where} "
                       f"ORDER BY id{lock}", [workspace_id, *params])
        return [row[0] for row in cursor.fetchall()]


def _current_memberships(workspace: Workspace, person_ids: list[int]) -> set[tuple[int, int]]:
    """Return the (segment, person) memberships of these people in data-driven segments."""
    people, params = in_ids("m.person_id", person_ids)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT m.segment_id, m.person_id FROM segments_membership m "
            "JOIN segments_segment s ON s.id = m.segment_id "
            f"WHERE {people} AND s.workspace_id = %s AND s.kind = %s",
            [*params, workspace.pk, Segment.Kind.DATA_DRIVEN])
        return set(cursor.fetchall())


def _matches(workspace: Workspace, segments: list[Segment], person_ids: list[int],
             now) -> tuple[set[int], set[tuple[int, int]]]:
    """Return the people found and the (segment, person) pairs that match, in one query.

    The conditions are compiled in their correlated form: each person's events are
    looked up through the (person, name, timestamp) index.
    """
    columns, params = [], []
    for segment in segments:
        sql, segment_params = _condition_sql(segment, now, correlated=True)
        columns.append(f"CASE WHEN {sql} THEN 1 ELSE 0 END")
        params += segment_params
    people, people_params = in_ids("people_person.id", person_ids)
    rows = _fetch_prepared(
        f"SELECT people_person.id, {', '.join(columns)} FROM people_person "
        f"WHERE people_person.workspace_id = %s AND {people}",
        [*params, workspace.pk, *people_params])
    return {row[0] for row in rows}, {
        (segment.pk, row[0])
        for row in rows
        for segment, matched in zip(segments, row[1:], strict=True) if matched
    }


def _fetch_prepared(sql: str, params: list) -> list[tuple]:
    """Run a query as a prepared statement of this connection (PostgreSQL), in a transaction.

    Re-evaluating people runs the same large statement (one CASE per segment) again and
    again, with other people and another "now": planning it takes several times longer
    than running it. Bound on the server and prepared, it is planned once per connection
    and set of segments. ``ENGAGE_PREPARED_STATEMENTS = False`` turns this off for
    connection poolers that cannot keep prepared statements.
    """
    if not _preparing():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    connection.ensure_connection()
    if connection.connection.prepare_threshold is None:
        # Django turns psycopg's automatic preparing off; only statements asked for
        # explicitly (below) are prepared. Django's own cursors bind on the client and
        # are never prepared.
        connection.connection.prepare_threshold = 2**31 - 1
    started = time.monotonic()
    # Wrapped as Django wraps its cursors (errors, execute wrappers); logged by hand below,
    # as Django cannot show the text of a statement run by name.
    with connection.make_cursor(_PreparingCursor(connection.connection)) as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if connection.queries_logged:
        connection.queries_log.append({"sql": f"/* prepared */ {sql}",
                                       "time": f"{time.monotonic() - started:.3f}"})
    return rows


def _prefer_generic_plans() -> None:
    """Keep one plan per prepared statement for the rest of this transaction (PostgreSQL).

    Left to choose, PostgreSQL plans every run anew for its parameters; the one plan that
    fits every person is what makes preparing pay. Django's own statements are never
    prepared, so nothing else is affected.
    """
    if _preparing():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")


def _preparing() -> bool:
    return connection.vendor == "postgresql" and settings.ENGAGE_PREPARED_STATEMENTS


class _PreparingCursor(psycopg.Cursor):
    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True if prepare is None else prepare,
                               binary=binary)


# --- manual segments -------------------------------------------------------------------


def add_to_segment(segment: Segment, people: Iterable[int]) -> int:
    """Add people (primary keys) to a manual segment; return how many entered."""
    return change_manual(segment, list(people), add=True)


def remove_from_segment(segment: Segment, people: Iterable[int]) -> int:
    """Remove people (primary keys) from a manual segment; return how many left."""
    return change_manual(segment, list(people), add=False)


def change_manual(segment: Segment, person_ids: list[int], *, add: bool,
                  dependents: bool = True) -> int:
    """Add people to a manual segment or remove them; return how many entered or left.

    The people and then the segment are locked for the change (the order every writer
    keeps), so two changes of the same segment at once each log exactly the entries and
    exits they made. With ``dependents`` false the
    caller recomputes the segments that reference this one itself (once, after many
    batches).
    """
    if not segment.is_manual:
        raise ValueError("only manual segments take people directly")
    now = timezone.now()
    with transaction.atomic():
        valid = set(lock_people(segment.workspace_id, person_ids))
        log.lock_segments([segment.pk])
        current = set(Membership.objects.filter(segment=segment, person_id__in=valid)
                      .values_list("person_id", flat=True))
        moving = sorted(valid - current if add else current)
        if not moving:
            return 0
        if add:
            Membership.objects.bulk_create(
                [Membership(segment=segment, person_id=p, entered_at=now) for p in moving],
                ignore_conflicts=True)
        else:
            Membership.objects.filter(segment=segment, person_id__in=moving).delete()
        log.write_changes(segment.workspace_id, [segment.pk], at=now,
                          rows=[(segment.pk, p, ENTERED if add else EXITED) for p in moving])
        if dependents:
            recompute_dependents(segment)
    return len(moving)


def recompute_dependents(segment: Segment) -> None:
    """Have the active segments whose conditions reference ``segment`` recomputed."""
    for dependent in segment.dependents.filter(archived=False).values_list("pk", flat=True):
        enqueue_recompute(dependent)


# --- reacting to changes of people -----------------------------------------------------


def forget_memberships(workspace: Workspace, person_ids: list[int]) -> None:
    """Record the exits of people about to be deleted and drop their memberships.

    The caller has locked the people; their segments are locked next, and the
    memberships read again under those locks, so a recompute that committed meanwhile
    is seen and no exit is logged twice.
    """
    memberships = Membership.objects.filter(person_id__in=person_ids,
                                            segment__workspace=workspace)
    segment_ids = set(memberships.values_list("segment_id", flat=True).distinct())
    if not segment_ids:
        return
    log.lock_segments(segment_ids)
    now = timezone.now()
    rows = sorted(memberships.values_list("segment_id", "person_id"))
    if not rows:
        return
    log.write_changes(workspace.pk, {s for s, _ in rows}, at=now,
                      rows=[(s, p, EXITED) for s, p in rows])
    memberships.delete()
    segment_ids = {s for s, _ in rows}
    for dependent in (Segment.objects.filter(depends_on__in=segment_ids, archived=False)
                      .values_list("pk", flat=True).distinct()):
        enqueue_recompute(dependent)


def move_manual_memberships(workspace: Workspace, primary_id: int, secondary_id: int) -> None:
    """Give the primary person the manual segments of the secondary that they lack."""
    lacking = (
        Membership.objects.filter(person_id=secondary_id, segment__kind=Segment.Kind.MANUAL,
                                  segment__workspace=workspace)
        .exclude(segment__memberships__person_id=primary_id)
        .values_list("segment_id", flat=True)
    )
    candidates = list(lacking)
    if not candidates:
        return
    log.lock_segments(candidates)
    segment_ids = sorted(lacking)
    now = timezone.now()
    Membership.objects.bulk_create(
        [Membership(segment_id=s, person_id=primary_id, entered_at=now) for s in segment_ids],
        ignore_conflicts=True)
    log.write_changes(workspace.pk, segment_ids, at=now,
                      rows=[(s, primary_id, ENTERED) for s in segment_ids])


# A ticket raised this long ago while people are still pending means its task was lost.
TICKET_STALE = timedelta(seconds=10)


def note_changed_people(workspace_id: int, person_ids: list[int]) -> bool:
    """Record people owed a re-evaluation; after commit, queue it. Tell if any was owed.

    It runs in the transaction of the change, so what is owed commits with the change
    (or not at all). Queueing the task comes after commit and may fail (a lock, a dropped
    connection); what is owed stays recorded, and ``queue_owed_evaluations`` finds it.
    """
    if not person_ids:
        return False
    # This runs with every change to anyone, so it is written as two fixed statements.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {Segment._meta.db_table} WHERE workspace_id = %s AND kind = %s "
            "AND NOT archived LIMIT 1", [workspace_id, Segment.Kind.DATA_DRIVEN])
        if cursor.fetchone() is None:
            return False
    owed = sorted(set(person_ids))
    if connection.vendor == "postgresql":  # the ids as one array, no row built in Python
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {PendingEvaluation._meta.db_table} (workspace_id, person_id) "
                "SELECT %s, unnest(%s::bigint[]) ON CONFLICT (workspace_id, person_id) "
                "DO NOTHING", [workspace_id, id_array(owed)])
    else:
        insert_rows(PendingEvaluation, ["workspace", "person_id"],
                    [(workspace_id, person_id) for person_id in owed],
                    skip_conflicts_on="(workspace_id, person_id)")
    transaction.on_commit(lambda: queue_evaluation(workspace_id), robust=True)
    return True


def queue_evaluation(workspace_id: int, *, sweep: bool = True) -> bool:
    """Queue the task evaluating the workspace's pending people, once per burst.

    The ticket is raised first; a ticket raised already means a task is queued, unless
    it was raised longer than ``TICKET_STALE`` ago (its enqueue failed): then it is
    queued again. Once a task is queued, any other workspace owed an evaluation is
    queued too (with ``sweep``): the queue works again. Tell whether a task was queued.
    """
    from django_q.tasks import async_task

    now = timezone.now()
    ticket = EvaluationTicket._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ticket} (workspace_id, queued_at) VALUES (%s, %s) "
            f"ON CONFLICT (workspace_id) DO UPDATE SET queued_at = EXCLUDED.queued_at "
            f"WHERE {ticket}.queued_at IS NULL OR {ticket}.queued_at < %s RETURNING id",
            [workspace_id, adapt(now), adapt(now - TICKET_STALE)])
        raised = cursor.fetchone() is not None
    if not raised:
        return False
    try:
        async_task("segments.tasks.evaluate_pending", workspace_id,
                   task_name=f"evaluate-pending-{workspace_id}")
    except Exception:
        # Lowered again, the next change queues the task at once; if even this fails,
        # the ticket goes stale and the next change or the sweeper queues it.
        with contextlib.suppress(DatabaseError):
            EvaluationTicket.objects.filter(workspace_id=workspace_id,
                                            queued_at=now).update(queued_at=None)
        raise
    if sweep:
        queue_owed_evaluations(exclude=workspace_id)
    return True


def queue_owed_evaluations(*, exclude: int | None = None) -> int:
    """Queue the evaluation of every workspace with people pending and no live ticket.

    What the sweeper runs; return how many workspaces were queued.
    """
    live = EvaluationTicket.objects.filter(workspace_id=OuterRef("pk"),
                                           queued_at__gte=timezone.now() - TICKET_STALE)
    owed = (Workspace.objects
            .filter(Exists(PendingEvaluation.objects.filter(workspace_id=OuterRef("pk"))))
            .exclude(Exists(live)).exclude(pk=exclude).values_list("pk", flat=True))
    return sum(queue_evaluation(workspace_id, sweep=False) for workspace_id in owed)


def evaluate_pending(workspace_id: int, *, batch_size: int = 500) -> Changes:
    """Re-evaluate everyone queued for the workspace, in batches, until none is left."""
    total = Changes()
    workspace = Workspace.objects.filter(pk=workspace_id).first()
    if workspace is None:
        return total
    # Lower the ticket first: a change queued from now on queues a new task.
    EvaluationTicket.objects.filter(workspace_id=workspace_id).update(queued_at=None)
    last = 0
    while True:
        with transaction.atomic():
            rows = list(PendingEvaluation.objects.filter(workspace_id=workspace_id, pk__gt=last)
                        .order_by("pk").values_list("pk", "person_id")[:batch_size])
            if not rows:
                return total
            last = rows[-1][0]
            # The people are locked before their pending rows are claimed: a change holds
            # its person's lock while it records them pending, so the other way round the
            # two could wait for each other.
            lock_people(workspace_id, [person_id for _, person_id in rows])
            claimed, params = in_ids("id", [pk for pk, _ in rows])
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {PendingEvaluation._meta.db_table} "
                               f"WHERE {claimed} RETURNING person_id", params)
                person_ids = [row[0] for row in cursor.fetchall()]
            changes = evaluate_people(workspace, person_ids)
        total.entered += changes.entered
        total.exited += changes.exited


@dataclass
class Preview:
    count: int
    sample: list[Person]


def preview(workspace: Workspace, tree: dict, *, sample_size: int = 10) -> Preview:
    """Count and sample the people an unsaved tree matches (it is validated first).

    One pass over the matching set gives both: the count as a window over all of it, the
    sample as the newest ``sample_size`` of it.
    """
    conditions.validate(tree, workspace=workspace)
    compiled = conditions.compile_tree(tree, workspace_id=workspace.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT people_person.id, COUNT(*) OVER () FROM people_person "
            f"WHERE people_person.workspace_id = %s AND {compiled.sql} "
            "ORDER BY people_person.id DESC LIMIT %s",
            [workspace.pk, *compiled.params, sample_size])
        rows = cursor.fetchall()
    people = Person.objects.in_bulk([pk for pk, _ in rows])
    return Preview(count=rows[0][1] if rows else 0, sample=[people[pk] for pk, _ in rows])