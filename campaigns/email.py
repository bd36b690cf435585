"""Email deliveries: rendered with Liquid, sent once over SMTP (or a Django mail backend).

The outbox rule (``DESIGN.md``, "Journeys"): ``send_due_emails`` claims due queued
email deliveries and marks them ``sending`` in one commit, sends them in id order over
one connection per batch, and marks them ``sent`` a few at a time. A worker killed
between the server's acceptance and that commit leaves the delivery ``sending``;
once its lease is over it becomes ``unknown`` and is never sent again (plain SMTP takes
no idempotency key): at most once, counted, never hidden. Sent emails are recorded
RECORD_EVERY at a time and the relay is at most IN_FLIGHT messages ahead of them,
so only the first UNKNOWN_AT_MOST unfinished emails of a cut-off batch can be in that
state; the rest of the batch is queued again.

Sending: over Django's plain SMTP backend the message bytes are written here (Django's
MIME classes cost a millisecond a message) and a relay process of this worker
(``campaigns.smtp_relay``, one SMTP connection) talks to the server while this thread
renders the next messages and records the sent ones; any other
``EMAIL_BACKEND`` (django-anymail's ESPs) gets Django's ``EmailMessage``, one at a time.

Rendering: subject, addresses and text are plain Liquid; the HTML escapes every value
it inserts, gets its CSS inlined and a text part derived from it when the step has none.
A template that fails fails its delivery with the line and the reason; nothing broken
is sent. The triggering event's ``recipient``, ``from_address`` and ``reply_to``
override the step's addresses, as in Customer.io.
"""

import binascii
import hashlib
import hmac
import logging
import re
import smtplib
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr
from functools import lru_cache
from html import escape
from html.parser import HTMLParser
from typing import Any
from uuid import uuid4

import css_inline
from django.conf import settings
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.mail import BadHeaderError
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend
from django.core.mail.message import sanitize_address
from django.core.mail.utils import DNS_NAME
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from liquid import StrictDefaultUndefined
from liquid.ast import Node
from liquid.exceptions import LiquidError
from liquid.tag import Tag
from liquid.token import TOKEN_TAG

from campaigns import liquid, smtp_relay, tracking
from campaigns.models import Campaign, Delivery, Journey
from campaigns.workflow import Workflow
from people.models import Person

log = logging.getLogger(__name__)

BATCH_SIZE = 200
# A claim older than this was cut off by a dead worker: the delivery becomes "unknown".
SENDING_LEASE = timedelta(minutes=10)
# A batch still sending after this much of its lease gives the rest back to the queue,
# so no claim outlives its lease while its worker is alive.
LEASE_MARGIN = SENDING_LEASE / 2
# Waits after the 1st, 2nd, ... temporary failure; the last one repeats until MAX_ATTEMPTS.
RETRY_DELAYS = [timedelta(minutes=minutes) for minutes in (1, 5, 15, 60, 180, 360)]
MAX_ATTEMPTS = 10
# Sent emails are recorded this many at a time (one commit each time), while the relay
# process sends at most IN_FLIGHT more; so a killed worker leaves at most UNKNOWN_AT_MOST
# emails of its batch unknown (the first unfinished ones); the rest are queued again.
RECORD_EVERY = 20
IN_FLIGHT = 20
UNKNOWN_AT_MOST = RECORD_EVERY + IN_FLIGHT
# A batch is rendered this many messages at a time, each part sent while the next renders.
PREPARE_EVERY = 20
# Journeys ended by these before their email went out: the email is not sent.
ENDED_BEFORE_SENDING = {
    "campaign_stopped": "the campaign was stopped before the email was sent",
    "campaign_archived": "the campaign was archived before the email was sent",
    "person_deleted": "the person was deleted",
    "deleted_by_campaign": "the person was deleted",
}


# --- Liquid: the HTML environment and {% unsubscribe_url %} ----------------------------


class UnsubscribeUrlNode(Node):
    __slots__ = ()

    def __init__(self, token):
        super().__init__(token)
        self.blank = False

    def __str__(self) -> str:
        return "{% unsubscribe_url %}"

    def render_to_output(self, context, buffer) -> int:
        delivery_id = context.globals.get(DELIVERY_KEY)
        url = tracking.unsubscribe_url(delivery_id) if delivery_id is not None else ""
        return buffer.write(escape(url) if context.env.autoescape else url)


