"""The only way any surface changes people: identify, events, devices, merge, delete,
suppress.

Every function validates its whole input before it writes, so bad input raises
``InvalidInput`` and leaves nothing half-written. Calls that reference a suppressed
identifier are accepted and change nothing, as in Customer.io.
"""

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from engage import jobs
from engage.models import Workspace
from engage.sql import in_ids, in_values, insert_rows, select_models, update_fields
from people import validation as v
from people.errors import InvalidInput, Problem
from people.models import (
    Activity,
    DeletionJob,
    Device,
    Event,
    Person,
    Suppression,
)
from people.signals import people_changed, people_deleting, people_merging

# Anonymous events this recent are attached to a person identified with their anonymous_id;
# a merge moves the secondary's events this recent to the primary.
LINK_WINDOW = timedelta(days=30)

# Keys of an identify body that are not stored as attributes as they are.
RESERVED_KEYS = {"id", "cio_id", "anonymous_id", "_update", "_timestamp", "unsubscribed",
                 "cio_relationships"}
SUBSCRIPTION_PREFIX = "cio_subscription_preferences."
DELETION_TASK = "people.tasks.run_deletion_job"


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


def _check_ref(ref: Ref, *, field: str = "identifier") -> None:
    problems = v.identifier_problems(ref.kind, ref.value, field=field)
    if problems:
        raise InvalidInput(problems)


# --- suppression -----------------------------------------------------------------------


def _suppression_filter(refs: Iterable[Ref]) -> Q | None:
    """Match the suppressions of ``refs`` (ids and emails): two IN lists, however many."""
    query = None
    for kind, values in _suppressible(refs):
        condition = Q(identifier_type=kind, value__in=values)
        query = condition if query is None else query | condition
    return query


def _suppressible(refs: Iterable[Ref]) -> list[tuple[str, list[str]]]:
    """Return the ids and the (lowercased) emails among ``refs``, by identifier type."""
    ids, emails = set(), set()
    for ref in refs:
        if ref.kind == "id":
            ids.add(ref.value)
        elif ref.kind == "email":
            emails.add(ref.value.lower())
    return [(kind, sorted(values)) for kind, values in
            ((Suppression.IdentifierType.ID, ids), (Suppression.IdentifierType.EMAIL, emails))
            if values]


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


# --- activity --------------------------------------------------------------------------


ACTIVITY_FIELDS = ["workspace", "cio_id", "kind", "data", "forgotten", "created_at"]


def _log(workspace: Workspace, cio_id: str | None, kind: str, data: dict | None = None) -> None:
    insert_rows(Activity, ACTIVITY_FIELDS,
                [(workspace.pk, cio_id, kind, data or {}, False, timezone.now())])


def _announce_change(workspace: Workspace, person_ids: list[int]) -> None:
    workspace_id = workspace.pk
    transaction.on_commit(
        lambda: people_changed.send(sender=Person, workspace_id=workspace_id, person_ids=person_ids)
    )


# --- identify --------------------------------------------------------------------------


@dataclass
class _IdentifyInput:
    body_id: str | None = None
    body_email: str | None = None
    created_at: int | None = None
    anonymous_id: str | None = None
    update_only: bool = False
    timestamp: int | None = None
    unsubscribed: bool | None = None
    set_attributes: dict = field(default_factory=dict)
    remove_attributes: set = field(default_factory=set)
    subscription_updates: dict = field(default_factory=dict)


