"""Identify: create or update a person from an identify body, by Customer.io's rules."""

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from engage.models import Workspace
from engage.sql import id_array, insert_rows, update_fields, update_rows
from people import validation as v
from people.errors import InvalidInput, Problem
from people.models import Activity, Event, Person
from people.services.common import (
    ACTIVITY_FIELDS,
    Outcome,
    Ref,
    Result,
    announce_change,
    announce_events,
    check_ref,
    find_person,
    identifier_key,
    log_activity,
)
from people.services.suppression import is_suppressed, suppressed_now
from people.signals import StoredEvent

# Anonymous events this recent are attached to a person identified with their anonymous_id;
# a merge moves the secondary's events this recent to the primary.
LINK_WINDOW = timedelta(days=30)

# Keys of an identify body that are not stored as attributes as they are.
RESERVED_KEYS = {"id", "cio_id", "anonymous_id", "_update", "_timestamp", "unsubscribed",
                 "cio_relationships"}
SUBSCRIPTION_PREFIX = "cio_subscription_preferences."


@dataclass
class IdentifyInput:
    """An identify body, read and checked: identifiers, what to set, remove and change."""


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


def read_identify_body(workspace: Workspace, body: Any) -> IdentifyInput:
    """Read an identify body, or raise InvalidInput naming every problem in it."""
    if not isinstance(body, dict):
        raise InvalidInput.single("attributes", "invalid_type", "attributes must be an object")
    problems: list[Problem] = []
    data = IdentifyInput()
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


def body_refs(workspace: Workspace, data: IdentifyInput) -> list[Ref]:
    """Return the identifiers the body names (an email only where it is an identifier)."""
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
    check_ref(ref)
    data = read_identify_body(workspace, body)
    if ref.kind == "email" and not workspace.email_is_identifier:
        raise InvalidInput.single(
            "identifier", "email_not_identifier", "email is not an identifier in this workspace"
        )
    refs = [ref, *body_refs(workspace, data)]
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


def _apply_identify(workspace: Workspace, ref: Ref, data: IdentifyInput) -> Result:
    person = find_person(workspace, ref)
    if ref.kind == "cio_id" and person is None:
        log_activity(workspace, None, Activity.Kind.UPDATE_FAILED,
                     {"reason": "no person has this cio_id", "identifier_type": ref.kind})
        return Result(Outcome.NOT_FOUND, message="no person has this cio_id")
    body_value = data.body_id if ref.kind == "id" else data.body_email
    if (ref.kind in ("id", "email") and body_value
            and identifier_key(ref.kind, body_value) != identifier_key(ref.kind, ref.value)):
        reason = f"changing a person's {ref.kind} requires addressing them by cio_id"
        log_activity(workspace, person.cio_id if person else None, Activity.Kind.UPDATE_FAILED,
                     {"reason": reason, "identifier_type": ref.kind})
        return Result(Outcome.CONFLICT, person, reason)

    wanted: dict[str, str] = {}
    if ref.kind in ("id", "email"):
        wanted[ref.kind] = ref.value
    for body_ref in body_refs(workspace, data):
        wanted.setdefault(body_ref.kind, body_ref.value)

    if person is None:
        for kind, value in wanted.items():
            if kind != ref.kind:
                person = find_person(workspace, Ref(kind, value))
                if person:
                    break
    if person is None:
        if data.update_only:
            log_activity(workspace, None, Activity.Kind.UPDATE_FAILED,
                         {"reason": "_update is set and nobody matches",
                          "identifier_type": ref.kind})
            return Result(Outcome.NOT_FOUND, message="_update is set and nobody matches")
        person = _create_person(workspace, wanted, data)
        if person is None:
            return Result(Outcome.SUPPRESSED)
        return Result(Outcome.CREATED, person)
    return _update_person(person, ref, wanted, data)


def sync_email(person: Person) -> bool:
    """Mirror the email attribute into the email columns; tell whether they changed."""
    email = person.attributes.get("email")
    email = str(email) if email not in (None, "") else None
    key = v.email_key(email) if email and person.workspace.email_is_identifier else None
    if (person.email, person.email_key) == (email, key):
        return False
    person.email, person.email_key = email, key
    return True


