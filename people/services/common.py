"""What every people service shares: references to people, outcomes, finding a person,
the activity log, and announcing changes after commit."""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from engage.models import Workspace
from engage.sql import insert_rows, select_models
from people import validation as v
from people.errors import InvalidInput, Problem
from people.models import Activity, Person
from people.signals import StoredEvent, events_stored, people_changed, people_changing


@dataclass(frozen=True)
class Ref:
    """A reference to a person by one identifier: ``id``, ``email`` or ``cio_id``."""

    kind: str
    value: str

    def __str__(self):
        return f"{self.kind}={self.value}"


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    SUPPRESSED = "suppressed"  # references a suppressed identifier: ignored
    NOT_FOUND = "not_found"  # nobody to update (unknown cio_id, or _update)
    CONFLICT = "conflict"  # identifiers belong to different people, or may not change
    STALE = "stale"  # older than the update already applied (_timestamp)
    DUPLICATE = "duplicate"  # an event whose id was seen before


@dataclass
class Result:
    outcome: Outcome
    person: Person | None = None
    message: str = ""


@dataclass
class DeletionResult:
    deleted: int = 0
    suppressed: int = 0


def parse_identifier(workspace: Workspace, raw: str) -> Ref:
    """Read a Track API path identifier by its shape, as Customer.io does."""
    if raw.startswith("cio_"):
        return Ref("cio_id", raw[4:])
    if workspace.email_is_identifier and "@" in raw:
        return Ref("email", raw)
    return Ref("id", raw)


def make_ref(workspace: Workspace, kind: str, value: Any, *, field: str = "identifiers") -> Ref:
    """Return a checked reference, or raise InvalidInput naming ``field``."""
    problems = v.identifier_problems(kind, value, field=f"{field}.{kind}" if field else kind)
    if not problems and kind == "email" and not workspace.email_is_identifier:
        problems = [
            Problem(
                f"{field}.email",
                "email_not_identifier",
                "email is not an identifier in this workspace: use id or cio_id",
            )
        ]
    if problems:
        raise InvalidInput(problems)
    return Ref(kind, str(value))


def check_ref(ref: Ref, *, field: str = "identifier") -> None:
    problems = v.identifier_problems(ref.kind, ref.value, field=field)
    if problems:
        raise InvalidInput(problems)


def suppression_group(workspace_id: int, cio_id: str) -> str:
    """Return the group shared by the suppressed identifiers of the person ``cio_id``.

    A keyed hash: it lets ``cio_<id>`` unsuppress what that person had without the
    suppression list keeping their cio_id.
    """
    return salted_hmac("engage.people.suppression-group", f"{workspace_id}:{cio_id}",
                       algorithm="sha256").hexdigest()[:32]


def identifier_key(kind: str, value: str) -> str:
    return v.email_key(value) if kind == "email" else value


# The column an identifier is found by (an email only where email is an identifier).
IDENTIFIER_COLUMNS = {"id": "customer_id", "email": "email_key", "cio_id": "cio_id"}


# Lets others read and update the person but not delete them (nor change their primary
# key) until the transaction ends: for writes that only point new rows at the person.
KEY_SHARE = "FOR KEY SHARE"


def find_person(workspace: Workspace, ref: Ref, *, lock: bool | str = True) -> Person | None:
    """Return the person ``ref`` names, locked (``FOR UPDATE``, or the clause ``lock``
    names) until the transaction ends; None if there is nobody."""
    if ref.kind == "email" and not workspace.email_is_identifier:
        # Emails are not unique here: the first person with it, as everywhere else.
        qs = Person.objects.with_identifier(workspace, ref.kind, ref.value).order_by("pk")
        found = list((qs.select_for_update() if lock else qs)[:1])
    else:
        found = select_models(
            Person, f"workspace_id = %s AND {IDENTIFIER_COLUMNS[ref.kind]} = %s",
            [workspace.pk, identifier_key(ref.kind, ref.value)], lock=lock, limit=1)
    if not found:
        return None
    person = found[0]
    person.workspace = workspace  # known already: no query to read it again
    return person


def lock_identifiers(workspace: Workspace, identifiers: Iterable[tuple[str, str | None]]) -> None:
    """Hold the identifiers, (type, key) pairs, until the transaction ends.

    Storing an identifier and suppressing it take turns this way, so neither misses the
    other (DESIGN.md rule 3): whoever stores one locks it and then checks the suppression
    list; whoever suppresses one locks it before reading who holds it. On PostgreSQL these
    are transaction-scoped advisory locks, taken in one order; SQLite's IMMEDIATE
    transactions serialise writers already. Take them before any row lock.
    """
    if connection.vendor != "postgresql":
        return
    keys = sorted({_lock_key(workspace.pk, kind, key) for kind, key in identifiers if key})
    if keys:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k",
                           [keys])


def _lock_key(workspace_id: int, kind: str, key: str) -> int:
    digest = hashlib.blake2b(f"{workspace_id}\x00{kind}\x00{key}".encode("utf-8", "surrogatepass"),
                             digest_size=8, person=b"engage-ident").digest()
    return int.from_bytes(digest, "big", signed=True)


ACTIVITY_FIELDS = ["workspace", "cio_id", "kind", "data", "forgotten", "created_at"]


def log_activity(workspace: Workspace, cio_id: str | None, kind: str,
                 data: dict | None = None) -> None:
    insert_rows(Activity, ACTIVITY_FIELDS,
                [(workspace.pk, cio_id, kind, data or {}, False, timezone.now())])


def announce_change(workspace: Workspace, person_ids: list[int]) -> None:
    """Announce changed people: what they owe now, the rest after commit, never failing it."""
    workspace_id = workspace.pk
    people_changing.send(sender=Person, workspace_id=workspace_id, person_ids=person_ids)
    transaction.on_commit(
        lambda: people_changed.send(sender=Person, workspace_id=workspace_id,
                                    person_ids=person_ids),
        robust=True,
    )


def announce_events(workspace: Workspace, events: list[StoredEvent]) -> None:
    """Announce after commit, in one send, events stored for people, never failing it."""
    if not events:
        return
    workspace_id = workspace.pk
    transaction.on_commit(
        lambda: events_stored.send(sender=Person, workspace_id=workspace_id, events=events),
        robust=True,
    )