def _read_identify_body(workspace: Workspace, body: Any) -> _IdentifyInput:
    if not isinstance(body, dict):
        raise InvalidInput.single("attributes", "invalid_type", "attributes must be an object")
    problems: list[Problem] = []
    data = _IdentifyInput()
    for key in ("id", "email"):
        value = body.get(key)
        if value is None or value == "":
            continue
        if key == "email" and not isinstance(value, str):
            problems.append(Problem("email", "invalid_type", "email must be a string"))
            continue
        kind = key if key == "id" or workspace.email_is_identifier else None
        if kind:
            problems += v.identifier_problems(kind, value, field=key)
        if key == "id":
            data.body_id = str(value)
        else:
            data.body_email = str(value).strip()
    if body.get("anonymous_id") not in (None, ""):
        data.anonymous_id = str(body["anonymous_id"])
        problems += v.identifier_problems("id", data.anonymous_id, field="anonymous_id")
    data.update_only = v.is_truthy(body.get("_update"))
    if "unsubscribed" in body:
        data.unsubscribed = v.is_truthy(body["unsubscribed"])
    try:
        if body.get("created_at") not in (None, ""):
            data.created_at = v.parse_unix_seconds(body["created_at"], field="created_at")
        if body.get("_timestamp") not in (None, ""):
            data.timestamp = v.parse_unix_seconds(body["_timestamp"], field="_timestamp")
    except InvalidInput as error:
        problems += error.problems

    attributes = {k: val for k, val in body.items() if k not in RESERVED_KEYS}
    problems += v.attribute_problems(attributes)
    if problems:
        raise InvalidInput(problems)
    for key, value in attributes.items():
        if key.startswith(SUBSCRIPTION_PREFIX):
            data.subscription_updates[key[len(SUBSCRIPTION_PREFIX):]] = value
        elif value is None or value == "":
            data.remove_attributes.add(key)
        else:
            data.set_attributes[key] = value
    if data.created_at is not None:
        data.set_attributes["created_at"] = data.created_at
    if data.body_email:
        data.set_attributes["email"] = data.body_email
    if workspace.email_is_identifier:
        # An identifier is changed, never blanked, by identify.
        data.remove_attributes.discard("email")
    return data


def _body_refs(workspace: Workspace, data: _IdentifyInput) -> list[Ref]:
    refs = []
    if data.body_id:
        refs.append(Ref("id", data.body_id))
    if data.body_email and workspace.email_is_identifier:
        refs.append(Ref("email", data.body_email))
    return refs


def identify_person(workspace: Workspace, ref: Ref, body: dict) -> Result:
    """Create or update the person ``ref`` names with the attributes in ``body``.

    Follows Customer.io's resolution rules: the path identifier wins; an unknown path
    identifier with a known body identifier updates that person and gives them the path
    identifier; identifiers of two different people are a conflict; identifiers change
    only when the person is addressed by cio_id; ``_update`` never creates.
    """
    _check_ref(ref)
    data = _read_identify_body(workspace, body)
    if ref.kind == "email" and not workspace.email_is_identifier:
        raise InvalidInput.single(
            "identifier", "email_not_identifier", "email is not an identifier in this workspace"
        )
    refs = [ref, *_body_refs(workspace, data)]
    if is_suppressed(workspace, refs):
        return Result(Outcome.SUPPRESSED)
    for attempt in range(2):
        try:
            with transaction.atomic():
                return _apply_identify(workspace, ref, data)
        except IntegrityError:
            # Someone created one of these identifiers at the same moment: resolve again.
            if attempt:
                raise
    raise AssertionError("unreachable")


# The column an identifier is found by (an email only where email is an identifier).
IDENTIFIER_COLUMNS = {"id": "customer_id", "email": "email_key", "cio_id": "cio_id"}


def _find(workspace: Workspace, ref: Ref, *, lock: bool = True) -> Person | None:
    if ref.kind == "email" and not workspace.email_is_identifier:
        # Emails are not unique here: the first person with it, as everywhere else.
        qs = Person.objects.with_identifier(workspace, ref.kind, ref.value).order_by("pk")
        found = list((qs.select_for_update() if lock else qs)[:1])
    else:
        found = select_models(
            Person, f"workspace_id = %s AND {IDENTIFIER_COLUMNS[ref.kind]} = %s",
            [workspace.pk, _key(ref.kind, ref.value)], lock=lock, limit=1)
    if not found:
        return None
    person = found[0]
    person.workspace = workspace  # known already: no query to read it again
    return person


