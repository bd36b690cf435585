"""Deleting people: one, many in bounded batches, with or without suppressing them."""

import json
from collections.abc import Iterable

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from engage.models import Workspace
from engage.sql import in_ids, insert_rows
from people.models import Activity, Person, Suppression
from people.services.common import (
    DeletionResult,
    Ref,
    check_ref,
    find_person,
    lock_identifiers,
    suppression_group,
)
from people.signals import people_deleting

SUPPRESSION_FIELDS = ["workspace", "identifier_type", "value", "group", "created_at",
                      "created_by", "source"]
# The unique index that keeps one row per suppressed identifier.
SUPPRESSION_INDEX = "(workspace_id, identifier_type, value)"


def _person_ids(workspace: Workspace, people) -> Iterable[list[int]]:
    """Yield the primary keys of ``people`` in batches, never all at once."""
    size = settings.ENGAGE_DELETE_BATCH_SIZE
    if isinstance(people, QuerySet):
        ids = people.filter(workspace=workspace).order_by("pk").values_list("pk", flat=True)
        last = 0
        while True:
            batch = list(ids.filter(pk__gt=last)[:size])
            if not batch:
                return
            yield batch
            last = batch[-1]
    batch = []
    for item in people:
        batch.append(item.pk if isinstance(item, Person) else int(item))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def delete_people(
    workspace: Workspace,
    people: QuerySet | Iterable[Person | int],
    *,
    suppress: bool,
    actor=None,
    source: str = Suppression.Source.UI,
) -> DeletionResult:
    """Delete people and all their data; with ``suppress``, also suppress their identifiers.

    Works in batches, each in its own transaction, with a handful of statements a batch:
    memory stays bounded and a retry after a failure carries on where it stopped.
    Profiles, events, devices and what other apps keep (via ``people_deleting``) go;
    activity stays tied to the cio_id, or is made anonymous when suppressing.
    """
    result = DeletionResult()
    for batch in _person_ids(workspace, people):
        with transaction.atomic():
            deleted, suppressed = _delete_batch(
                workspace, batch, suppress=suppress, actor=actor, source=source
            )
        result.deleted += deleted
        result.suppressed += suppressed
    return result


def _delete_batch(
    workspace: Workspace,
    person_ids: list[int],
    *,
    suppress: bool,
    actor=None,
    source: str = Suppression.Source.UI,
    reason: dict | None = None,
) -> tuple[int, int]:
    """Delete one batch of people inside the caller's transaction; return the counts.

    A fixed handful of set-based statements whatever the batch size: no row becomes a
    Python object.
    """
    postgres = connection.vendor == "postgresql"
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    json_param = "CAST(%s AS jsonb)" if postgres else "%s"
    with connection.cursor() as cursor:
        batch, batch_params = in_ids("id", person_ids)
        locked = set()
        if suppress and postgres:
            # The identifiers to suppress are locked before the people (see
            # lock_identifiers), so that nobody stores one of them meanwhile.
            cursor.execute(f"SELECT customer_id, email_key FROM people_person "
                           f"WHERE workspace_id = %s AND {batch}", [workspace.pk, *batch_params])
            locked = _identifiers(cursor.fetchall())
            lock_identifiers(workspace, locked)
        cursor.execute(
            f"SELECT id, cio_id, customer_id, email_key FROM people_person "
            f"WHERE workspace_id = %s AND {batch} "
            f"ORDER BY id{' FOR UPDATE' if postgres else ''}",
            [workspace.pk, *batch_params],
        )
        rows = cursor.fetchall()
        if not rows:
            return 0, 0
        if suppress and postgres and (changed := _identifiers([row[2:] for row in rows]) - locked):
            lock_identifiers(workspace, changed)  # given to them since: rare
        pks = [row[0] for row in rows]
        cio_ids = [row[1] for row in rows]
        people_deleting.send(
            sender=Person, workspace=workspace, person_ids=pks, cio_ids=cio_ids,
            suppress=suppress,
        )
        ids, ids_params = in_ids("person_id", pks)
        cursor.execute(f"DELETE FROM people_event WHERE {ids}", ids_params)
        cursor.execute(f"DELETE FROM people_device WHERE {ids}", ids_params)
        people, people_params = in_ids("id", pks)
        suppressed = 0
        if suppress:
            created_at, actor_id = timezone.now(), actor.pk if actor else None
            identifiers = [(row[0], "id", row[2]) for row in rows if row[2] is not None]
            if workspace.email_is_identifier:
                identifiers += [(row[0], "email", row[3]) for row in rows if row[3] is not None]
            groups = {row[0]: suppression_group(workspace.pk, row[1]) for row in rows}
            suppressed = len(insert_rows(
                Suppression, SUPPRESSION_FIELDS,
                [(workspace.pk, kind, value, groups[pk], created_at, actor_id, source)
                 for pk, kind, value in identifiers],
                returning=("id",), skip_conflicts_on=SUPPRESSION_INDEX))
            cursor.execute(
                f"UPDATE people_activity SET cio_id = NULL, data = {json_param}, forgotten = %s "
                "WHERE workspace_id = %s AND cio_id IN (SELECT cio_id FROM people_person "
                f"WHERE {people})",
                ["{}", True, workspace.pk, *people_params],
            )
            cursor.execute(
                "INSERT INTO people_activity (workspace_id, cio_id, kind, data, forgotten, "
                f"created_at) SELECT workspace_id, NULL, %s, {json_param}, %s, %s "
                f"FROM people_person WHERE {people}",
                [Activity.Kind.SUPPRESSED, "{}", True, now, *people_params],
            )
        else:
            data = json.dumps({"source": source, **(reason or {})})
            cursor.execute(
                "INSERT INTO people_activity (workspace_id, cio_id, kind, data, forgotten, "
                f"created_at) SELECT workspace_id, cio_id, %s, {json_param}, %s, %s "
                f"FROM people_person WHERE {people}",
                [Activity.Kind.DELETED, data, False, now, *people_params],
            )
        cursor.execute(f"DELETE FROM people_person WHERE {people}", people_params)
    return len(pks), suppressed


def _identifiers(rows) -> set[tuple[str, str]]:
    """Return the (type, key) pairs of rows of (customer_id, email_key)."""
    return ({("id", customer_id) for customer_id, _ in rows if customer_id}
            | {("email", key) for _, key in rows if key})


def delete_person(
    workspace: Workspace, ref: Ref, *, actor=None, source: str = Suppression.Source.API
) -> bool:
    """Delete the person ``ref`` names, if there is one; tell whether someone was deleted."""
    check_ref(ref)
    with transaction.atomic():
        person = find_person(workspace, ref)
        if person is None:
            return False
        deleted, _ = _delete_batch(workspace, [person.pk], suppress=False, actor=actor,
                                   source=source)
    return bool(deleted)
