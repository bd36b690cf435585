"""Transactional email: one message to one person, as ``POST /v1/send/email`` asks.

``send_email`` reads Customer.io's request body, finds the person its ``identifiers``
name (creating an unknown one through the people services, as Customer.io does) and
writes one email delivery with no journey and no campaign: the outbox row that the
email sender (``campaigns.email``) sends. The delivery's ``payload["message"]`` holds
the message's templates (a transactional message's, with the request's overrides, or
the request's own), ``payload["trigger"]`` the request's ``message_data``
(``{{trigger.*}}``). Nothing is rendered here: the sender renders, and a template that
fails fails that delivery, visibly. Templates that cannot even be parsed are refused at
once, naming the field.

A suppressed identifier is accepted and nothing is sent: the delivery is written
skipped, holding no identifier. An ``Idempotency-Key`` makes a retried request find the
delivery the first one wrote.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from campaigns import liquid
from campaigns.models import Delivery, TransactionalMessage
from engage.models import Workspace
from people import services as people
from people import validation
from people.errors import InvalidInput, Problem
from people.models import Person

MAX_RECIPIENTS = 15  # across to and bcc, as Customer.io allows
MAX_SEND_AHEAD = timedelta(days=90)
MAX_REQUEST_BYTES = 1_000_000  # the body, as Customer.io limits it (attachments aside)
MAX_IDEMPOTENCY_KEY = 255
MAX_HEADERS = 50
DEFAULT_TO = "{{customer.email}}"
# The request's fields, and the transactional message's fields they override.
OVERRIDES = {"from": "from_address", "to": "to", "reply_to": "reply_to",
             "subject": "subject", "body": "body_html", "body_plain": "body_text"}
KNOWN_FIELDS = {"transactional_message_id", "identifiers", "message_data", "send_to_unsubscribed",
                "tracked", "queue_draft", "send_at", "disable_message_retention", "bcc",
                "headers", "disable_css_preprocessing", "language", "preheader", "fake_bcc",
                "body_amp", "cc", "attachments", *OVERRIDES}
# Fields Customer.io has that engage does not act on yet: refused, never silently dropped
# (``language``, ``preheader`` and ``disable_css_preprocessing`` are accepted and change
# nothing: the message reads the same without them).
UNSUPPORTED = {"attachments": "attachments are not supported",
               "cc": "cc is not supported: use to or bcc",
               "fake_bcc": "fake_bcc is not supported: use bcc",
               "body_amp": "AMP bodies are not supported"}


class MessageNotFound(Exception):
    """The transactional message a send names is not one of the workspace's."""


def save_message(message: TransactionalMessage) -> TransactionalMessage:
    """Create or update a transactional message (the admin's one way to write one)."""
    now = timezone.now()
    if message.created_at is None:
        message.created_at = now
    message.updated_at = now
    message.save()
    return message


def find_message(workspace: Workspace, reference: Any) -> TransactionalMessage:
    """Return the workspace's transactional message by its id or its name."""
    messages = TransactionalMessage.objects.filter(workspace=workspace)
    found = None
    if isinstance(reference, int) and not isinstance(reference, bool):
        found = messages.filter(pk=reference).first()
    elif isinstance(reference, str) and reference.strip():
        text = reference.strip()
        if text.isdigit():
            found = messages.filter(pk=int(text)).first()
        found = found or messages.filter(name=text).first()
    else:
        raise InvalidInput.single("transactional_message_id", "invalid",
                                  "transactional_message_id must be a message's id or name")
    if found is None:
        raise MessageNotFound(f"there is no transactional message {reference}")
    return found