def _apply_identify(workspace: Workspace, ref: Ref, data: _IdentifyInput) -> Result:
    person = _find(workspace, ref)
    if ref.kind == "cio_id" and person is None:
        _log(workspace, None, Activity.Kind.UPDATE_FAILED,
             {"reason": "no person has this cio_id", "identifier_type": ref.kind})
        return Result(Outcome.NOT_FOUND, message="no person has this cio_id")
    body_value = data.body_id if ref.kind == "id" else data.body_email
    if ref.kind in ("id", "email") and body_value and _key(ref.kind, body_value) != _key(
        ref.kind, ref.value
    ):
        reason = f"changing a person's {ref.kind} requires addressing them by cio_id"
        _log(workspace, person.cio_id if person else None, Activity.Kind.UPDATE_FAILED,
             {"reason": reason, "identifier_type": ref.kind})
        return Result(Outcome.CONFLICT, person, reason)

    wanted: dict[str, str] = {}
    if ref.kind in ("id", "email"):
        wanted[ref.kind] = ref.value
    for body_ref in _body_refs(workspace, data):
        wanted.setdefault(body_ref.kind, body_ref.value)

    if person is None:
        for kind, value in wanted.items():
            if kind != ref.kind:
                person = _find(workspace, Ref(kind, value))
                if person:
                    break
    if person is None:
        if data.update_only:
            _log(workspace, None, Activity.Kind.UPDATE_FAILED,
                 {"reason": "_update is set and nobody matches", "identifier_type": ref.kind})
            return Result(Outcome.NOT_FOUND, message="_update is set and nobody matches")
        return Result(Outcome.CREATED, _create_person(workspace, wanted, data))
    return _update_person(person, ref, wanted, data)


def _key(kind: str, value: str) -> str:
    return value.lower() if kind == "email" else value


def _sync_email(person: Person) -> bool:
    """Mirror the email attribute into the email columns; tell whether they changed."""
    email = person.attributes.get("email")
    email = str(email) if email not in (None, "") else None
    key = email.lower() if email and person.workspace.email_is_identifier else None
    if (person.email, person.email_key) == (email, key):
        return False
    person.email, person.email_key = email, key
    return True


def _new_attributes(current: dict, data: _IdentifyInput) -> dict:
    attributes = dict(current)
    attributes.update(data.set_attributes)
    for key in data.remove_attributes:
        attributes.pop(key, None)
    if data.subscription_updates:
        preferences = dict(attributes.get("cio_subscription_preferences") or {})
        for path, value in data.subscription_updates.items():
            node = preferences
            *parents, leaf = path.split(".")
            for part in parents:
                child = node.get(part)
                child = dict(child) if isinstance(child, dict) else {}
                node[part] = child
                node = child
            node[leaf] = value
        attributes["cio_subscription_preferences"] = preferences
    if len(attributes) > v.MAX_ATTRIBUTES:
        raise InvalidInput.single(
            "attributes",
            "too_many_attributes",
            f"a person cannot have more than {v.MAX_ATTRIBUTES} attributes",
        )
    return attributes


def _create_person(workspace: Workspace, identifiers: dict, data: _IdentifyInput) -> Person:
    now = timezone.now()
    attributes = _new_attributes({}, data)
    if identifiers.get("email"):
        attributes["email"] = identifiers["email"]
    person = Person(
        workspace=workspace,
        customer_id=identifiers.get("id"),
        attributes=attributes,
        unsubscribed=bool(data.unsubscribed),
        created_at=v.datetime_from_unix(data.created_at) if data.created_at is not None else now,
        updated_at=now,
        attributes_timestamp=data.timestamp,
    )
    _sync_email(person)
    _insert_person(person)
    _log(workspace, person.cio_id, Activity.Kind.CREATED, {"attributes": sorted(person.attributes)})
    if data.anonymous_id:
        _link_anonymous_events(person, data.anonymous_id)
    _announce_change(workspace, [person.pk])
    return person