class UnsubscribeUrlTag(Tag):
    """``{% unsubscribe_url %}``: the delivery's unsubscribe page (``campaigns.tracking``)."""

    name = "unsubscribe_url"
    block = False

    def parse(self, stream) -> UnsubscribeUrlNode:
        stream.expect(TOKEN_TAG, value=self.name)
        return UnsubscribeUrlNode(stream.current)


DELIVERY_KEY = "_engage_delivery_id"  # where the tag finds its delivery in the context


def _environment(*, autoescape: bool) -> liquid.CampaignEnvironment:
    environment = liquid.CampaignEnvironment(undefined=StrictDefaultUndefined,
                                             autoescape=autoescape)
    environment.tags[UnsubscribeUrlTag.name] = UnsubscribeUrlTag(environment)
    return environment


TEXT = _environment(autoescape=False)  # subject, addresses, text part
HTML = _environment(autoescape=True)  # values inserted into HTML are escaped

_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False)


# --- rendering -------------------------------------------------------------------------


class RenderError(Exception):
    """A message that cannot be rendered: its delivery fails with this reason."""


class Skip(Exception):  # noqa: N818 - an outcome, not a fault
    """A message that must not go out: its delivery is skipped with this reason."""


@dataclass
class Rendered:
    from_email: str
    to: str
    reply_to: str
    subject: str
    html: str
    text: str
    links: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)  # a transactional send's (its payload)
    headers: dict[str, str] = field(default_factory=dict)

    def summary(self, message_id: str) -> dict[str, str]:
        return {"from": self.from_email, "to": self.to, "reply_to": self.reply_to,
                "subject": self.subject, "message_id": message_id}


def liquid_context(delivery: Delivery, person: Person | None) -> dict[str, Any]:
    """Return the names a message's Liquid sees, shaped as ``engine.Run.liquid_context``.

    A delivery without a journey (a transactional send) takes ``trigger`` from its
    payload.
    """
    customer = {}
    if person is not None:
        customer = {**person.attributes, "id": person.customer_id, "email": person.email,
                    "cio_id": person.cio_id}
    journey = delivery.journey
    context = journey.context if journey is not None else {}
    trigger = context.get("trigger") if journey is not None else delivery.payload.get("trigger")
    campaign = delivery.campaign
    return {"customer": customer, "event": (context.get("event") or {}).get("data") or {},
            "trigger": trigger or {},
            "campaign": {"id": campaign.pk, "name": campaign.name} if campaign else {},
            DELIVERY_KEY: delivery.pk}


def _render(name: str, source: str | None, context: dict, *, html: bool = False) -> str:
    try:
        return liquid.render(source or "", context, environment=HTML if html else TEXT)
    except liquid.TemplateError as error:
        raise RenderError(f"{name}: {error}") from None


def render_email(delivery: Delivery, message: dict, person: Person | None) -> Rendered:
    """Render a delivery's message (a step, or ``payload["message"]``); raise RenderError
    (a broken template) or Skip (nobody to send it to)."""
    context = liquid_context(delivery, person)
    event = context["event"]
    to = (_render("to", message["to"], context) if message.get("to")
          else delivery.recipient or (person.email if person else "") or "").strip()
    to = str(event.get("recipient") or to).strip()
    from_email = str(event.get("from_address") or _render("from", message.get("from"), context)
                     or settings.DEFAULT_FROM_EMAIL).strip()
    reply_to = str(event.get("reply_to") or _render("reply_to", message.get("reply_to"),
                                                     context)).strip()
    if not to:
        raise Skip("the message has no recipient")
    if not valid_address(to):
        raise Skip(f"the recipient address is invalid: {to[:200]}")
    for name, value in (("from", from_email), ("reply_to", reply_to)):
        if value and not valid_address(value):
            raise RenderError(f"{name}: the address is invalid: {value[:200]}")
    subject = " ".join(_render("subject", message.get("subject"), context).split())
    html = _render("body_html", message.get("body_html"), context, html=True)
    text = _render("body_text", message.get("body_text"), context)
    if not html.strip() and not text.strip():
        raise RenderError("the message has no body")
    links: list[str] = []
    if html.strip():
        if not text.strip():
            text_template = text_template_of(message["body_html"])
            text = (tidy_text(_render("body_html", text_template, context))
                    if text_template is not None else html_to_text(html))
        if "<style" in html.lower():
            html = _INLINER.inline(html)
        html, links = tracking.instrument_html(html, delivery.pk,
                                               track=bool(message.get("tracking", True)))
    bcc = [address.strip() for address in (message.get("bcc") or "").split(",")
           if address.strip()]
    for address in bcc:
        if not valid_address(address):
            raise RenderError(f"bcc: the address is invalid: {address[:200]}")
    return Rendered(from_email, to, reply_to, subject, html, text, links, bcc=bcc,
                    headers={str(name): str(value)
                             for name, value in (message.get("headers") or {}).items()})