def new_attributes(current: dict, data: IdentifyInput) -> dict:
    """Return ``current`` with the body's attributes set, removed and merged."""
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
        raise too_many_attributes()
    return attributes


def too_many_attributes() -> InvalidInput:
    return InvalidInput.single("attributes", "too_many_attributes",
                               f"a person cannot have more than {v.MAX_ATTRIBUTES} attributes")


def build_person(workspace: Workspace, identifiers: dict, data: IdentifyInput, *,
                 now) -> Person:
    """Return a new, unsaved person with ``identifiers`` and the body's attributes."""
    attributes = new_attributes({}, data)
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
    sync_email(person)
    return person


def created_activity(person: Person) -> tuple[str, dict]:
    """Return the activity entry (kind, data) that records a new person."""
    return Activity.Kind.CREATED, {"attributes": sorted(person.attributes)}


def _create_person(workspace: Workspace, identifiers: dict,
                   data: IdentifyInput) -> Person | None:
    """Create a person with ``identifiers``; return None if one of them is suppressed."""
    if suppressed_now(workspace, [Ref(kind, value) for kind, value in identifiers.items()]):
        return None
    person = build_person(workspace, identifiers, data, now=timezone.now())
    insert_people([person])
    log_activity(workspace, person.cio_id, *created_activity(person))
    if data.anonymous_id:
        _link_anonymous_events(person, data.anonymous_id)
    announce_change(workspace, [person.pk])
    return person


PERSON_FIELDS = ["workspace", "cio_id", "customer_id", "email", "email_key", "attributes",
                 "unsubscribed", "created_at", "updated_at", "attributes_timestamp"]


def insert_people(people: list[Person]) -> None:
    """Write new people in one statement, as ``save()`` would, and give each its key."""
    if not people:
        return
    written = dict((cio_id, pk) for pk, cio_id in insert_rows(
        Person, PERSON_FIELDS,
        [(person.workspace_id, *(getattr(person, name) for name in PERSON_FIELDS[1:]))
         for person in people],
        returning=("id", "cio_id")))
    for person in people:
        person.pk = written[person.cio_id]
        person._state.adding = False
        person._state.db = connection.alias


def _identifier_change(
    person: Person, ref: Ref, kind: str, value: str
) -> tuple[bool, str | None]:
    """Return (change needed, refusal) for setting identifier ``kind`` to ``value``."""
    workspace = person.workspace
    current = person.customer_id if kind == "id" else person.email_key
    wanted = value if kind == "id" else v.email_key(value)
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


def is_stale(person: Person, data: IdentifyInput) -> bool:
    """Tell whether the body is older (``_timestamp``) than the update already applied."""
    return (data.timestamp is not None and person.attributes_timestamp is not None
            and data.timestamp < person.attributes_timestamp)