PERSON_FIELDS = ["workspace", "cio_id", "customer_id", "email", "email_key", "attributes",
                 "unsubscribed", "created_at", "updated_at", "attributes_timestamp"]


def _insert_person(person: Person) -> None:
    """Write a new person in one statement, as ``person.save()`` would."""
    ((person.pk,),) = insert_rows(
        Person, PERSON_FIELDS,
        [(person.workspace_id, *(getattr(person, name) for name in PERSON_FIELDS[1:]))],
        returning=("id",))
    person._state.adding = False
    person._state.db = connection.alias


def _identifier_change(
    person: Person, ref: Ref, kind: str, value: str
) -> tuple[bool, str | None]:
    """Return (change needed, refusal) for setting identifier ``kind`` to ``value``."""
    workspace = person.workspace
    current = person.customer_id if kind == "id" else person.email_key
    wanted = value if kind == "id" else value.lower()
    if current == wanted:
        return False, None
    holder = Person.objects.with_identifier(workspace, kind, value).exclude(pk=person.pk)
    if holder.exists():
        return False, f"{kind} '{value}' belongs to another person"
    if current is None:
        return True, None
    if ref.kind == "cio_id":
        return True, None
    if kind == "email" and ref.kind == "id" and workspace.allow_email_update_by_id:
        return True, None
    return False, f"changing a person's {kind} requires addressing them by cio_id"


def _update_person(person: Person, ref: Ref, wanted: dict, data: _IdentifyInput) -> Result:
    workspace = person.workspace
    if data.timestamp is not None and person.attributes_timestamp is not None:
        if data.timestamp < person.attributes_timestamp:
            return Result(Outcome.STALE, person, "an update with a later _timestamp was applied")

    identifier_changes = {}
    for kind, value in wanted.items():
        needed, refusal = _identifier_change(person, ref, kind, value)
        if refusal:
            _log(workspace, person.cio_id, Activity.Kind.UPDATE_FAILED,
                 {"reason": refusal, "identifier": str(ref)})
            return Result(Outcome.CONFLICT, person, refusal)
        if needed:
            identifier_changes[kind] = value

    fields = set()
    old_identifiers = {"id": person.customer_id, "email": person.email}
    if "id" in identifier_changes:
        person.customer_id = identifier_changes["id"]
        fields.add("customer_id")
    attributes = _new_attributes(person.attributes, data)
    if "email" in identifier_changes:
        attributes["email"] = identifier_changes["email"]
    changed = {
        key: attributes.get(key)
        for key in set(attributes) | set(person.attributes)
        if attributes.get(key) != person.attributes.get(key)
    }
    if changed:
        person.attributes = attributes
        fields.add("attributes")
        if _sync_email(person):
            fields |= {"email", "email_key"}
    if data.created_at is not None:
        created_at = v.datetime_from_unix(data.created_at)
        if created_at != person.created_at:
            person.created_at = created_at
            fields.add("created_at")
    unsubscribe_change = data.unsubscribed is not None and data.unsubscribed != person.unsubscribed
    if unsubscribe_change:
        person.unsubscribed = data.unsubscribed
        fields.add("unsubscribed")
    if data.timestamp is not None:
        person.attributes_timestamp = data.timestamp
        fields.add("attributes_timestamp")

    linked = _link_anonymous_events(person, data.anonymous_id) if data.anonymous_id else 0
    if not fields - {"attributes_timestamp"} and not linked:
        if fields:
            update_fields(person, fields)
        return Result(Outcome.UNCHANGED, person)

    person.updated_at = timezone.now()
    update_fields(person, fields | {"updated_at"})
    if identifier_changes:
        _log(workspace, person.cio_id, Activity.Kind.IDENTIFIERS_CHANGED, {
            kind: [old_identifiers[kind], value] for kind, value in identifier_changes.items()
        })
    if changed:
        _log(workspace, person.cio_id, Activity.Kind.ATTRIBUTES_CHANGED, {"changed": changed})
    if unsubscribe_change:
        kind = Activity.Kind.UNSUBSCRIBED if person.unsubscribed else Activity.Kind.RESUBSCRIBED
        _log(workspace, person.cio_id, kind)
    _announce_change(workspace, [person.pk])
    return Result(Outcome.UPDATED, person)