def address_of(value: str) -> str:
    """Return the bare address of "Name <a@b.c>" or "a@b.c"."""
    return parseaddr(value)[1] if "<" in value or "(" in value else value.strip()


@lru_cache(maxsize=4096)
def valid_address(value: str) -> bool:
    """Tell whether ``value`` is one address ("Name <a@b.c>" or "a@b.c")."""
    address = address_of(value)
    if "," in address or "\n" in value or "\r" in value:
        return False
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


class _TextFromHtml(HTMLParser):
    BLOCKS = {"p", "div", "br", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "ul",
              "ol", "li", "blockquote", "hr", "section", "article", "header", "footer"}
    HIDDEN = {"style", "script", "head", "title"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0
        self.links: list[tuple[str, int]] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
            if tag == "li":
                self.parts.append("- ")
        elif tag == "a":
            self.links.append((dict(attrs).get("href") or "", len(self.parts)))
        elif tag == "img" and (alt := dict(attrs).get("alt")):
            self.parts.append(alt)

    def handle_endtag(self, tag):
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            label = "".join(self.parts[start:]).strip()
            # A link of a template ("{{...}}", "{% unsubscribe_url %}") is kept, to render.
            if href.startswith(("http://", "https://", "mailto:", "{{", "{%")) \
                    and href != label:
                self.parts.append(f" ({href.removeprefix('mailto:')})" if label else href)

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Return a readable text part for an HTML body: blocks on lines, links in brackets."""
    parser = _TextFromHtml()
    parser.feed(html)
    parser.close()
    return tidy_text("".join(parser.parts))


def tidy_text(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


@lru_cache(maxsize=256)
def text_template_of(html_source: str) -> str | None:
    """Return the text part's template derived from an HTML template, or None when the
    derived text is no template (a Liquid tag cut in two by HTML): then the text part is
    derived from each rendered HTML instead. Values rendered into it stay unescaped."""
    source = html_to_text(html_source)
    try:
        TEXT.from_string(source)
    except LiquidError:
        return None
    return source


def message_id(delivery_id: int) -> str:
    """Return the delivery's Message-ID: the same every time, not guessable from the id."""
    mac = _keyed(settings.SECRET_KEY).copy()
    mac.update(f"delivery-{delivery_id}".encode())
    return f"<delivery-{delivery_id}.{mac.hexdigest()[:16]}@{settings.ENGAGE_MESSAGE_ID_DOMAIN}>"


@lru_cache(maxsize=4)
def _keyed(secret: str):
    """Return an HMAC keyed with the secret, to copy: keying one costs as much as using it."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def build_message(delivery: Delivery, rendered: Rendered, smtp) -> mail.EmailMessage:
    """Return the delivery's message for a Django mail backend (ESPs of django-anymail)."""
    headers = {**rendered.headers, "Message-ID": message_id(delivery.pk),
               **tracking.unsubscribe_headers(delivery.pk)}
    message = mail.EmailMultiAlternatives(
        subject=rendered.subject, body=rendered.text, from_email=rendered.from_email,
        to=[rendered.to], bcc=rendered.bcc or None,
        reply_to=[rendered.reply_to] if rendered.reply_to else None,
        headers=headers, connection=smtp)
    if rendered.html.strip():
        message.attach_alternative(rendered.html, "text/html")
    return message


# --- the message's bytes for plain SMTP ------------------------------------------------
# Django's MIME classes cost a millisecond a message; this writes the same message
# directly: CRLF line ends, RFC 2047 for non-ASCII header text (an address's name only),
# IDNA for a non-ASCII domain, quoted-printable for a body not plain short-lined ASCII.
# What it cannot write as plain ASCII (a non-ASCII local part) goes through Django's.

MAX_LINE = 998  # RFC 5322: no line longer than this, CRLF apart
FOLD_AT = 78
_OWN_HEADERS = {"from", "to", "reply-to", "subject", "date", "message-id", "mime-version",
                "content-type", "content-transfer-encoding", "bcc", "cc"}


class NeedsDjango(Exception):  # noqa: N818 - a detour, not a fault
    """A message this builder does not write; Django's MIME classes do."""


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipients: list[str]
    content: bytes


@lru_cache(maxsize=1024)
def _address(value: str) -> tuple[str, str]:
    """Return (header text, envelope address) of "Name <a@b.c>" or "a@b.c"."""
    name, address = parseaddr(value) if "<" in value or "(" in value else ("", value.strip())
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise NeedsDjango("a non-ASCII local part needs SMTPUTF8")
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    address = f"{local}@{domain}"
    if not name:
        return address, address
    if name.isascii():
        return formataddr((name, address)), address
    return f"{Header(name, 'utf-8').encode()} <{address}>", address


def _header(name: str, value: str) -> str:
    """Return one header line (folded when long), refusing a value with a line break."""
    if "\n" in value or "\r" in value:
        raise BadHeaderError(f"Header values can't contain newlines (got {value!r} for "
                             f"header {name!r})")
    if value.isascii() and len(name) + len(value) + 2 <= MAX_LINE:
        return f"{name}: {value}"  # folded only when it must be, as folding costs
    encoded = Header(value, "us-ascii" if value.isascii() else "utf-8", header_name=name,
                     maxlinelen=FOLD_AT).encode(linesep="\r\n")
    return f"{name}: {encoded}"


def _part(content_type: str, text: str) -> str:
    """Return a text part: its headers, a blank line and its body, with CRLF line ends."""
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    if body.isascii() and all(len(line) <= MAX_LINE for line in body.split("\n")):
        encoding = "7bit"
    else:  # soft line breaks come out as the LF of the line ends: all become CRLF below
        encoding = "quoted-printable"
        body = binascii.b2a_qp(body.encode(), istext=True).decode("ascii")
    body = body.replace("\n", "\r\n")
    return (f'Content-Type: {content_type}; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n{body}")


def build_envelope(delivery: Delivery, rendered: Rendered) -> Envelope:
    """Return the delivery's message as SMTP sends it: envelope addresses and bytes."""
    from_header, sender = _address(rendered.from_email)
    to_header, recipient = _address(rendered.to)
    lines = [f"From: {from_header}", f"To: {to_header}"]
    if rendered.reply_to:
        lines.append(f"Reply-To: {_address(rendered.reply_to)[0]}")
    lines += [_header("Subject", rendered.subject),
              f"Date: {formatdate(localtime=settings.EMAIL_USE_LOCALTIME)}",
              f"Message-ID: {message_id(delivery.pk)}"]
    headers = {**rendered.headers, **tracking.unsubscribe_headers(delivery.pk)}
    for name, value in headers.items():
        if not name or not name.isascii() or ":" in name or not name.strip() == name:
            raise BadHeaderError(f"Invalid header name {name!r}")
        if name.lower() in _OWN_HEADERS:
            raise NeedsDjango(f"the header {name} replaces one of the message's own")
        lines.append(_header(name, value))
    lines.append("MIME-Version: 1.0")
    if rendered.html.strip():
        boundary = f"=_{uuid4().hex}"
        lines += [f'Content-Type: multipart/alternative; boundary="{boundary}"', "",
                  f"--{boundary}", _part("text/plain", rendered.text), f"--{boundary}",
                  _part("text/html", rendered.html), f"--{boundary}--", ""]
    else:
        lines.append(_part("text/plain", rendered.text))
    recipients = [recipient, *(_address(address)[1] for address in rendered.bcc)]
    return Envelope(sender, recipients, "\r\n".join(lines).encode("ascii"))


# --- sending ---------------------------------------------------------------------------


def _due(now: datetime):
    return Delivery.objects.filter(kind=Delivery.Kind.EMAIL, state=Delivery.State.QUEUED,
                                   next_attempt_at__lte=now)


def expire_sending(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Settle emails whose sending claim outlived its lease; return how many.

    Their worker died in the middle of a batch. A batch is sent in id order, at most
    IN_FLIGHT ahead of the sent emails recorded RECORD_EVERY at a time, so of a batch's
    emails still ``sending`` only the first UNKNOWN_AT_MOST may have reached the server
    unrecorded: they become
    ``unknown`` and are never sent again. The ones after them were never handed to the
    server: they are queued again.
    """
    now = now or timezone.now()
    lapsed = Delivery.objects.filter(kind=Delivery.Kind.EMAIL, state=Delivery.State.SENDING,
                                     next_attempt_at__lt=now)
    if not lapsed.exists():
        return 0
    with transaction.atomic():
        rows = list(lapsed.order_by("pk").select_for_update(skip_locked=True)
                    .values_list("pk", "reason")[:limit])
        unknown: set[int] = set()
        per_batch: dict[str, int] = {}
        for pk, batch in rows:  # in id order: the order the batch was sent in
            per_batch[batch] = per_batch.get(batch, 0) + 1
            if per_batch[batch] <= UNKNOWN_AT_MOST:
                unknown.add(pk)
        Delivery.objects.filter(pk__in=unknown).update(
            state=Delivery.State.UNKNOWN, next_attempt_at=None,
            reason="sending was cut off (the worker stopped): it may or may not have "
                   "been accepted, and is not sent again")
        Delivery.objects.filter(pk__in=[pk for pk, _ in rows if pk not in unknown]).update(
            state=Delivery.State.QUEUED, next_attempt_at=now,
            reason="queued again: its worker stopped before sending it")
    return len(rows)


def claim_due(*, now: datetime, limit: int) -> list[int]:
    """Claim due queued emails: mark them ``sending`` in one commit; return their ids.

    The claim's ``reason`` names the batch, so that a batch cut off by a dead worker is
    told apart from others (``expire_sending``).
    """
    if not _due(now).exists():
        return []  # a read, not a write transaction: cheap to ask every half second
    with transaction.atomic():
        ids = list(_due(now).order_by("next_attempt_at")
                   .select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit])
        Delivery.objects.filter(pk__in=ids).update(
            state=Delivery.State.SENDING, attempts=F("attempts") + 1,
            next_attempt_at=now + SENDING_LEASE, reason=f"sending in batch {uuid4().hex}")
    return ids


@dataclass
class Outgoing:
    delivery: Delivery
    rendered: Rendered


def send_due_emails(*, now: datetime | None = None, limit: int = BATCH_SIZE) -> int:
    """Send one batch of due emails over one connection; return how many were claimed."""
    now = now or timezone.now()
    expire_sending(now=now)
    ids = claim_due(now=now, limit=limit)
    if ids:
        send_claimed(ids)
    return len(ids)


def send_claimed(ids: list[int]) -> None:
    """Render and send deliveries this worker claimed (``sending``), recording each
    outcome: sent, skipped, failed, or queued again after a temporary failure.

    The batch is rendered PREPARE_EVERY messages at a time, each part handed to the
    connection before the next is rendered, so that rendering overlaps sending.
    """
    claimed = time.monotonic()
    deliveries = list(Delivery.objects.filter(pk__in=ids, state=Delivery.State.SENDING)
                      .order_by("pk").select_related("journey", "campaign"))
    people = _people_of(deliveries)
    workflows: dict[int, Workflow] = {}
    suppressed = _Suppressed()
    for delivery in deliveries:  # the likely recipients, looked up once for the batch
        person = people.get((delivery.workspace_id, delivery.cio_id))
        suppressed.expect(delivery.workspace_id, delivery.recipient,
                          person.email if person is not None else "")
    batch: _Batch | None = None  # opened for the first message to send
    try:
        for start in range(0, len(deliveries), PREPARE_EVERY):
            outgoing = _prepare(deliveries[start:start + PREPARE_EVERY], people, workflows,
                                suppressed)
            if not outgoing:
                continue
            batch = batch or _Batch(claimed)
            if not batch.send(outgoing):  # too late: the rest goes back to the queue
                _give_back(deliveries[start + PREPARE_EVERY:])
                break
        if batch is not None:
            batch.finish()
    finally:
        if batch is not None:
            batch.close()


def _finish(delivery: Delivery, state: str, reason: str = "", **values) -> None:
    Delivery.objects.filter(pk=delivery.pk, state=Delivery.State.SENDING).update(
        state=state, reason=reason[:2000], next_attempt_at=None, **values)


def _people_of(deliveries: list[Delivery]) -> dict[tuple[int, str], Person]:
    by_workspace: dict[int, set[str]] = {}
    for delivery in deliveries:
        if delivery.cio_id:
            by_workspace.setdefault(delivery.workspace_id, set()).add(delivery.cio_id)
    return {(person.workspace_id, person.cio_id): person for workspace_id, cio_ids in
            by_workspace.items() for person in
            Person.objects.filter(workspace_id=workspace_id, cio_id__in=cio_ids)}


class _Suppressed:
    """Which addresses the workspaces' suppression lists hold, asked once per address."""

    def __init__(self):
        self.expected: dict[int, set[str]] = {}
        self.checked: dict[int, set[str]] = {}
        self.found: dict[int, set[str]] = {}

    def expect(self, workspace_id: int, *addresses: str) -> None:
        """Note addresses to ask about together with the first ones asked."""
        self.expected.setdefault(workspace_id, set()).update(filter(None, addresses))

    def holds(self, workspace_id: int, address: str) -> bool:
        checked = self.checked.setdefault(workspace_id, set())
        if address not in checked:
            asked = (self.expected.pop(workspace_id, set()) - checked) | {address}
            self.found.setdefault(workspace_id, set()).update(
                tracking.suppressed_addresses(workspace_id, sorted(asked)))
            checked.update(asked)
        return address in self.found[workspace_id]


def _prepare(deliveries: list[Delivery], people: dict[tuple[int, str], Person],
             workflows: dict[int, Workflow], suppressed: _Suppressed) -> list[Outgoing]:
    """Render claimed deliveries; skip or fail what must not be sent; return the rest."""
    ready: list[Outgoing] = []
    for delivery in deliveries:
        person = people.get((delivery.workspace_id, delivery.cio_id))
        try:
            message = _message_of(delivery, workflows)
            _check_still_wanted(delivery, person)
            ready.append(Outgoing(delivery, render_email(delivery, message, person)))
        except Skip as skip:
            _finish(delivery, Delivery.State.SKIPPED, str(skip))
        except RenderError as error:
            _finish(delivery, Delivery.State.FAILED, str(error))
        except Exception as error:  # a fault in one message must not stop the others
            log.exception("email delivery %s could not be rendered", delivery.pk)
            _finish(delivery, Delivery.State.FAILED, f"rendering failed: {error}")
    sendable = []
    for item in ready:
        if suppressed.holds(item.delivery.workspace_id, item.rendered.to):
            _finish(item.delivery, Delivery.State.SKIPPED,
                    "the address is on the workspace's suppression list")
        else:
            sendable.append(item)
    return sendable


def _message_of(delivery: Delivery, workflows: dict[int, Workflow]) -> dict:
    """Return what to send: the delivery's own message, else its campaign step's."""
    message = delivery.payload.get("message")
    if message is not None:
        return message
    campaign = delivery.campaign
    if campaign is None:
        raise Skip("the campaign was deleted")
    if campaign.pk not in workflows:
        workflows[campaign.pk] = Workflow(campaign.definition["workflow"]["steps"])
    step = workflows[campaign.pk].get(delivery.step_id)
    if step is None:
        raise RenderError(f"the step {delivery.step_id} is no longer in the campaign")
    return step


def _check_still_wanted(delivery: Delivery, person: Person | None) -> None:
    journey = delivery.journey
    if journey is not None and journey.state == Journey.State.EXITED \
            and journey.exit_reason in ENDED_BEFORE_SENDING:
        raise Skip(ENDED_BEFORE_SENDING[journey.exit_reason])
    if delivery.campaign is not None and delivery.campaign.state == Campaign.State.ARCHIVED:
        raise Skip(ENDED_BEFORE_SENDING["campaign_archived"])
    if delivery.cio_id and person is None:
        raise Skip("the person was deleted")


class _Batch:
    """A batch's one connection: sends what it is handed in order, records the outcomes.

    Over plain SMTP this thread's relay process (``campaigns.smtp_relay``) talks to the
    server while this thread renders and builds the next messages and records the sent
    ones, at most IN_FLIGHT messages ahead of the outcomes; any other backend (an ESP's
    API) sends one message after the other through Django's mail API.
    """

    def __init__(self, claimed: float):
        self.claimed = claimed
        self.sent = _SentRecorder()
        self.smtp = mail.get_connection(fail_silently=False)
        self.broken: Exception | None = None  # no line to the server: try again later
        self.relay: smtp_relay.Relay | None = None
        self.handed: deque[Outgoing] = deque()  # sent to the relay, outcome not read yet
        if type(self.smtp) is SmtpBackend:  # the relay opens the connection, not this one
            try:
                self.relay = _relay()
                self.relay.open(_parameters(self.smtp))
            except (OSError, smtp_relay.RelayStopped) as error:  # no relay: try again later
                _drop_relay(kill=True)
                self.relay, self.broken = None, error
            return
        try:
            self.smtp.open()
        except Exception as error:  # no server to talk to: nothing was refused
            self.broken = error

    def send(self, outgoing: list[Outgoing]) -> bool:
        """Send (or hand to the relay) these messages; return False when the batch
        outlived LEASE_MARGIN: then these and the rest are given back."""
        for index, item in enumerate(outgoing):
            if time.monotonic() - self.claimed > LEASE_MARGIN.total_seconds():
                _give_back([rest.delivery for rest in outgoing[index:]])
                return False
            if self.broken is not None:
                _failed(item.delivery, self.broken, temporary=True)
            elif self.relay is not None:
                self._hand(item)
            else:
                self._send_django(item)
        return True

    def _hand(self, item: Outgoing) -> None:
        try:
            envelope = build_envelope(item.delivery, item.rendered)
        except NeedsDjango:
            try:
                envelope = _django_envelope(item.delivery, item.rendered, self.smtp)
            except Exception as error:
                _failed(item.delivery, error)
                return
        except Exception as error:  # a message that cannot be built is not sent
            _failed(item.delivery, error)
            return
        while len(self.handed) >= IN_FLIGHT:
            self._settle(self.relay.outcome(wait=True))
        self.relay.send(envelope.sender, envelope.recipients, envelope.content)
        self.handed.append(item)
        while (outcome := self.relay.outcome(wait=False)) is not None:
            self._settle(outcome)

    def _settle(self, outcome: tuple[Exception | None, bool]) -> None:
        error, unsent = outcome
        item = self.handed.popleft()
        if error is None:
            self.sent.add(item.delivery, item.rendered)
            return
        _failed(item.delivery, error, temporary=unsent)
        if unsent:  # the line is gone and could not be reopened: hand nothing more
            self.broken = error

    def _send_django(self, item: Outgoing) -> None:
        delivery = item.delivery
        try:
            message = build_message(delivery, item.rendered, self.smtp)
            accepted = self.smtp.send_messages([message])
        except Exception as error:
            _failed(delivery, error)
            if smtp_relay.connection_lost(error):
                self.smtp.close()
                try:
                    self.smtp.open()
                except Exception as reopening:
                    self.broken = reopening
            return
        if not accepted:
            _failed(delivery, RuntimeError("the mail backend did not send it"))
            return
        status = getattr(message, "anymail_status", None)  # an ESP's id (django-anymail)
        esp_id = status.message_id if status is not None else None
        self.sent.add(delivery, item.rendered, esp_id=None if esp_id is None else str(esp_id))

    def finish(self) -> None:
        """Wait for the outcomes of everything handed to the relay."""
        while self.handed:
            self._settle(self.relay.outcome(wait=True))

    def close(self) -> None:
        """Stop sending (what was not handed over stays unsent), record, hang up.

        A batch cut off with messages in the relay (an error here) ends the relay, so
        that nothing more of it is sent; this thread's next batch starts another."""
        try:
            if self.relay is not None:
                if self.handed:
                    _drop_relay(kill=True)
                else:
                    try:
                        self.relay.close()
                    except smtp_relay.RelayStopped:  # it ended after its last answer
                        _drop_relay(kill=True)
            self.sent.flush()
        finally:
            if self.relay is None and self.broken is None:
                self.smtp.close()


# Each thread that sends has its relay process, kept from one batch to the next: starting
# one costs about as long as sending a batch.
_relays = threading.local()


def _relay() -> smtp_relay.Relay:
    """Return this thread's relay process, started if it has none (or it died)."""
    relay = getattr(_relays, "relay", None)
    if relay is None or not relay.alive():
        if relay is not None:
            relay.kill()
        relay = _relays.relay = smtp_relay.Relay()
    return relay


def _drop_relay(*, kill: bool = False) -> None:
    relay = getattr(_relays, "relay", None)
    _relays.relay = None
    if relay is not None and kill:
        relay.kill()
    elif relay is not None:
        relay.stop()


def stop_relay() -> None:
    """End this thread's relay process, if it has one (it also ends with the thread)."""
    _drop_relay()


def _parameters(smtp: SmtpBackend) -> dict[str, Any]:
    """Return what the relay needs to open the connection ``smtp.open()`` would."""
    return {"host": smtp.host, "port": smtp.port, "username": smtp.username,
            "password": smtp.password, "use_tls": smtp.use_tls, "use_ssl": smtp.use_ssl,
            "timeout": smtp.timeout, "ssl_keyfile": smtp.ssl_keyfile,
            "ssl_certfile": smtp.ssl_certfile, "local_hostname": DNS_NAME.get_fqdn()}


def _django_envelope(delivery: Delivery, rendered: Rendered, smtp) -> Envelope:
    """Return the envelope of a message only Django's MIME classes write."""
    message = build_message(delivery, rendered, smtp)
    encoding = message.encoding or settings.DEFAULT_CHARSET
    return Envelope(sanitize_address(message.from_email, encoding),
                    [sanitize_address(address, encoding) for address in message.recipients()],
                    message.message().as_bytes(linesep="\r\n"))


class _SentRecorder:
    """Record sent emails a few at a time: one commit for every RECORD_EVERY emails.

    Together with the at most IN_FLIGHT messages handed to the relay, at most
    UNKNOWN_AT_MOST emails of a batch can have reached the server without being recorded
    sent: the first UNKNOWN_AT_MOST of a cut-off batch's unfinished emails
    (``expire_sending``).
    """

    def __init__(self):
        self.pending: list[tuple[Delivery, dict, str]] = []

    def add(self, delivery: Delivery, rendered: Rendered, *, esp_id: str | None = None) -> None:
        summary = rendered.summary(message_id(delivery.pk))
        if esp_id is not None:
            summary["esp_message_id"] = esp_id
        payload = {**delivery.payload, "rendered": summary, "links": rendered.links}
        self.pending.append((delivery, payload, address_of(rendered.to)[:500]))
        if len(self.pending) >= RECORD_EVERY:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        payload_field = Delivery._meta.get_field("payload")
        forgotten = payload_field.get_db_prep_save({}, connection)
        sent_at = connection.ops.adapt_datetimefield_value(timezone.now())
        rows = [(delivery.cio_id or "", payload_field.get_db_prep_save(payload, connection),
                 forgotten, delivery.cio_id or "", recipient, sent_at, delivery.pk)
                for delivery, payload, recipient in self.pending]
        with transaction.atomic():
            # "unknown" too: a batch slower than its lease records what it knows was sent.
            # A person suppressed meanwhile (``people.forget_people``) lost the delivery's
            # cio_id: then only the count stays. One statement sent many times (a single
            # round trip with psycopg's pipeline); each row is locked by its own update.
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"UPDATE {Delivery._meta.db_table} SET state = 'sent', reason = '', "
                    "payload = CASE WHEN COALESCE(cio_id, '') = %s THEN %s ELSE %s END, "
                    "recipient = CASE WHEN COALESCE(cio_id, '') = %s THEN %s ELSE '' END, "
                    "sent_at = %s, next_attempt_at = NULL "
                    "WHERE id = %s AND state IN ('sending', 'unknown')", rows)
            tracking.announce_engagements(delivery for delivery, _, _ in self.pending)
        self.pending = []


def _give_back(deliveries: list[Delivery]) -> None:
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries],
                            state=Delivery.State.SENDING).update(
        state=Delivery.State.QUEUED, next_attempt_at=timezone.now(),
        reason="queued again: its batch took too long to send")


