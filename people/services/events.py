"""Events: recording them for people, or for someone not identified yet."""

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from engage.models import Workspace
from engage.sql import insert_rows, select_models
from people import validation as v
from people.errors import InvalidInput, Problem
from people.models import Event, Person
from people.services.common import (
    KEY_SHARE,
    Outcome,
    Ref,
    Result,
    announce_change,
    announce_events,
    check_ref,
    find_person,
)
from people.services.identify import IdentifyInput, _create_person
from people.signals import StoredEvent

EVENT_TYPES = frozenset(Event.Type.values)


@dataclass
class EventInput:
    """An event, read and checked: its name, data, moment, type and optional id."""

    name: str
    data: dict
    timestamp: Any
    type: str
    dedup_id: str | None


def read_event(name, data, timestamp, type, dedup_id) -> EventInput:
    """Read an event, or raise InvalidInput naming every problem in it."""
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
    return EventInput(name.strip(), data or {}, moment or timezone.now(), type, dedup_id or None)


def _get_or_create_person(workspace: Workspace, ref: Ref) -> tuple[Person | None, bool]:
    """Return the person ``ref`` names, creating them for an id or email.

    The person is kept from being deleted until the transaction ends (``FOR KEY SHARE``),
    so rows pointing at them can be added; one deleted meanwhile is created anew, as
    Customer.io does. None: nobody has this cio_id, or the id or email is suppressed.
    """
    for attempt in range(3):
        person = find_person(workspace, ref, lock=KEY_SHARE)
        if person is not None or ref.kind == "cio_id":
            return person, False
        try:
            with transaction.atomic():
                person = _create_person(workspace, {ref.kind: ref.value}, IdentifyInput())
            return person, person is not None
        except IntegrityError:
            # Someone created them at the same moment: find them again.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


# The unique index that makes an event id (dedup_id) count once per workspace.
EVENT_DEDUP_INDEX = "(workspace_id, dedup_id) WHERE dedup_id IS NOT NULL"
EVENT_FIELDS = ["workspace", "person", "anonymous_id", "name", "type", "timestamp", "data",
                "dedup_id", "received_at"]


def _insert_event(workspace: Workspace, person: Person | None, anonymous_id: str | None,
                  event: EventInput) -> Event | None:
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
    check_ref(ref)
    event = read_event(name, data, timestamp, type, dedup_id)
    with transaction.atomic():
        # Suppression is checked only when someone is created: a person found alive cannot
        # hold a suppressed identifier.
        person, _ = _get_or_create_person(workspace, ref)
        if person is None:
            if ref.kind != "cio_id":
                return Result(Outcome.SUPPRESSED)
            return Result(Outcome.NOT_FOUND, message="no person has this cio_id")
        stored = _insert_event(workspace, person, None, event)
        if stored is None:
            return Result(Outcome.DUPLICATE, person)
        announce_change(workspace, [person.pk])
        announce_events(workspace, [StoredEvent(person.pk, stored.pk, stored.name)])
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
    event = read_event(name, data, timestamp, type, dedup_id)
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
            # The person kept from being deleted meanwhile (one deleted already leaves the
            # event anonymous), found and locked in one statement.
            linked = select_models(
                Person, "workspace_id = %s AND id = (SELECT person_id FROM people_event "
                "WHERE workspace_id = %s AND anonymous_id = %s AND person_id IS NOT NULL "
                "ORDER BY id LIMIT 1)", [workspace.pk, workspace.pk, anonymous_id],
                lock=KEY_SHARE)
            person = linked[0] if linked else None
            if person is not None:
                person.workspace = workspace  # known already: no query to read it again
        stored = _insert_event(workspace, person, anonymous_id, event)
        if stored is None:
            return Result(Outcome.DUPLICATE, person)
        if person:
            announce_change(workspace, [person.pk])
            announce_events(workspace, [StoredEvent(person.pk, stored.pk, stored.name)])
    return Result(Outcome.CREATED, person)