def _link_anonymous_events(person: Person, anonymous_id: str) -> int:
    linked = Event.objects.filter(
        workspace=person.workspace,
        anonymous_id=anonymous_id,
        person__isnull=True,
        timestamp__gte=timezone.now() - LINK_WINDOW,
    ).update(person=person)
    if linked:
        _log(person.workspace, person.cio_id, Activity.Kind.EVENTS_LINKED,
             {"anonymous_id": anonymous_id, "events": linked})
    return linked


# --- events ----------------------------------------------------------------------------


EVENT_TYPES = frozenset(Event.Type.values)


@dataclass
class _EventInput:
    name: str
    data: dict
    timestamp: Any
    type: str
    dedup_id: str | None


def _read_event(name, data, timestamp, type, dedup_id) -> _EventInput:
    problems = v.event_problems(name, data)
    if type not in EVENT_TYPES:
        problems.append(Problem("type", "invalid_value", "type must be one of event, page, screen"))
    if dedup_id is not None and (not isinstance(dedup_id, str) or not 0 < len(dedup_id) <= 64
                                 or v.has_unstorable(dedup_id)):
        problems.append(Problem("id", "invalid_value",
                                "event id must be a string of 1 to 64 characters, without NUL "
                                "characters or unpaired surrogates"))
    moment = v.optional_moment(timestamp, field="timestamp", problems=problems)
    if problems:
        raise InvalidInput(problems)
    return _EventInput(name.strip(), data or {}, moment or timezone.now(), type, dedup_id or None)


def _get_or_create_person(workspace: Workspace, ref: Ref) -> tuple[Person | None, bool]:
    """Return the person ``ref`` names, creating them for an id or email."""
    person = _find(workspace, ref, lock=False)
    if person is not None or ref.kind == "cio_id":
        return person, False
    try:
        with transaction.atomic():
            person = _create_person(workspace, {ref.kind: ref.value}, _IdentifyInput())
            return person, True
    except IntegrityError:
        return _find(workspace, ref, lock=False), False


# The unique index that makes an event id (dedup_id) count once per workspace.
EVENT_DEDUP_INDEX = "(workspace_id, dedup_id) WHERE dedup_id IS NOT NULL"
EVENT_FIELDS = ["workspace", "person", "anonymous_id", "name", "type", "timestamp", "data",
                "dedup_id", "received_at"]


def _insert_event(workspace: Workspace, person: Person | None, anonymous_id: str | None,
                  event: _EventInput) -> Event | None:
    """Write an event in one statement; return None if its id was seen already."""
    row = Event(
        workspace=workspace,
        person=person,
        anonymous_id=anonymous_id,
        name=event.name,
        type=event.type,
        timestamp=event.timestamp,
        data=event.data,
        dedup_id=event.dedup_id,
        received_at=timezone.now(),
    )
    written = insert_rows(Event, EVENT_FIELDS, [(
        workspace.pk, person.pk if person else None,
        *(getattr(row, name) for name in EVENT_FIELDS[2:]))],
        returning=("id",), skip_conflicts_on=EVENT_DEDUP_INDEX)
    if not written:
        return None  # a repeated dedup id
    ((row.pk,),) = written
    row._state.adding = False
    row._state.db = connection.alias
    return row