def _failed(delivery: Delivery, error: Exception, *, temporary: bool = False) -> None:
    """Queue the delivery again after a temporary failure, or fail it for good."""
    found_temporary, reason = classify(error)
    temporary = temporary or found_temporary
    attempts = delivery.attempts  # read after the claim, which counted this attempt
    if temporary and attempts < MAX_ATTEMPTS:
        delay = RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]
        Delivery.objects.filter(pk=delivery.pk, state=Delivery.State.SENDING).update(
            state=Delivery.State.QUEUED, reason=f"will retry: {reason}"[:2000],
            next_attempt_at=timezone.now() + delay)
    else:
        if temporary:
            reason = f"gave up after {attempts} attempts: {reason}"
        _finish(delivery, Delivery.State.FAILED, reason)


def classify(error: Exception) -> tuple[bool, str]:
    """Return (temporary, reason) for a sending error: 4xx replies and lost connections
    are temporary, 5xx replies and refused recipients final."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [(code, _text(text)) for code, text in error.recipients.values()]
        code, text = codes[0] if codes else (550, "recipient refused")
        return all(400 <= each < 500 for each, _ in codes), f"{code} {text}"
    if isinstance(error, smtplib.SMTPResponseException):
        code = error.smtp_code
        return not (500 <= code < 600), f"{code} {_text(error.smtp_error)}"
    status = getattr(error, "status_code", None)  # django-anymail's ESP API errors
    if status is not None:
        return status in (408, 429) or status >= 500, f"{type(error).__name__} {status}: {error}"
    if type(error).__name__ == "AnymailRecipientsRefused":
        return False, str(error)
    if isinstance(error, ValueError):  # a message that cannot be built (a bad header)
        return False, f"{type(error).__name__}: {error}"
    return True, f"{type(error).__name__}: {error}"


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
