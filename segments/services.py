"""Segments: creating them, and keeping their membership current with set-based SQL.

Membership is materialised. A full recompute inserts who entered and removes who left
in a couple of statements; a change to a few people re-evaluates every segment of the
workspace for them with one query per level of segment references. Every entry and
exit is written to ``MembershipChange``, in order, for campaigns to consume.
"""

import time
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from engage.models import Workspace
from engage.sql import in_ids, insert_rows
from people.models import Person
from segments import conditions
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
    at commit; the writes then compare the membership with it.
    """
    condition, params = _condition_sql(segment, now)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE engage_wanted ON COMMIT DROP AS "
            "SELECT people_person.id FROM people_person "
            f"WHERE people_person.workspace_id = %s AND {condition}",
            [segment.workspace_id, *params],
        )
        cursor.execute("ANALYZE engage_wanted")
        cursor.execute(
            """
            WITH exited AS (
                DELETE FROM segments_membership m WHERE m.segment_id = %s
                AND NOT EXISTS (SELECT 1 FROM engage_wanted w WHERE w.id = m.person_id)
                RETURNING m.person_id
            ), entered AS (
                INSERT INTO segments_membership (segment_id, person_id, entered_at)
                SELECT %s, w.id, %s FROM engage_wanted w
                WHERE NOT EXISTS (SELECT 1 FROM segments_membership m
                                  WHERE m.segment_id = %s AND m.person_id = w.id)
                ORDER BY w.id ON CONFLICT DO NOTHING RETURNING person_id
            ), logged AS (
                INSERT INTO segments_membershipchange
                    (workspace_id, segment_id, person_id, change, at)
                SELECT %s, %s, c.person_id, c.change, %s FROM (
                    SELECT person_id, %s AS change, 0 AS step FROM exited
                    UNION ALL SELECT person_id, %s, 1 FROM entered
                ) c ORDER BY c.step, c.person_id
                RETURNING change
            )
            SELECT COUNT(*) FILTER (WHERE change = %s), COUNT(*) FILTER (WHERE change = %s)
            FROM logged
            """,
            [segment.pk, segment.pk, now, segment.pk,
             segment.workspace_id, segment.pk, now, EXITED, ENTERED, ENTERED, EXITED],
        )
        entered, exited = cursor.fetchone()
        cursor.execute("DROP TABLE engage_wanted")
    return Changes(entered=entered, exited=exited)


def _enter(segment: Segment, now) -> int:
    """Add the people who match and are not members yet (SQLite: one writer at a time)."""
    condition, params = _condition_sql(segment, now)
    where = (f"people_person.workspace_id = %s AND {condition} AND NOT EXISTS "
             "(SELECT 1 FROM segments_membership m WHERE m.segment_id = %s "
             "AND m.person_id = people_person.id)")
    where_params = [segment.workspace_id, *params, segment.pk]
    at = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO segments_membershipchange (workspace_id, segment_id, person_id, "
            f"change, at) SELECT %s, %s, people_person.id, %s, %s FROM people_person "
            f"WHERE {where} ORDER BY people_person.id",
            [segment.workspace_id, segment.pk, ENTERED, at, *where_params],
        )
        entered = cursor.rowcount
        cursor.execute(
            "INSERT INTO segments_membership (segment_id, person_id, entered_at) "
            f"SELECT %s, people_person.id, %s FROM people_person WHERE {where}",
            [segment.pk, at, *where_params],
        )
        return entered


def _exit(segment: Segment, now) -> int:
    """Remove the members who no longer match (SQLite)."""
    at = connection.ops.adapt_datetimefield_value(now)
    condition, params = _condition_sql(segment, now)
    where = ("m.segment_id = %s AND NOT EXISTS (SELECT 1 FROM people_person WHERE "
             f"people_person.id = m.person_id AND {condition})")
    where_params = [segment.pk, *params]
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO segments_membershipchange (workspace_id, segment_id, person_id, "
            "change, at) SELECT %s, %s, m.person_id, %s, %s FROM segments_membership m "
            f"WHERE {where} ORDER BY m.person_id",
            [segment.workspace_id, segment.pk, EXITED, at, *where_params],
        )
        exited = cursor.rowcount
        cursor.execute(
            f"DELETE FROM segments_membership WHERE id IN (SELECT m.id FROM "
            f"segments_membership m WHERE {where})",
            where_params,
        )
        return exited


def recompute_segment(segment: Segment) -> Changes:
    """Bring a data-driven segment's membership up to date, all people at once.

    Segments that reference this one are recomputed after it, in the background.
    """
    if segment.is_manual or segment.archived:
        return Changes()
    now = timezone.now()
    with transaction.atomic():
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
    now = timezone.now()
    with transaction.atomic():
        _prefer_generic_plans()
        ids = sorted(set(person_ids))
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
            if entering or leaving:
                MembershipChange.objects.bulk_create(
                    [MembershipChange(workspace=workspace, segment_id=s, person_id=p,
                                      change=ENTERED, at=now) for s, p in entering]
                    + [MembershipChange(workspace=workspace, segment_id=s, person_id=p,
                                        change=EXITED, at=now) for s, p in leaving]
                )
            changes.entered += len(entering)
            changes.exited += len(leaving)
    return changes


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

    The segment's row is locked for the change, so two changes of the same segment at
    once each log exactly the entries and exits they made. With ``dependents`` false the
    caller recomputes the segments that reference this one itself (once, after many
    batches).
    """
    if not segment.is_manual:
        raise ValueError("only manual segments take people directly")
    now = timezone.now()
    with transaction.atomic():
        Segment.objects.select_for_update().filter(pk=segment.pk).values_list("pk").first()
        valid = set(Person.objects.filter(workspace_id=segment.workspace_id, pk__in=person_ids)
                    .values_list("pk", flat=True))
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
        MembershipChange.objects.bulk_create([
            MembershipChange(workspace_id=segment.workspace_id, segment=segment, person_id=p,
                             change=ENTERED if add else EXITED, at=now)
            for p in moving
        ])
        if dependents:
            recompute_dependents(segment)
    return len(moving)