def track_event(
    workspace: Workspace,
    ref: Ref,
    *,
    name: str,
    data: dict | None = None,
    timestamp: Any = None,
    dedup_id: str | None = None,
    type: str = Event.Type.EVENT,
) -> Result:
    """Record an event for the person ``ref`` names, creating them if needed."""
    _check_ref(ref)
    event = _read_event(name, data, timestamp, type, dedup_id)
    if is_suppressed(workspace, [ref]):
        return Result(Outcome.SUPPRESSED)
    with transaction.atomic():
        person, _ = _get_or_create_person(workspace, ref)
        if person is None:
            return Result(Outcome.NOT_FOUND, message="no person has this cio_id")
        if _insert_event(workspace, person, None, event) is None:
            return Result(Outcome.DUPLICATE, person)
        _announce_change(workspace, [person.pk])
    return Result(Outcome.CREATED, person)


def track_anonymous_event(
    workspace: Workspace,
    *,
    anonymous_id: str | None,
    name: str,
    data: dict | None = None,
    timestamp: Any = None,
    dedup_id: str | None = None,
    type: str = Event.Type.EVENT,
) -> Result:
    """Record an event for someone not identified yet.

    An anonymous_id already linked to a person (by identify) keeps pointing at them.
    """
    event = _read_event(name, data, timestamp, type, dedup_id)
    if anonymous_id not in (None, ""):
        anonymous_id = str(anonymous_id)
        problems = v.identifier_problems("id", anonymous_id, field="anonymous_id")
        if problems:
            raise InvalidInput(problems)
    else:
        anonymous_id = None
    with transaction.atomic():
        person = None
        if anonymous_id:
            linked = (
                Event.objects.filter(workspace=workspace, anonymous_id=anonymous_id,
                                     person__isnull=False)
                .select_related("person")
                .first()
            )
            person = linked.person if linked else None
        if _insert_event(workspace, person, anonymous_id, event) is None:
            return Result(Outcome.DUPLICATE, person)
        if person:
            _announce_change(workspace, [person.pk])
    return Result(Outcome.CREATED, person)


# --- devices ---------------------------------------------------------------------------


def add_device(
    workspace: Workspace,
    ref: Ref,
    *,
    token: Any,
    platform: Any,
    last_used: Any = None,
    attributes: dict | None = None,
) -> Result:
    """Add or update a device of the person ``ref`` names (a token belongs to one person)."""
    _check_ref(ref)
    problems = []
    if (not isinstance(token, str) or not token.strip() or len(token) > 255
            or v.has_unstorable(token)):
        problems.append(Problem("device.id", "invalid_value",
                                "device id (token) is required, at most 255 characters"))
    if platform not in Device.Platform.values:
        problems.append(Problem("device.platform", "invalid_value",
                                "device platform must be ios or android"))
    if attributes is not None and not isinstance(attributes, dict):
        problems.append(Problem("device.attributes", "invalid_type",
                                "device attributes must be an object"))
    elif attributes:
        problems += v.attribute_problems(attributes, field_prefix="device.attributes.")
    used = v.optional_moment(last_used, field="device.last_used", problems=problems)
    if problems:
        raise InvalidInput(problems)
    if is_suppressed(workspace, [ref]):
        return Result(Outcome.SUPPRESSED)
    with transaction.atomic():
        person, _ = _get_or_create_person(workspace, ref)
        if person is None:
            return Result(Outcome.NOT_FOUND, message="no person has this cio_id")
        device, created = Device.objects.select_for_update().get_or_create(
            workspace=workspace,
            token=token,
            defaults={"person": person, "platform": platform, "last_used": used,
                      "attributes": attributes or {}, "created_at": timezone.now()},
        )
        moved = device.person_id != person.pk
        if not created:
            device.person = person
            device.platform = platform
            device.last_used = used or device.last_used
            device.attributes = {**device.attributes, **(attributes or {})}
            device.save(update_fields=["person", "platform", "last_used", "attributes"])
        if created or moved:
            _log(workspace, person.cio_id, Activity.Kind.DEVICE_ADDED, {"platform": platform})
        _announce_change(workspace, [person.pk])
    return Result(Outcome.CREATED if created else Outcome.UPDATED, person)


