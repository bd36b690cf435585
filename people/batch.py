"""Track API v2 operations: reading them, and applying many at once with set-based writes.

A batch is applied in order. Runs of identify and event operations, the bulk of what
integrators send, are applied with a few statements per run: one query finds everyone
the run names, one checks the suppression list, and people, activity and events are
written with multi-row inserts and updates. Any operation that needs more (a merge,
a deletion, a device, an identify that moves identifiers between people) ends the run
and goes through the people services on its own, so every rule holds exactly as it
does for a single call. The whole batch commits at once, or not at all.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from engage.models import Workspace
from engage.sql import in_values, insert_rows, select_models, update_rows
from people import services
from people import validation as v
from people.errors import InvalidInput, Problem
from people.models import Activity, Event, Person, Suppression
from people.services import Ref
from people.services.common import announce_change, announce_events, identifier_key
from people.services.events import EventInput, read_event
from people.services.identify import (
    IdentifyInput,
    body_refs,
    build_person,
    change_person,
    created_activity,
    insert_people,
    is_stale,
    read_identify_body,
)
from people.services.suppression import suppressed_now
from people.signals import StoredEvent

MAX_OPERATION_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
EVENT_ACTIONS = {"event", "page", "screen"}
PERSON_ACTIONS = {"identify", "delete", "add_device", "delete_device", "merge", "suppress",
                  "unsuppress", *EVENT_ACTIONS}


@dataclass
class Operation:
    index: int
    action: str
    ref: Ref | None = None
    body: dict = field(default_factory=dict)
    identify: IdentifyInput | None = None
    event: EventInput | None = None
    primary: Ref | None = None
    secondary: Ref | None = None

    @property
    def bulkable(self) -> bool:
        if self.action in EVENT_ACTIONS:
            return True
        return (self.action == "identify" and self.ref.kind != "cio_id"
                and not self.identify.anonymous_id)


@dataclass
class BatchError:
    index: int
    problem: Problem

    def as_json(self) -> dict:
        return {"batch_index": self.index, "reason": self.problem.reason,
                "field": self.problem.field, "message": self.problem.message}


def _ref_of(workspace: Workspace, identifiers: Any, *, field: str = "identifiers") -> Ref:
    if not isinstance(identifiers, dict) or len(identifiers) != 1:
        raise InvalidInput.single(field, "invalid",
                                  f"{field} must hold exactly one of id, email, cio_id")
    ((kind, value),) = identifiers.items()
    if kind == "phone":
        raise InvalidInput.single(f"{field}.phone", "not_enabled",
                                  "phone is not an identifier in this workspace")
    return services.make_ref(workspace, kind, value, field=field)


def parse_operation(workspace: Workspace, raw: Any, *, index: int = 0) -> Operation:
    """Read one v2 operation, or raise InvalidInput saying what is wrong with it."""
    if not isinstance(raw, dict):
        raise InvalidInput.single("", "invalid", "an operation must be a JSON object")
    if v.json_bytes(raw) > MAX_OPERATION_BYTES:
        raise InvalidInput.single("", "too_large", "an operation cannot be larger than 32 KB")
    kind = raw.get("type")
    if kind != "person":
        if kind in ("object", "delivery"):
            raise InvalidInput.single("type", "unsupported", f"type '{kind}' is not supported")
        raise InvalidInput.single("type", "invalid", "type must be person")
    action = raw.get("action")
    if not isinstance(action, str) or action not in PERSON_ACTIONS:
        relationships = ("add_relationships", "delete_relationships")
        reason = "unsupported" if action in relationships else "invalid"
        raise InvalidInput.single("action", reason, f"action '{action}' is not supported")
    operation = Operation(index=index, action=action, body=raw)
    if action == "merge":
        operation.primary = _ref_of(workspace, raw.get("primary"), field="primary")
        operation.secondary = _ref_of(workspace, raw.get("secondary"), field="secondary")
        return operation
    operation.ref = _ref_of(workspace, raw.get("identifiers"))
    if action == "identify":
        attributes = raw.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise InvalidInput.single("attributes", "invalid", "attributes must be an object")
        if raw.get("timestamp") is not None and "_timestamp" not in attributes:
            attributes = {**attributes, "_timestamp": raw["timestamp"]}
        operation.identify = read_identify_body(workspace, attributes)
    elif action in EVENT_ACTIONS:
        try:
            operation.event = read_event(raw.get("name"), raw.get("attributes"),
                                         raw.get("timestamp"), action, raw.get("id"))
        except InvalidInput as error:
            # v2 sends an event's data as its attributes.
            raise InvalidInput([_renamed(problem, "data", "attributes")
                                for problem in error.problems]) from None
    elif action in ("add_device", "delete_device"):
        device = raw.get("device")
        if not isinstance(device, dict) or not device.get("token"):
            raise InvalidInput.single("device.token", "required", "device.token is required")
        if v.has_unstorable(device["token"]):
            raise InvalidInput.single("device.token", "invalid_value", "device.token cannot "
                                      "contain NUL characters or unpaired surrogates")
        if "attributes" in device and not isinstance(device["attributes"], dict):
            raise InvalidInput.single("device.attributes", "invalid_type",
                                      "device.attributes must be an object")
    return operation


def _renamed(problem: Problem, old: str, new: str) -> Problem:
    if problem.field == old or problem.field.startswith((f"{old}.", f"{old}[")):
        return Problem(new + problem.field[len(old):], problem.reason,
                       problem.message.replace(old, new, 1))
    return problem


def apply_operation(workspace: Workspace, operation: Operation) -> None:
    """Apply one operation through the people services."""
    ref, body = operation.ref, operation.body
    match operation.action:
        case "identify":
            attributes = dict(body.get("attributes") or {})
            if body.get("timestamp") is not None:
                attributes.setdefault("_timestamp", body["timestamp"])
            services.identify_person(workspace, ref, attributes)
        case "event" | "page" | "screen":
            services.track_event(workspace, ref, name=body.get("name"),
                                 data=body.get("attributes"), timestamp=body.get("timestamp"),
                                 dedup_id=body.get("id"), type=operation.action)
        case "delete":
            services.delete_person(workspace, ref, source=Suppression.Source.API)
        case "add_device":
            device = body["device"]
            services.add_device(workspace, ref, token=device.get("token"),
                                platform=device.get("platform"),
                                last_used=device.get("last_used"),
                                attributes=device.get("attributes"))
        case "delete_device":
            services.delete_device(workspace, ref, token=body["device"]["token"])
        case "merge":
            services.merge_people(workspace, primary=operation.primary,
                                  secondary=operation.secondary)
        case "suppress":
            services.suppress_identifier(workspace, ref, source=Suppression.Source.API)
        case "unsuppress":
            services.unsuppress_identifier(workspace, ref)


def apply_batch(workspace: Workspace, raw_operations: list) -> list[BatchError]:
    """Apply the valid operations of a batch in order; return the errors of the others.

    The whole batch is one transaction: a failure part way (a lost connection, a killed
    request) stores none of it, so a client can send it again as it was. Operations the
    services refuse are reported and skipped, as the invalid ones are.
    """
    errors: list[BatchError] = []
    operations: list[Operation] = []
    for index, raw in enumerate(raw_operations):
        try:
            operations.append(parse_operation(workspace, raw, index=index))
        except InvalidInput as error:
            errors.extend(BatchError(index, problem) for problem in error.problems)

    with transaction.atomic():
        run: list[Operation] = []
        for operation in operations:
            if operation.bulkable:
                run.append(operation)
                continue
            errors += _apply_run(workspace, run)
            run = []
            errors += _apply_alone(workspace, operation)
        errors += _apply_run(workspace, run)
    return sorted(errors, key=lambda error: error.index)


def _apply_alone(workspace: Workspace, operation: Operation) -> list[BatchError]:
    try:
        apply_operation(workspace, operation)
    except InvalidInput as error:
        return [BatchError(operation.index, problem) for problem in error.problems]
    return []


def _apply_run(workspace: Workspace, run: list[Operation]) -> list[BatchError]:
    if not run:
        return []
    try:
        with transaction.atomic():
            return _Run(workspace, run).apply()
    except (IntegrityError, _SuppressedMeanwhile):
        # Someone else created one of these people, or suppressed one of their
        # identifiers, at the same moment: take the slow, exact path, one operation at a time.
        errors = []
        for operation in run:
            errors += _apply_alone(workspace, operation)
        return errors


class _SuppressedMeanwhile(Exception):
    """An identifier the run would store was suppressed after the run checked it."""


class _Run:
    """Identify and event operations applied together, in order, with bulk writes."""

    def __init__(self, workspace: Workspace, operations: list[Operation]):
        self.workspace = workspace
        self.operations = operations
        self.now = timezone.now()
        self.errors: list[BatchError] = []
        self._reset()
        self.suppressed = self._suppressed()
        self._load()

    def _reset(self):
        self.new_people: list[Person] = []
        self.dirty: dict[int, Person] = {}  # people who exist, with columns to write
        self.changed: set[int] = set()  # people who exist and changed (announced)
        self.activity: list[tuple] = []  # activity rows, in the order of the operations
        self.events: list[tuple[Person, EventInput]] = []
        self.given: list[Ref] = []  # identifiers given to people who exist

    # -- lookups --

    def _refs(self) -> Iterable[Ref]:
        for operation in self.operations:
            yield operation.ref
            if operation.identify is not None:
                yield from body_refs(self.workspace, operation.identify)

    def _suppressed(self) -> set[tuple[str, str]]:
        return services.suppressions_of(self.workspace, self._refs())

    def _is_suppressed(self, operation: Operation) -> bool:
        refs = [operation.ref]
        if operation.identify is not None:
            refs += body_refs(self.workspace, operation.identify)
        return any((ref.kind, identifier_key(ref.kind, ref.value)) in self.suppressed
                   for ref in refs if ref.kind in ("id", "email"))

    def _load(self):
        ids, emails, cio_ids = set(), set(), set()
        for ref in self._refs():
            {"id": ids, "email": emails, "cio_id": cio_ids}[ref.kind].add(
                identifier_key(ref.kind, ref.value))
        if not self.workspace.email_is_identifier:
            emails = set()
        self.by_key: dict[tuple[str, str], Person] = {}
        conditions, params = [], []
        for column, values in (("customer_id", ids), ("cio_id", cio_ids),
                               ("email_key", emails)):
            if values:
                sql, values_params = in_values(column, sorted(values))
                conditions.append(sql)
                params += values_params
        if not conditions:
            return
        for person in select_models(
                Person, f"workspace_id = %s AND ({' OR '.join(conditions)})",
                [self.workspace.pk, *params], lock=True):
            person.workspace = self.workspace
            self._remember(person)

    def _remember(self, person: Person):
        self.by_key[("cio_id", person.cio_id)] = person
        if person.customer_id:
            self.by_key[("id", person.customer_id)] = person
        if person.email_key:
            self.by_key[("email", person.email_key)] = person

    def _person(self, ref: Ref) -> Person | None:
        if ref.kind == "email" and not self.workspace.email_is_identifier:
            return None
        return self.by_key.get((ref.kind, identifier_key(ref.kind, ref.value)))

    # -- applying --

    def apply(self) -> list[BatchError]:
        for operation in self.operations:
            if self._is_suppressed(operation):
                continue
            handled = (self._identify(operation) if operation.action == "identify"
                       else self._event(operation))
            if not handled:
                self._write()
                self.errors += _apply_alone(self.workspace, operation)
                self._load()
        self._write()
        return self.errors

    def _log(self, person: Person, kind: str, data: dict):
        self.activity.append((self.workspace.pk, person.cio_id, kind, data, False, self.now))

    def _new_person(self, identifiers: dict, data: IdentifyInput) -> Person:
        person = build_person(self.workspace, identifiers, data, now=self.now)
        self.new_people.append(person)
        self._remember(person)
        self._log(person, *created_activity(person))
        return person

    def _identify(self, operation: Operation) -> bool:
        """Apply an identify in memory, or return False for one the services must apply."""
        ref, data = operation.ref, operation.identify
        other = None
        for body_ref in body_refs(self.workspace, data):
            if body_ref.kind == ref.kind:
                if identifier_key(ref.kind, body_ref.value) != identifier_key(ref.kind, ref.value):
                    return False  # an identifier change: the service logs the conflict
            else:
                other = body_ref
        person = self._person(ref)
        if person is None:
            if data.update_only or (other and self._person(other)):
                return False
            identifiers = {ref.kind: ref.value}
            if other:
                identifiers[other.kind] = other.value
            self._new_person(identifiers, data)
            return True
        given = {}
        if other:
            current = person.customer_id if other.kind == "id" else person.email_key
            if current is None and self._person(other) is None:
                # Giving a person an identifier they lack, that nobody else holds.
                given[other.kind] = other.value
            elif current != identifier_key(other.kind, other.value):
                return False
        if is_stale(person, data):
            return True
        try:
            change = change_person(person, data, identifiers=given, now=self.now)
        except InvalidInput:
            return False  # over the limit: the service reports it
        if given:
            self.given += [Ref(kind, value) for kind, value in given.items()]
            self._remember(person)
        for kind, entry in change.activity:
            self._log(person, kind, entry)
        if person.pk and change.fields:
            self.dirty[person.pk] = person
        if person.pk and change.changed:
            self.changed.add(person.pk)
        return True

    def _event(self, operation: Operation) -> bool:
        ref, event = operation.ref, operation.event
        person = self._person(ref)
        if person is None:
            if ref.kind == "cio_id":
                return True  # nobody has this cio_id: dropped, as a single call would be
            person = self._new_person({ref.kind: ref.value}, IdentifyInput())
        self.events.append((person, event))
        return True

    # -- writing --

    def _write(self):
        if not (self.new_people or self.dirty or self.events):
            return
        # Checked again inside the transaction, with the identifiers locked: one suppressed
        # since the run began sends the run down the exact path, operation by operation.
        stored = list(self.given)
        for person in self.new_people:
            if person.customer_id:
                stored.append(Ref("id", person.customer_id))
            if person.email_key:
                stored.append(Ref("email", person.email))
        if stored and suppressed_now(self.workspace, stored):
            raise _SuppressedMeanwhile
        insert_people(self.new_people)
        update_rows(Person, DIRTY_FIELDS, [
            (person.pk, *(getattr(person, name) for name in DIRTY_FIELDS))
            for person in self.dirty.values()])
        insert_rows(Activity, services.ACTIVITY_FIELDS, self.activity)
        written = insert_rows(Event, services.EVENT_FIELDS, [
            (self.workspace.pk, person.pk, None, event.name, event.type, event.timestamp,
             event.data, event.dedup_id, self.now)
            for person, event in self.events],
            returning=("id", "person", "name"), skip_conflicts_on=services.EVENT_DEDUP_INDEX)
        stored = [StoredEvent(person_id, event_id, name)
                  for event_id, person_id, name in sorted(written)]
        changed = {person.pk for person in self.new_people} | self.changed
        changed |= {event.person_id for event in stored}
        if changed:
            announce_change(self.workspace, sorted(changed))
        announce_events(self.workspace, stored)
        self._reset()


# The fields an identify in a run may change on someone who exists.
DIRTY_FIELDS = ["customer_id", "attributes", "email", "email_key", "unsubscribed", "created_at",
                "updated_at", "attributes_timestamp"]