def send_email(workspace: Workspace, body: dict, *, idempotency_key: str | None = None,
               ) -> tuple[Delivery, bool]:
    """Write the delivery of one transactional email; return it and whether it is new.

    Raise InvalidInput naming the field at fault, or MessageNotFound. With an
    ``idempotency_key`` already used in the workspace, return that delivery unchanged.
    """
    if idempotency_key is not None:
        if not idempotency_key.strip() or len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
            raise InvalidInput.single("Idempotency-Key", "invalid",
                                      f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} "
                                      "characters")
        existing = Delivery.objects.filter(workspace=workspace,
                                           idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    request = _read(workspace, body)
    try:
        with transaction.atomic():
            return _write(workspace, request, idempotency_key), True
    except IntegrityError:
        # The same key at the same moment: the other request's delivery is the answer.
        if idempotency_key is None:
            raise
        existing = Delivery.objects.filter(workspace=workspace,
                                           idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return existing, False


@dataclass
class _Request:
    """A send request, read and checked."""

    template: TransactionalMessage | None = None
    ref: people.Ref | None = None
    message: dict = field(default_factory=dict)
    trigger: dict = field(default_factory=dict)
    send_to_unsubscribed: bool = True
    queue_draft: bool = False
    send_at: datetime | None = None
    retain: bool = True


def _read(workspace: Workspace, body: dict) -> _Request:
    problems: list[Problem] = []
    if validation.json_bytes(body) > MAX_REQUEST_BYTES:
        raise InvalidInput.single("body", "too_large", "the request may be at most 1 MB")
    if problem := validation.value_problem(body, field=""):
        raise InvalidInput([problem])
    for name in sorted(set(body) - KNOWN_FIELDS):
        problems.append(Problem(name, "unknown_field", f"{name} is not a field of this request"))
    for name, message in UNSUPPORTED.items():
        if body.get(name) not in (None, "", [], {}):
            problems.append(Problem(name, "unsupported", message))
    request = _Request()
    reference = body.get("transactional_message_id")
    if reference not in (None, ""):
        request.template = find_message(workspace, reference)
    request.ref = _identifier(workspace, body.get("identifiers"), problems)
    request.message = _message(request.template, body, problems)
    data = body.get("message_data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(Problem("message_data", "invalid_type", "message_data must be an object"))
    request.trigger = data if isinstance(data, dict) else {}
    template = request.template
    request.send_to_unsubscribed = _flag(body, "send_to_unsubscribed",
                                         template.send_to_unsubscribed if template else True,
                                         problems)
    request.message["tracking"] = _flag(body, "tracked",
                                        template.tracking if template else True, problems)
    request.queue_draft = _flag(body, "queue_draft", template.queue_draft if template else False,
                                problems)
    request.retain = not _flag(body, "disable_message_retention", False, problems)
    request.send_at = _send_at(body.get("send_at"), problems)
    if problems:
        raise InvalidInput(problems)
    return request


def _identifier(workspace: Workspace, raw: Any, problems: list[Problem]) -> people.Ref | None:
    if not isinstance(raw, dict) or len(raw) != 1:
        problems.append(Problem("identifiers", "invalid",
                                "identifiers must hold exactly one of id, email or cio_id"))
        return None
    ((kind, value),) = raw.items()
    if kind not in ("id", "email", "cio_id"):
        problems.append(Problem(f"identifiers.{kind}", "invalid",
                                "identifiers must hold exactly one of id, email or cio_id"))
        return None
    if kind == "cio_id" and isinstance(value, str):
        value = value.removeprefix("cio_")
    try:
        return people.make_ref(workspace, kind, value)
    except InvalidInput as error:
        problems.extend(error.problems)
        return None


def _message(template: TransactionalMessage | None, body: dict,
             problems: list[Problem]) -> dict:
    """Return the message's templates: the transactional message's, overridden by the
    request's; without a transactional message, from, subject and body are required."""
    values = {}
    for name, attribute in OVERRIDES.items():
        value = body.get(name)
        if value in (None, ""):
            value = getattr(template, attribute) if template else None
        if value is not None and not isinstance(value, str):
            problems.append(Problem(name, "invalid_type", f"{name} must be a string"))
            value = None  # refused: the request answers 400 naming it
        values[name] = value or None
    if template is None:
        for name in ("from", "subject", "body"):
            if not values.get(name):
                problems.append(Problem(name, "required", f"{name} is required without a "
                                                          "transactional_message_id"))
    values["to"] = values["to"] or DEFAULT_TO
    bcc = body.get("bcc")
    if bcc is not None and not isinstance(bcc, str):
        problems.append(Problem("bcc", "invalid_type", "bcc must be a string of addresses"))
        bcc = None
    if len(_addresses(values["to"])) + len(_addresses(bcc or "")) > MAX_RECIPIENTS:
        problems.append(Problem("to", "too_many",
                                f"at most {MAX_RECIPIENTS} recipients across to and bcc"))
    headers = body.get("headers") or {}
    if not isinstance(headers, dict) or len(headers) > MAX_HEADERS or not all(
            isinstance(key, str) and isinstance(value, str) and key.isascii() and value.isascii()
            for key, value in headers.items()):
        problems.append(Problem("headers", "invalid", "headers must be an object of at most "
                                                      f"{MAX_HEADERS} ASCII strings"))
        headers = {}
    problems += template_problems(values)
    return {"from": values["from"], "to": values["to"], "reply_to": values["reply_to"],
            "subject": values["subject"], "body_html": values["body"],
            "body_text": values["body_plain"], "bcc": bcc or None, "headers": headers}


def template_problems(values: dict[str, str | None]) -> list[Problem]:
    """Return the templates among ``values`` (by field) that cannot be parsed."""
    problems = []
    for name, value in values.items():
        if value and "{" in value:
            try:
                liquid.ENVIRONMENT.from_string(value)
            except liquid.LiquidError as error:
                problems.append(Problem(name, "invalid_template",
                                        f"{name}: {str(error).splitlines()[0]}"))
    return problems


def _addresses(text: str) -> list[str]:
    return [part for part in (item.strip() for item in text.split(",")) if part]


def _flag(body: dict, name: str, default: bool, problems: list[Problem]) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        problems.append(Problem(name, "invalid_type", f"{name} must be true or false"))
        return default
    return value


def _send_at(raw: Any, problems: list[Problem]) -> datetime | None:
    moment = validation.optional_moment(raw, field="send_at", problems=problems)
    if moment is not None and moment > timezone.now() + MAX_SEND_AHEAD:
        problems.append(Problem("send_at", "too_late",
                                "send_at may be at most 90 days ahead"))
    return moment


def _person(workspace: Workspace, ref: people.Ref) -> tuple[Person | None, str]:
    """Return the person ``ref`` names, created if unknown; or None and why not."""
    person = Person.objects.with_identifier(workspace, ref.kind, ref.value).order_by("pk").first()
    if person is not None:
        return person, ""
    if ref.kind == "cio_id":
        raise InvalidInput.single("identifiers.cio_id", "not_found",
                                  f"nobody has the cio_id {ref.value}")
    result = people.identify_person(workspace, ref, {})
    if result.person is None:
        if result.outcome == people.Outcome.SUPPRESSED:
            return None, "the person is suppressed"
        raise InvalidInput.single(f"identifiers.{ref.kind}", str(result.outcome),
                                  result.message or "nobody could be found or created")
    return result.person, ""


def _write(workspace: Workspace, request: _Request, idempotency_key: str | None) -> Delivery:
    now = timezone.now()
    person, skip_reason = _person(workspace, request.ref)
    state = Delivery.State.DRAFTED if request.queue_draft else Delivery.State.QUEUED
    if person is not None and person.unsubscribed and not request.send_to_unsubscribed:
        skip_reason = "the person is unsubscribed"
    payload = {"message": request.message, "trigger": request.trigger}
    if not request.retain:
        payload["disable_message_retention"] = True
    if skip_reason:
        state = Delivery.State.SKIPPED
    if person is None:
        payload = {}  # a suppressed identifier is kept nowhere
    to = request.message["to"]
    recipient = to if "{" not in to else (person.email or "" if person else "")
    return Delivery.objects.create(
        workspace=workspace, campaign=None, journey=None, journey_seq=0, step_id="",
        kind=Delivery.Kind.EMAIL, state=state, reason=skip_reason,
        cio_id=person.cio_id if person else None, recipient=recipient[:500],
        payload=payload, transactional_message=request.template,
        idempotency_key=idempotency_key, created_at=now,
        next_attempt_at=(max(request.send_at or now, now) if state == Delivery.State.QUEUED
                         else None))


def forget_people(workspace: Workspace, cio_ids: list[str], *, suppress: bool) -> int:
    """Skip the unsent transactional emails of people being deleted, inside the deletion's
    transaction; when suppressing, forget whom all their transactional emails were for.

    One statement. Return how many deliveries it changed.
    """
    if not cio_ids:
        return 0
    theirs = Delivery.objects.filter(workspace=workspace, journey__isnull=True,
                                     cio_id__in=cio_ids)
    unsent = Q(state__in=[Delivery.State.QUEUED, Delivery.State.DRAFTED])
    skipping = {"state": Value(Delivery.State.SKIPPED), "reason": Value("the person was deleted"),
                "next_attempt_at": None}
    if not suppress:
        return theirs.filter(unsent).update(**skipping)
    return theirs.update(
        **{name: Case(When(unsent, then=value), default=F(name),
                      output_field=Delivery._meta.get_field(name))
           for name, value in skipping.items()},
        cio_id=None, recipient="", payload={})
