"""The suppression list: checking identifiers against it, suppressing, unsuppressing."""

import secrets
from collections.abc import Iterable

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from engage.models import Workspace
from engage.sql import in_values, insert_rows, update_rows
from people.models import Activity, Person, Suppression
from people.services.common import (
    ACTIVITY_FIELDS,
    Ref,
    announce_change,
    check_ref,
    find_person,
    lock_identifiers,
    suppression_group,
)
from people.services.deletion import _delete_batch
from people.validation import email_key


def _suppression_filter(refs: Iterable[Ref]) -> Q | None:
    """Match the suppressions of ``refs`` (ids and emails): two IN lists, however many."""
    query = None
    for kind, values in _suppressible(refs):
        condition = Q(identifier_type=kind, value__in=values)
        query = condition if query is None else query | condition
    return query


def _suppressible(refs: Iterable[Ref]) -> list[tuple[str, list[str]]]:
    """Return the ids and the (folded) emails among ``refs``, by identifier type."""
    ids, emails = set(), set()
    for ref in refs:
        if ref.kind == "id":
            ids.add(ref.value)
        elif ref.kind == "email":
            emails.add(email_key(ref.value))
    return [(kind, sorted(values)) for kind, values in
            ((Suppression.IdentifierType.ID, ids), (Suppression.IdentifierType.EMAIL, emails))
            if values]


def suppressed_now(workspace: Workspace, refs: Iterable[Ref]) -> bool:
    """Lock the ids and emails among ``refs`` and tell whether any is suppressed now.

    Call it in the transaction that is about to store them: a suppression of one of them
    either committed before (and is seen here) or waits until this transaction ends.
    """
    refs = list(refs)
    wanted = _suppressible(refs)
    if not wanted:
        return False
    lock_identifiers(workspace, [(kind, value) for kind, values in wanted for value in values])
    return is_suppressed(workspace, refs)


def suppressions_of(workspace: Workspace, refs: Iterable[Ref], *,
                    first_only: bool = False) -> set[tuple[str, str]]:
    """Return the (identifier type, value) pairs of ``refs`` that the workspace suppresses.

    One statement with two IN lists (ids, emails), however many references.
    """
    wanted = _suppressible(refs)
    if not wanted:
        return set()
    conditions, params = [], [workspace.pk]
    for kind, values in wanted:
        values_sql, values_params = in_values("value", values)
        conditions.append(f"(identifier_type = %s AND {values_sql})")
        params += [kind, *values_params]
    sql = (f"SELECT identifier_type, value FROM {Suppression._meta.db_table} "
           f"WHERE workspace_id = %s AND ({' OR '.join(conditions)})")
    if first_only:
        sql += " LIMIT 1"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return set(cursor.fetchall())


def is_suppressed(workspace: Workspace, refs: Iterable[Ref]) -> bool:
    """Tell whether any of ``refs`` is on the workspace's suppression list."""
    return bool(suppressions_of(workspace, refs, first_only=True))


def forget_suppressed_emails(workspace: Workspace, people: list[tuple[int, str]]) -> set[int]:
    """Take suppressed emails off the people holding them; return those people's keys.

    ``people`` are (primary key, email key) pairs. Where email is not an identifier it is
    an attribute like any other, so someone may be given a suppressed email there; it
    must not become their identifier. One query for the lot, and a few more statements
    only when someone holds a suppressed email.
    """
    keys = sorted({key for _, key in people})
    if not keys:
        return set()
    suppressed = set(Suppression.objects.filter(
        workspace=workspace, identifier_type=Suppression.IdentifierType.EMAIL,
        value__in=keys).values_list("value", flat=True))
    holders = {pk for pk, key in people if key in suppressed}
    if not holders:
        return set()
    now = timezone.now()
    rows = list(Person.objects.filter(workspace=workspace, pk__in=holders)
                .values_list("pk", "cio_id", "attributes"))
    update_rows(Person, ["email", "email_key", "attributes", "updated_at"], [
        (pk, None, None, {name: value for name, value in attributes.items() if name != "email"},
         now) for pk, _, attributes in rows])
    insert_rows(Activity, ACTIVITY_FIELDS, [
        (workspace.pk, cio_id, Activity.Kind.ATTRIBUTES_CHANGED, {"changed": {"email": None}},
         False, now) for _, cio_id, _ in rows])
    announce_change(workspace, sorted(holders))
    return holders


def suppress_identifier(
    workspace: Workspace, ref: Ref, *, actor=None, source: str = Suppression.Source.API
) -> int:
    """Delete the person ``ref`` names and suppress all their identifiers.

    With nobody behind an id or email, that identifier alone is suppressed, so it can
    never be added. Return the number of identifiers suppressed.
    """
    check_ref(ref)
    with transaction.atomic():
        # The identifiers are locked all at once (one order), then the person by the
        # deletion (see lock_identifiers).
        person = find_person(workspace, ref, lock=False)
        identifiers = [(kind, value) for kind, values in _suppressible([ref]) for value in values]
        if person is not None:
            identifiers += [("id", person.customer_id), ("email", person.email_key)]
        lock_identifiers(workspace, identifiers)
        # Read again: whoever holds it now keeps it until this transaction ends.
        person = find_person(workspace, ref, lock=False)
        if person is not None:
            deleted, suppressed = _delete_batch(
                workspace, [person.pk], suppress=True, actor=actor, source=source
            )
            if deleted:
                return suppressed
        if ref.kind == "cio_id":
            return 0
        kind = ref.kind if ref.kind == "id" or workspace.email_is_identifier else None
        if kind is None:
            return 0
        _, created = Suppression.objects.get_or_create(
            workspace=workspace,
            identifier_type=kind,
            value=email_key(ref.value) if kind == "email" else ref.value,
            defaults={"group": secrets.token_hex(8), "created_at": timezone.now(),
                      "created_by": actor, "source": source},
        )
        return int(created)


def unsuppress_identifier(workspace: Workspace, ref: Ref) -> int:
    """Free a suppressed identifier and the others suppressed with it; return how many.

    ``cio_<id>`` frees every identifier the person with that cio_id had when they were
    suppressed. The profile is not restored: a later identify creates a new person with
    no history.
    """
    check_ref(ref)
    if ref.kind == "cio_id":
        removed, _ = Suppression.objects.filter(
            workspace=workspace, group=suppression_group(workspace.pk, ref.value)).delete()
        return removed
    query = _suppression_filter([ref])
    if query is None:
        return 0
    with transaction.atomic():
        groups = Suppression.objects.filter(query, workspace=workspace).values("group")
        removed, _ = Suppression.objects.filter(workspace=workspace, group__in=groups).delete()
    return removed