@dataclass
class PersonChange:
    """What an identify changed on a person: the columns to write and what to log."""

    fields: set[str] = field(default_factory=set)
    activity: list[tuple[str, dict]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Tell whether the person changed (new ``updated_at``, announced to segments)."""
        return "updated_at" in self.fields


def change_person(person: Person, data: IdentifyInput, *, identifiers: dict[str, str],
                  events_linked: bool = False, now) -> PersonChange:
    """Apply an identify body to ``person`` in memory and return what changed.

    ``identifiers`` are the identifier changes already found allowed. Runs no query: the
    single call and the batch both decide with it and write the result their own way.
    Only a real change (or events linked) moves ``updated_at``; a newer ``_timestamp``
    alone is kept without it.
    """
    attributes = new_attributes(person.attributes, data)  # raises before any change
    if "email" in identifiers:
        attributes["email"] = identifiers["email"]
    change = PersonChange()
    old_identifiers = {"id": person.customer_id, "email": person.email}
    if "id" in identifiers:
        person.customer_id = identifiers["id"]
        change.fields.add("customer_id")
    changed = {
        key: attributes.get(key)
        for key in set(attributes) | set(person.attributes)
        if attributes.get(key) != person.attributes.get(key)
    }
    if changed:
        person.attributes = attributes
        change.fields.add("attributes")
        if sync_email(person):
            change.fields |= {"email", "email_key"}
    if data.created_at is not None:
        created_at = v.datetime_from_unix(data.created_at)
        if created_at != person.created_at:
            person.created_at = created_at
            change.fields.add("created_at")
    unsubscribe_change = data.unsubscribed is not None and data.unsubscribed != person.unsubscribed
    if unsubscribe_change:
        person.unsubscribed = data.unsubscribed
        change.fields.add("unsubscribed")
    if data.timestamp is not None and data.timestamp != person.attributes_timestamp:
        person.attributes_timestamp = data.timestamp
        change.fields.add("attributes_timestamp")
    if not (change.fields - {"attributes_timestamp"} or events_linked):
        return change

    person.updated_at = now
    change.fields.add("updated_at")
    if identifiers:
        change.activity.append((Activity.Kind.IDENTIFIERS_CHANGED, {
            kind: [old_identifiers[kind], value] for kind, value in identifiers.items()}))
    if changed:
        change.activity.append((Activity.Kind.ATTRIBUTES_CHANGED, {"changed": changed}))
    if unsubscribe_change:
        change.activity.append((
            Activity.Kind.UNSUBSCRIBED if person.unsubscribed else Activity.Kind.RESUBSCRIBED,
            {}))
    return change


def _update_person(person: Person, ref: Ref, wanted: dict, data: IdentifyInput) -> Result:
    workspace = person.workspace
    if is_stale(person, data):
        return Result(Outcome.STALE, person, "an update with a later _timestamp was applied")

    identifier_changes = {}
    for kind, value in wanted.items():
        needed, refusal = _identifier_change(person, ref, kind, value)
        if refusal:
            log_activity(workspace, person.cio_id, Activity.Kind.UPDATE_FAILED,
                         {"reason": refusal, "identifier": str(ref)})
            return Result(Outcome.CONFLICT, person, refusal)
        if needed:
            identifier_changes[kind] = value
    if identifier_changes and suppressed_now(
            workspace, [Ref(kind, value) for kind, value in identifier_changes.items()]):
        return Result(Outcome.SUPPRESSED)

    linked = _link_anonymous_events(person, data.anonymous_id) if data.anonymous_id else []
    change = change_person(person, data, identifiers=identifier_changes,
                           events_linked=bool(linked), now=timezone.now())
    if change.fields:
        update_fields(person, change.fields)
    if not change.changed:
        return Result(Outcome.UNCHANGED, person)
    for kind, entry in change.activity:
        log_activity(workspace, person.cio_id, kind, entry)
    announce_change(workspace, [person.pk])
    return Result(Outcome.UPDATED, person)


def _link_anonymous_events(person: Person, anonymous_id: str) -> list[StoredEvent]:
    """Give ``person`` their recent anonymous events; announce and return them."""
    table, quote = Event._meta.db_table, connection.ops.quote_name
    since = connection.ops.adapt_datetimefield_value(timezone.now() - LINK_WINDOW)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(table)} SET {quote('person_id')} = %s"
            f" WHERE {quote('workspace_id')} = %s AND {quote('anonymous_id')} = %s"
            f" AND {quote('person_id')} IS NULL AND {quote('timestamp')} >= %s"
            f" RETURNING {quote('id')}, {quote('name')}",
            [person.pk, person.workspace_id, anonymous_id, since])
        linked = [StoredEvent(person.pk, event_id, name)
                  for event_id, name in sorted(cursor.fetchall())]
    if linked:
        log_activity(person.workspace, person.cio_id, Activity.Kind.EVENTS_LINKED,
                     {"anonymous_id": anonymous_id, "events": len(linked)})
        announce_events(person.workspace, linked)
    return linked


# The columns an identify without identifiers may change on someone who exists.
CHANGED_FIELDS = ["attributes", "email", "email_key", "unsubscribed", "created_at",
                  "updated_at", "attributes_timestamp"]


def update_people(workspace: Workspace, changes: list[tuple[int, dict]], *,
                  keep_people: bool = True) -> list[Result | InvalidInput]:
    """Apply identify bodies to people who exist, given by primary key, in order.

    The set-based twin of ``identify_person`` addressed by cio_id, for many people at once
    (a campaign's attribute updates): one statement locks them all, one writes their
    changes, one their activity, and the change is announced once. A body that names
    identifiers (``id``, an identifying ``email``, ``anonymous_id``) needs the exact
    resolution: every body for that person goes through ``identify_person``, in order,
    after the others. Return, per body, the Result or the InvalidInput that refused it.

    ``keep_people=False`` says the caller needs no Person in the results: then one plain
    body for distinct people (attributes only: no identifiers, email, timestamps or
    subscription) is applied by PostgreSQL alone (``update_attributes_in_sql``), without
    loading anyone; the results carry no person.
    """
    if not keep_people and connection.vendor == "postgresql":
        done = _update_plain(workspace, changes)
        if done is not None:
            return done
    results: list[Result | InvalidInput | None] = [None] * len(changes)
    inputs: dict[int, IdentifyInput] = {}
    exact: set[int] = set()  # people whose bodies need identify_person
    read: dict[int, tuple[IdentifyInput | InvalidInput, bool]] = {}  # one body, read once
    for index, (person_id, body) in enumerate(changes):
        known = read.get(id(body))
        if known is None:
            try:
                data = read_identify_body(workspace, body)
                known = data, bool(body_refs(workspace, data) or data.anonymous_id)
            except InvalidInput as error:
                known = error, False
            read[id(body)] = known
        data, names_someone = known
        if isinstance(data, InvalidInput):
            results[index] = data
            continue
        inputs[index] = data
        if names_someone:
            exact.add(person_id)
    found = {person.pk: person for person in Person.objects.filter(
        workspace=workspace, pk__in=sorted({changes[index][0] for index in inputs}))
        .order_by("pk").select_for_update()}
    now = timezone.now()
    dirty: dict[int, Person] = {}
    activity: list[tuple] = []
    changed: set[int] = set()
    for index, data in inputs.items():
        person_id = changes[index][0]
        person = found.get(person_id)
        if person is None:
            results[index] = Result(Outcome.NOT_FOUND, message="nobody has this id")
            continue
        if person_id in exact:
            continue
        person.workspace = workspace
        if is_stale(person, data):
            results[index] = Result(Outcome.STALE, person,
                                    "an update with a later _timestamp was applied")
            continue
        try:
            change = change_person(person, data, identifiers={}, now=now)
        except InvalidInput as error:  # raised before anything changed
            results[index] = error
            continue
        if change.fields:
            dirty[person.pk] = person
        if change.changed:
            changed.add(person.pk)
            activity += [(workspace.pk, person.cio_id, kind, entry, False, now)
                         for kind, entry in change.activity]
        results[index] = Result(Outcome.UPDATED if change.changed else Outcome.UNCHANGED,
                                person)
    update_rows(Person, CHANGED_FIELDS, [
        (person.pk, *(getattr(person, name) for name in CHANGED_FIELDS))
        for person in dirty.values()])
    insert_rows(Activity, ACTIVITY_FIELDS, activity)
    if changed:
        announce_change(workspace, sorted(changed))
    for index in inputs:
        person_id, body = changes[index]
        if person_id in exact and person_id in found:
            try:
                results[index] = identify_person(workspace, Ref("cio_id",
                                                                found[person_id].cio_id), body)
            except InvalidInput as error:
                results[index] = error
    return results


def _update_plain(workspace: Workspace, changes: list[tuple[int, dict]]
                  ) -> list[Result | InvalidInput] | None:
    """Apply one plain body shared by every change to distinct people in SQL; None when
    the changes are not that (``update_people`` then takes them as usual)."""
    if not changes:
        return []
    body = changes[0][1]
    ids = [person_id for person_id, _ in changes]
    if any(each is not body for _, each in changes) or len(set(ids)) != len(ids):
        return None
    try:
        data = read_identify_body(workspace, body)
    except InvalidInput as error:
        return [error] * len(changes)
    if (body_refs(workspace, data) or data.anonymous_id or data.created_at is not None
            or data.unsubscribed is not None or data.timestamp is not None
            or data.subscription_updates or "email" in data.set_attributes
            or "email" in data.remove_attributes):
        return None
    outcomes = update_attributes_in_sql(workspace, ids, data.set_attributes,
                                        sorted(data.remove_attributes))
    results: list[Result | InvalidInput] = []
    for person_id in ids:
        outcome = outcomes.get(person_id)
        if outcome is None:
            results.append(Result(Outcome.NOT_FOUND, message="nobody has this id"))
        elif outcome == "too_many":
            results.append(too_many_attributes())
        else:
            results.append(Result(outcome))
    return results


# Lock the people in order; work out each one's new attributes, which of the named keys
# really change (the activity's "changed", as ``change_person`` writes it) and whether
# the limit of attributes holds; write those who change, log their activity.
UPDATE_ATTRIBUTES_SQL = (
    "WITH target AS (SELECT p.id, p.cio_id, p.attributes AS old, "
    "(p.attributes || %(set)s::jsonb) - %(remove)s::text[] AS new FROM people_person p "
    "WHERE p.workspace_id = %(workspace)s AND p.id = ANY(%(ids)s::bigint[]) ORDER BY p.id "
    "FOR UPDATE), "
    "diff AS (SELECT t.id, t.cio_id, t.new, (SELECT jsonb_object_agg(k, COALESCE(t.new -> k, "
    "'null'::jsonb)) FROM unnest(%(keys)s::text[]) AS k WHERE t.old -> k IS DISTINCT FROM "
    "t.new -> k) AS changed, (SELECT count(*) FROM jsonb_object_keys(t.new)) > %(limit)s "
    "AS too_many FROM target t), "
    "written AS (UPDATE people_person p SET attributes = d.new, updated_at = %(now)s "
    "FROM diff d WHERE p.id = d.id AND d.changed IS NOT NULL AND NOT d.too_many "
    "RETURNING p.id), "
    "logged AS (INSERT INTO people_activity (workspace_id, cio_id, kind, data, forgotten, "
    "created_at) SELECT %(workspace)s, d.cio_id, %(kind)s, jsonb_build_object('changed', "
    "d.changed), false, %(now)s FROM diff d JOIN written w ON w.id = d.id ORDER BY d.id) "
    "SELECT d.id, d.too_many, d.changed IS NOT NULL FROM diff d")
assert (Person._meta.db_table, Activity._meta.db_table) == ("people_person", "people_activity")


def update_attributes_in_sql(workspace: Workspace, ids: list[int], values: dict,
                             remove: list[str]) -> dict[int, str]:
    """Set ``values`` and remove ``remove`` on the attributes of the workspace's people
    ``ids`` (PostgreSQL), as ``identify_person`` would: an activity entry for each one
    changed, the change announced. Return person id -> "updated", "unchanged" or
    "too_many" (left alone: over the limit of attributes); absent: nobody.
    """
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(UPDATE_ATTRIBUTES_SQL, {
            "set": json.dumps(values), "remove": remove, "keys": [*values, *remove],
            "workspace": workspace.pk, "ids": id_array(ids), "limit": v.MAX_ATTRIBUTES, "now": now,
            "kind": Activity.Kind.ATTRIBUTES_CHANGED})
        rows = cursor.fetchall()
    outcomes = {person_id: "too_many" if too_many else
                Outcome.UPDATED if changed else Outcome.UNCHANGED
                for person_id, too_many, changed in rows}
    changed_ids = sorted(pid for pid, outcome in outcomes.items() if outcome == Outcome.UPDATED)
    if changed_ids:
        announce_change(workspace, changed_ids)
    return outcomes