def delete_device(workspace: Workspace, ref: Ref, *, token: str) -> Result:
    """Remove the device ``token`` from the person ``ref`` names."""
    _check_ref(ref)
    if is_suppressed(workspace, [ref]):
        return Result(Outcome.SUPPRESSED)
    with transaction.atomic():
        person = _find(workspace, ref, lock=False)
        if person is None:
            return Result(Outcome.NOT_FOUND)
        removed, _ = Device.objects.filter(workspace=workspace, person=person, token=token).delete()
        if not removed:
            return Result(Outcome.UNCHANGED, person)
        _log(workspace, person.cio_id, Activity.Kind.DEVICE_REMOVED)
        _announce_change(workspace, [person.pk])
    return Result(Outcome.UPDATED, person)


# --- merge -----------------------------------------------------------------------------


def merge_people(workspace: Workspace, *, primary: Ref, secondary: Ref) -> Result:
    """Merge the secondary person into the primary one and delete the secondary.

    The primary gains the attributes it lacks, identifiers it lacks, the secondary's
    devices and its last 30 days of events; other apps move what they keep through the
    ``people_merging`` signal. Nothing happens if either person does not exist.
    """
    _check_ref(primary, field="primary")
    _check_ref(secondary, field="secondary")
    if is_suppressed(workspace, [primary, secondary]):
        return Result(Outcome.SUPPRESSED)
    with transaction.atomic():
        first = _find(workspace, primary)
        second = _find(workspace, secondary)
        if first is None or second is None:
            return Result(Outcome.NOT_FOUND, first, "both people must exist to merge")
        if first.pk == second.pk:
            return Result(Outcome.UNCHANGED, first)

        attributes = dict(first.attributes)
        for key, value in second.attributes.items():
            if len(attributes) >= v.MAX_ATTRIBUTES:
                break
            if attributes.get(key) in (None, ""):
                attributes[key] = value
        moved_id = second.customer_id if not first.customer_id else None

        Event.objects.filter(
            person=second, timestamp__gte=timezone.now() - LINK_WINDOW
        ).update(person=first)
        Device.objects.filter(person=second).update(person=first)
        people_merging.send(
            sender=Person, workspace=workspace, primary_id=first.pk, secondary_id=second.pk
        )
        _delete_batch(workspace, [second.pk], suppress=False,
                      reason={"merged_into": first.cio_id})

        first.attributes = attributes
        first.unsubscribed = first.unsubscribed or second.unsubscribed
        if moved_id:
            first.customer_id = moved_id
        _sync_email(first)
        first.updated_at = timezone.now()
        first.save(update_fields=["attributes", "unsubscribed", "customer_id", "email",
                                  "email_key", "updated_at"])
        _log(workspace, first.cio_id, Activity.Kind.MERGED, {"secondary_cio_id": second.cio_id})
        _announce_change(workspace, [first.pk])
    return Result(Outcome.UPDATED, first)


# --- deletion and suppression ----------------------------------------------------------


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
        cursor.execute(
            f"SELECT id, cio_id FROM people_person WHERE workspace_id = %s AND {batch} "
            f"ORDER BY id{' FOR UPDATE' if postgres else ''}",
            [workspace.pk, *batch_params],
        )
        rows = cursor.fetchall()
        if not rows:
            return 0, 0
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
            # The identifiers of one person share a group: a random salt for the batch
            # and the person's row id, neither of them personal data.
            salt = secrets.token_hex(6) + "-"
            columns = ('INSERT INTO people_suppression (workspace_id, identifier_type, value, '
                       '"group", created_at, created_by_id, source) ')
            identifier_columns = [("id", "customer_id")]
            if workspace.email_is_identifier:
                identifier_columns.append(("email", "email_key"))
            for kind, column in identifier_columns:
                cursor.execute(
                    columns + f"SELECT workspace_id, %s, {column}, %s || CAST(id AS TEXT), "
                    f"%s, %s, %s FROM people_person WHERE {people} AND {column} IS NOT NULL "
                    "ON CONFLICT DO NOTHING",
                    [kind, salt, now, actor.pk if actor else None, source, *people_params],
                )
                suppressed += cursor.rowcount
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