def recompute_dependents(segment: Segment) -> None:
    """Have the active segments whose conditions reference ``segment`` recomputed."""
    for dependent in segment.dependents.filter(archived=False).values_list("pk", flat=True):
        enqueue_recompute(dependent)


# --- reacting to changes of people -----------------------------------------------------


def forget_memberships(workspace: Workspace, person_ids: list[int]) -> None:
    """Record the exits of people about to be deleted and drop their memberships."""
    now = timezone.now()
    memberships = Membership.objects.filter(person_id__in=person_ids,
                                            segment__workspace=workspace)
    rows = list(memberships.values_list("segment_id", "person_id"))
    if not rows:
        return
    MembershipChange.objects.bulk_create([
        MembershipChange(workspace=workspace, segment_id=s, person_id=p, change=EXITED, at=now)
        for s, p in sorted(rows)
    ])
    memberships.delete()
    segment_ids = {s for s, _ in rows}
    for dependent in (Segment.objects.filter(depends_on__in=segment_ids, archived=False)
                      .values_list("pk", flat=True).distinct()):
        enqueue_recompute(dependent)


def move_manual_memberships(workspace: Workspace, primary_id: int, secondary_id: int) -> None:
    """Give the primary person the manual segments of the secondary that they lack."""
    now = timezone.now()
    lacking = (
        Membership.objects.filter(person_id=secondary_id, segment__kind=Segment.Kind.MANUAL,
                                  segment__workspace=workspace)
        .exclude(segment__memberships__person_id=primary_id)
        .values_list("segment_id", flat=True)
    )
    segment_ids = list(lacking)
    Membership.objects.bulk_create(
        [Membership(segment_id=s, person_id=primary_id, entered_at=now) for s in segment_ids],
        ignore_conflicts=True)
    MembershipChange.objects.bulk_create([
        MembershipChange(workspace=workspace, segment_id=s, person_id=primary_id,
                         change=ENTERED, at=now)
        for s in segment_ids
    ])


def note_changed_people(workspace_id: int, person_ids: list[int]) -> bool:
    """Queue people for re-evaluation; enqueue one task per burst. Tell if one was."""
    from django_q.tasks import async_task

    if not person_ids:
        return False
    # This runs after every change to anyone, so it is written as three fixed statements.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {Segment._meta.db_table} WHERE workspace_id = %s AND kind = %s "
            "AND NOT archived LIMIT 1", [workspace_id, Segment.Kind.DATA_DRIVEN])
        if cursor.fetchone() is None:
            return False
    insert_rows(PendingEvaluation, ["workspace", "person_id"],
                [(workspace_id, person_id) for person_id in sorted(set(person_ids))],
                skip_conflicts_on="(workspace_id, person_id)")
    # One ticket per workspace: made queued, or flipped to queued; no row when it already was.
    ticket = EvaluationTicket._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ticket} (workspace_id, queued) VALUES (%s, %s) "
            f"ON CONFLICT (workspace_id) DO UPDATE SET queued = %s "
            f"WHERE NOT {ticket}.queued RETURNING id", [workspace_id, True, True])
        flipped = cursor.fetchone() is not None
    if flipped:
        async_task("segments.tasks.evaluate_pending", workspace_id,
                   task_name=f"evaluate-pending-{workspace_id}")
    return bool(flipped)


def evaluate_pending(workspace_id: int, *, batch_size: int = 500) -> Changes:
    """Re-evaluate everyone queued for the workspace, in batches, until none is left."""
    total = Changes()
    workspace = Workspace.objects.filter(pk=workspace_id).first()
    if workspace is None:
        return total
    # Lower the flag first: a change queued from now on enqueues a new task.
    EvaluationTicket.objects.filter(workspace_id=workspace_id).update(queued=False)
    while True:
        with transaction.atomic():
            pending = list(
                PendingEvaluation.objects.filter(workspace_id=workspace_id)
                .select_for_update(skip_locked=True).order_by("pk")[:batch_size]
            )
            if not pending:
                return total
            PendingEvaluation.objects.filter(pk__in=[row.pk for row in pending]).delete()
            changes = evaluate_people(workspace, [row.person_id for row in pending])
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