def delete_person(
    workspace: Workspace, ref: Ref, *, actor=None, source: str = Suppression.Source.API
) -> bool:
    """Delete the person ``ref`` names, if there is one; tell whether someone was deleted."""
    _check_ref(ref)
    with transaction.atomic():
        person = _find(workspace, ref)
        if person is None:
            return False
        deleted, _ = _delete_batch(workspace, [person.pk], suppress=False, actor=actor,
                                   source=source)
    return bool(deleted)


def suppress_identifier(
    workspace: Workspace, ref: Ref, *, actor=None, source: str = Suppression.Source.API
) -> int:
    """Delete the person ``ref`` names and suppress all their identifiers.

    With nobody behind an id or email, that identifier alone is suppressed, so it can
    never be added. Return the number of identifiers suppressed.
    """
    _check_ref(ref)
    with transaction.atomic():
        person = _find(workspace, ref)
        if person is not None:
            _, suppressed = _delete_batch(
                workspace, [person.pk], suppress=True, actor=actor, source=source
            )
            return suppressed
        if ref.kind == "cio_id":
            return 0
        kind = ref.kind if ref.kind == "id" or workspace.email_is_identifier else None
        if kind is None:
            return 0
        _, created = Suppression.objects.get_or_create(
            workspace=workspace,
            identifier_type=kind,
            value=ref.value.lower() if kind == "email" else ref.value,
            defaults={"group": secrets.token_hex(8), "created_at": timezone.now(),
                      "created_by": actor, "source": source},
        )
        return int(created)


def unsuppress_identifier(workspace: Workspace, ref: Ref) -> int:
    """Free a suppressed identifier and the others suppressed with it; return how many.

    The profile is not restored: a later identify creates a new person with no history.
    """
    _check_ref(ref)
    query = _suppression_filter([ref])
    if query is None:
        return 0
    with transaction.atomic():
        groups = Suppression.objects.filter(query, workspace=workspace).values("group")
        removed, _ = Suppression.objects.filter(workspace=workspace, group__in=groups).delete()
    return removed


# --- deletion jobs ---------------------------------------------------------------------


def start_deletion_job(
    workspace: Workspace,
    people: QuerySet,
    *,
    suppress: bool,
    actor=None,
    description: str,
    source: str = Suppression.Source.UI,
) -> DeletionJob:
    """Record the set to delete as it is now, and have a worker delete it in batches.

    The set is fixed at this moment: people who match the same filter later are not
    deleted. Only primary keys are kept, never personal data.
    """
    job = DeletionJob(workspace=workspace, requested_by=actor, source=source,
                      description=description[:300], suppress=suppress)
    return jobs.start(job, people.filter(workspace=workspace), DELETION_TASK)


def run_deletion_job(job_id: int, *, max_batches: int | None = None) -> DeletionJob | None:
    """Delete a job's people batch by batch; safe to run again after any interruption."""
    return jobs.run(DeletionJob, job_id, _delete_job_batch,
                    batch_size=settings.ENGAGE_DELETE_BATCH_SIZE, max_batches=max_batches,
                    select_related=("workspace", "requested_by"))


def _delete_job_batch(job: DeletionJob, person_pks: list[int]) -> None:
    deleted, suppressed = _delete_batch(job.workspace, person_pks, suppress=job.suppress,
                                        actor=job.requested_by, source=job.source)
    job.deleted += deleted
    job.suppressed += suppressed
    job.already_gone += len(person_pks) - deleted


def fail_deletion_job(job_id: int, error: str) -> None:
    """Mark a job failed with the error, keeping what it already did."""
    jobs.fail(DeletionJob, job_id, error)


def retry_deletion_job(job: DeletionJob) -> None:
    """Run a failed or stalled job again from where it stopped."""
    jobs.retry(job, DELETION_TASK)
