"""Webhook steps ("send and receive data"): the sender of webhook deliveries.

A journey at a webhook step waits while its delivery (the outbox row) is sent:
``send_due_webhooks`` claims due deliveries (``FOR UPDATE SKIP LOCKED``) and marks them
``sending`` in one commit, renders the request with Liquid, calls it, and in one more
commit marks the delivery sent, queued again for a retry, or failed; on an answer it
maps the response into the person's attributes (through the people services) and wakes
the journey in that same commit, so the engine moves it on.

Calls go through requests-hardened: the host is resolved once, refused when the
address is private, loopback or link-local (unless the operator allows private
addresses, or that host by name), and connected to at the address checked. Redirects
are followed here, a few hops at most, each hop checked the same way. The response is
read streaming and cut at ``MAX_RESPONSE_BYTES``.

Every attempt carries the same ``Idempotency-Key``: a delivery cut off while
``sending`` (a dead worker; its lease lapsed) is retried, and a receiver that honours
the key applies it once.
"""

import copy
import json
import logging
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from requests_hardened import Config, HTTPSession
from requests_hardened.ip_filter import InvalidIPAddress

from campaigns import liquid
from campaigns.models import Delivery, Journey, load_campaigns
from campaigns.workflow import Workflow
from engage.models import Workspace
from engage.sql import update_rows
from people import services as people
from people.models import Person
from segments.conditions import parse_path

log = logging.getLogger(__name__)

BATCH_SIZE = 50
# A delivery ``sending`` for longer was cut off by a dead worker: it is sent again.
LEASE = timedelta(minutes=10)
MAX_RESPONSE_BYTES = 1024 * 1024  # read at most this much of an answer
DISPLAY_BYTES = 64 * 1024  # of which this much is kept for display (payload["response"])
MAX_REDIRECTS = 3
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
RETRY_AFTER_CAP = timedelta(hours=1)
USER_AGENT = "engage-webhooks/1"
_KEY_NAMESPACE = uuid.UUID("7f1d6c1e-4f7a-4a43-9a59-2f6a0f0b8e11")


# --- what is sent and what came back ---------------------------------------------------


@dataclass
class Call:
    """A rendered webhook request of one delivery."""

    delivery_id: int
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None


@dataclass
class Answer:
    """What one attempt got: a response, or an error (``retry``: worth another attempt)."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncated: bool = False
    error: str = ""
    retry: bool = False
    url: str = ""  # the URL that answered (after redirects)
    skip: bool = False  # not sent, and not to be: the delivery is skipped

    @property
    def ok(self) -> bool:
        return not self.error and self.status is not None and 200 <= self.status < 300

    @property
    def temporary(self) -> bool:
        """Tell whether a later attempt may succeed: 408, 429, 5xx, network trouble."""
        if self.error:
            return self.retry
        return self.status in (408, 429) or (self.status or 0) >= 500

    @property
    def problem(self) -> str:
        if self.error:
            return self.error
        if self.status is not None and 300 <= self.status < 400:
            return f"HTTP {self.status}: redirect not followed (more than {MAX_REDIRECTS})"
        return f"HTTP {self.status}"

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """Return the body as JSON, or None when it is not JSON (or was cut)."""
        if self.truncated or not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None


_FIND = object()  # look the delivery's person up


@dataclass
class Outcome:
    """An attempt of one delivery: the call made (None: none could be) and its answer."""

    delivery: Delivery
    call: Call | None
    answer: Answer
    person: Person | None = None


class Unsendable(Exception):
    """A delivery that can never be sent as it stands (a template error, no step), or
    that is no longer wanted (``skip``: its journey ended)."""

    def __init__(self, reason: str, *, skip: bool = False):
        super().__init__(reason)
        self.skip = skip


def idempotency_key(delivery: Delivery) -> str:
    """Return the delivery's Idempotency-Key: the same on every attempt."""
    return str(uuid.uuid5(_KEY_NAMESPACE, f"{delivery.pk}:{delivery.created_at.isoformat()}"))


# --- the sender ------------------------------------------------------------------------


def send_due_webhooks(*, now: datetime | None = None, limit: int = BATCH_SIZE) -> int:
    """Send a batch of due webhook deliveries; return how many were claimed.

    Calls of one batch run side by side (``ENGAGE_WEBHOOK_CONCURRENCY`` threads that only
    speak HTTP); claiming, rendering and recording stay on the calling thread, and the
    batch's outcomes are recorded in one commit.
    """
    clock = (lambda: now) if now is not None else timezone.now
    claimed = claim_due(now=clock(), limit=limit)
    if not claimed:
        return 0
    people_of = people_by_delivery(claimed)
    outcomes: list[Outcome] = []
    calls: list[tuple[Delivery, Call]] = []
    for delivery in claimed:
        person = people_of.get(delivery.pk)
        try:
            calls.append((delivery, prepare(delivery, now=clock(), person=person)))
        except Unsendable as error:
            outcomes.append(Outcome(delivery, None, Answer(error=str(error), skip=error.skip),
                                    person))
        except Exception:  # a bug in one delivery: it is tried again when its lease lapses
            log.exception("webhook delivery %s could not be prepared", delivery.pk)
    workers = max(1, min(settings.ENGAGE_WEBHOOK_CONCURRENCY, len(calls)))
    if workers == 1:
        answers = [_send_safely(call) for _, call in calls]
    else:
        answers = list(_executor().map(_send_safely, [call for _, call in calls]))
    outcomes += [Outcome(delivery, call, answer, people_of.get(delivery.pk))
                 for (delivery, call), answer in zip(calls, answers, strict=True)]
    try:
        record_outcomes(outcomes, now=clock())
    except Exception:  # the deliveries stay ``sending``; their lapsed lease retries them
        log.exception("recording the outcomes of webhook deliveries failed")
    return len(claimed)


def people_by_delivery(deliveries: list[Delivery]) -> dict[int, Person]:
    """Return the person each delivery is for (by its cio_id), in one query."""
    wanted = {(delivery.workspace_id, delivery.cio_id) for delivery in deliveries
              if delivery.cio_id}
    if not wanted:
        return {}
    found = {(person.workspace_id, person.cio_id): person for person in Person.objects.filter(
        workspace_id__in={key[0] for key in wanted}, cio_id__in={key[1] for key in wanted})}
    return {delivery.pk: found[key] for delivery in deliveries
            if (key := (delivery.workspace_id, delivery.cio_id)) in found}


def claim_due(*, now: datetime, limit: int = BATCH_SIZE) -> list[Delivery]:
    """Mark due queued webhook deliveries ``sending`` (one more attempt) and return them.

    A delivery left ``sending`` past its lease (its worker died) is due again first.
    """
    webhooks = Delivery.objects.filter(kind=Delivery.Kind.WEBHOOK, next_attempt_at__lte=now)
    lapsed = webhooks.filter(state=Delivery.State.SENDING)
    queued = webhooks.filter(state=Delivery.State.QUEUED)
    any_lapsed = lapsed.exists()
    if not (any_lapsed or queued.exists()):
        return []  # a read, not a write transaction: cheap to ask every half second
    with transaction.atomic():
        if any_lapsed:  # the updates below say again which are lapsed, under lock
            spent = lapsed.filter(attempts__gte=settings.ENGAGE_WEBHOOK_MAX_ATTEMPTS)
            journeys = list(spent.exclude(journey=None).values_list("journey_id", flat=True))
            spent.update(state=Delivery.State.FAILED, next_attempt_at=None,
                         reason="the worker sending it stopped, and no attempts are left")
            Journey.objects.filter(pk__in=journeys, state=Journey.State.ACTIVE).update(
                next_run_at=now)
            lapsed.update(state=Delivery.State.QUEUED, next_attempt_at=now,
                          reason="the worker sending it stopped; sent again with the same "
                                 "Idempotency-Key")
        claimed = list(queued.order_by("next_attempt_at", "pk").select_related("journey")
                       .select_for_update(skip_locked=True, of=("self",))[:limit])
        share_related(claimed)
        Delivery.objects.filter(pk__in=[delivery.pk for delivery in claimed]).update(
            state=Delivery.State.SENDING, attempts=F("attempts") + 1,
            next_attempt_at=now + LEASE)
    for delivery in claimed:  # as the update left them
        delivery.state, delivery.next_attempt_at = Delivery.State.SENDING, now + LEASE
        delivery.attempts += 1
    return claimed


def share_related(deliveries: list[Delivery]) -> None:
    """Give the deliveries their campaigns and workspaces, each read once for the batch
    and shared (a join would build, and parse the definition of, one per delivery)."""
    campaigns = load_campaigns(d.campaign_id for d in deliveries if d.campaign_id)
    workspaces = {c.workspace_id: c.workspace for c in campaigns.values()}
    missing = {d.workspace_id for d in deliveries} - workspaces.keys()  # campaignless ones
    workspaces.update(Workspace.objects.in_bulk(missing) if missing else {})
    for delivery in deliveries:
        Delivery.workspace.field.set_cached_value(delivery, workspaces[delivery.workspace_id])
        if delivery.campaign_id is not None:
            Delivery.campaign.field.set_cached_value(delivery, campaigns[delivery.campaign_id])


def prepare(delivery: Delivery, *, now: datetime, person: Person | None | object = _FIND
            ) -> Call:
    """Render the delivery's request: the step's (or the edited message's) method, URL,
    headers and body, with Liquid; raise Unsendable saying where a template failed."""
    if person is _FIND:
        person = people_by_delivery([delivery]).get(delivery.pk)
    journey = delivery.journey
    if journey is not None and journey.state != Journey.State.ACTIVE:
        raise Unsendable(f"the journey ended ({journey.exit_reason or journey.state}) before "
                         "the webhook was sent", skip=True)
    workflow = step = None
    if delivery.campaign is not None:
        workflow = Workflow(delivery.campaign.definition["workflow"]["steps"])
        step = workflow.get(delivery.step_id)
    message = delivery.payload.get("message") or step
    if message is None:
        raise Unsendable("the webhook step is no longer in the campaign")
    context = liquid_context(delivery, workflow, now, person)
    return render_call(message, context, delivery_id=delivery.pk,
                       key=idempotency_key(delivery))


def render_call(message: dict, context: dict, *, delivery_id: int, key: str) -> Call:
    """Render a webhook step's method, URL, headers and body with Liquid, for a delivery
    or an editor's test request; raise Unsendable saying where a template failed."""

    def render(value, place):
        try:
            return liquid.render_value(value, context)
        except liquid.TemplateError as error:
            raise Unsendable(f"{place}: {error}") from None

    url = render(message.get("url") or "", "url").strip()
    headers = {name: render(value, f"headers.{name}").strip()
               for name, value in (message.get("headers") or {}).items()}
    body = message.get("body")
    data = None
    if isinstance(body, str):
        data = render(body, "body").encode()
    elif body is not None:
        data = json.dumps(render(body, "body")).encode()
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    if not any(name.lower() == "idempotency-key" for name in headers):
        headers["Idempotency-Key"] = key
    return Call(delivery_id, (message.get("method") or "POST").upper(), url, headers, data)


def liquid_context(delivery: Delivery, workflow: Workflow | None, now: datetime,
                   person: Person | None) -> dict:
    """Return what the delivery's templates see: the journey's context, as its steps do,
    for the person the delivery is for."""
    from campaigns import engine

    journey = delivery.journey
    if journey is not None and workflow is not None:
        journey.person, journey.campaign = person, delivery.campaign
        return engine.Run(journey, workflow, now).liquid_context()
    customer = {}
    if person is not None:
        customer = {**person.attributes, "id": person.customer_id, "email": person.email,
                    "cio_id": person.cio_id}
    campaign = delivery.campaign
    return {"customer": customer, "event": {}, "trigger": delivery.payload.get("trigger") or {},
            "webhook": {},
            "campaign": {"id": campaign.pk, "name": campaign.name} if campaign else {}}


# --- HTTP ------------------------------------------------------------------------------


_local = threading.local()
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """The worker process's pool of HTTP threads (kept, so connections are reused)."""
    size = settings.ENGAGE_WEBHOOK_CONCURRENCY
    with _pools_lock:
        if size not in _pools:
            _pools[size] = ThreadPoolExecutor(size, thread_name_prefix="webhook")
        return _pools[size]


def private_allowed(host: str) -> bool:
    """Tell whether the operator lets webhooks reach ``host`` at a private address."""
    allowed = {name.lower().strip("[]") for name in settings.ENGAGE_WEBHOOK_ALLOWED_HOSTS}
    return settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE or host.lower().strip("[]") in allowed


def _session(private: bool) -> requests.Session:
    """This thread's session: the address-checking one, or the one for allowed hosts."""
    name = "open" if private else "hardened"
    session = getattr(_local, name, None)
    if session is None:
        session = HTTPSession(Config(
            ip_filter_enable=not private, ip_filter_allow_loopback_ips=False,
            never_redirect=True, default_timeout=None, user_agent_override=USER_AGENT))
        session.trust_env = False  # no proxy from the environment goes around the check
        setattr(_local, name, session)
    return session


def close_sessions() -> None:
    """Close this thread's sessions and their kept-alive connections."""
    for name in ("open", "hardened"):
        session = getattr(_local, name, None)
        if session is not None:
            session.close()
            delattr(_local, name)


def send(call: Call) -> Answer:
    """Make the call, following a few redirects (each hop checked); never raise."""
    method, url, headers, body = call.method, call.url, dict(call.headers), call.body
    timeout = (settings.ENGAGE_WEBHOOK_CONNECT_TIMEOUT, settings.ENGAGE_WEBHOOK_READ_TIMEOUT)
    for _hop in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return Answer(error=f"not an http(s) URL: {url[:200]}", url=url)
        try:
            response = _session(private_allowed(parts.hostname)).request(
                method, url, headers=headers, data=body, timeout=timeout, stream=True,
                allow_redirects=False)
        except InvalidIPAddress as error:
            return Answer(error=f"refused: {parts.hostname} is at the private address {error}",
                          url=url)
        except requests.ConnectTimeout:
            return Answer(error=f"timed out connecting to {parts.hostname}", retry=True, url=url)
        except requests.Timeout:
            return Answer(error=f"timed out waiting for {parts.hostname} to answer", retry=True,
                          url=url)
        except requests.ConnectionError as error:
            return Answer(error=f"could not connect to {parts.hostname}: {_short(error)}",
                          retry=True, url=url)
        except requests.RequestException as error:
            return Answer(error=f"invalid request: {_short(error)}", url=url)
        with response:
            location = response.headers.get("Location")
            if response.is_redirect and location and _hop < MAX_REDIRECTS:
                target = urljoin(url, location)
                if urlsplit(target).hostname != parts.hostname:
                    headers = {name: value for name, value in headers.items()
                               if name.lower() not in ("authorization", "cookie")}
                if response.status_code == 303 or (response.status_code in (301, 302)
                                                   and method == "POST"):
                    method, body = "GET", None
                    headers = {name: value for name, value in headers.items()
                               if name.lower() != "content-type"}
                url = target
                continue
            return _read(response, url, deadline=time.monotonic() + 2 * timeout[1])
    raise AssertionError("unreachable")


def _send_safely(call: Call) -> Answer:
    try:
        return send(call)
    except Exception as error:  # a bug, not the receiver's doing: tried again later
        log.exception("webhook delivery %s: the call failed unexpectedly", call.delivery_id)
        return Answer(error=f"unexpected error: {_short(error)}", retry=True, url=call.url)


def _read(response: requests.Response, url: str, *, deadline: float) -> Answer:
    """Read the response streaming, at most MAX_RESPONSE_BYTES, within the deadline."""
    chunks, size, truncated = [], 0, False
    try:
        for chunk in response.iter_content(64 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                truncated = True
                break
            if time.monotonic() > deadline:
                return Answer(error="timed out reading the response", retry=True, url=url)
    except requests.RequestException as error:
        return Answer(error=f"reading the response failed: {_short(error)}", retry=True,
                      url=url)
    body = b"".join(chunks)[:MAX_RESPONSE_BYTES]
    return Answer(status=response.status_code, headers=dict(response.headers), body=body,
                  truncated=truncated, url=url)


def _short(error: Exception) -> str:
    return str(error)[:300]


# --- recording the outcome -------------------------------------------------------------


def retry_delay(attempts: int, answer: Answer, now: datetime) -> timedelta:
    """Return how long to wait before the next attempt: the answer's Retry-After (capped),
    else exponential backoff with jitter."""
    retry_after = parse_retry_after(next((value for name, value in answer.headers.items()
                                          if name.lower() == "retry-after"), None), now)
    if retry_after is not None:
        return min(retry_after, RETRY_AFTER_CAP)
    delay = min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_CAP)
    return delay * random.uniform(0.5, 1.0)


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """Read a Retry-After header: seconds, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(moment - now, timedelta(0))


def record_outcomes(outcomes: list[Outcome], *, now: datetime) -> dict[int, str]:
    """Record a batch's outcomes in one commit; return each delivery's new state.

    Sent: the response is mapped into the person's attributes and kept, and the journey
    learns it and is woken. A temporary failure queues the delivery again (until the
    attempts run out); any other failure fails it and wakes the journey. A delivery taken
    over meanwhile (another worker, after its lease lapsed) is left to that worker.
    """
    if not outcomes:
        return {}
    ids = [outcome.delivery.pk for outcome in outcomes]
    ours = set(Delivery.objects.filter(pk__in=ids, state=Delivery.State.SENDING)
               .values_list("pk", "attempts"))
    outcomes = [outcome for outcome in outcomes
                if (outcome.delivery.pk, outcome.delivery.attempts) in ours]
    states: dict[int, str] = {}
    with transaction.atomic():
        # Locks in the order a deletion takes them: people, journeys, deliveries.
        mapped = map_responses([outcome for outcome in outcomes
                                if _next_state(outcome) == Delivery.State.SENT])
        journeys = {journey.pk: journey for journey in Journey.objects.select_for_update()
                    .filter(pk__in={outcome.delivery.journey_id for outcome in outcomes})}
        current = {delivery.pk: delivery for delivery in Delivery.objects.select_for_update()
                   .filter(pk__in=[outcome.delivery.pk for outcome in outcomes],
                           state=Delivery.State.SENDING)}
        changed_deliveries, changed_journeys = [], {}
        for outcome in outcomes:
            delivery = current.get(outcome.delivery.pk)
            if delivery is None or delivery.attempts != outcome.delivery.attempts:
                continue
            state = _next_state(outcome)
            _apply(delivery, outcome, state, mapped.get(delivery.pk, ({}, "")), now)
            changed_deliveries.append(delivery)
            states[delivery.pk] = state
            journey = journeys.get(delivery.journey_id)
            if state != Delivery.State.QUEUED and _tell_journey(journey, delivery,
                                                                outcome.answer, now):
                changed_journeys[journey.pk] = journey
        names = ["payload", "state", "next_attempt_at", "reason", "sent_at"]
        update_rows(Delivery, names, [(delivery.pk, *(getattr(delivery, name) for name in names))
                                      for delivery in changed_deliveries])
        update_rows(Journey, ["context", "next_run_at"],
                    [(journey.pk, journey.context, journey.next_run_at)
                     for journey in changed_journeys.values()])
    return states


def _next_state(outcome: Outcome) -> str:
    answer = outcome.answer
    if answer.skip:
        return Delivery.State.SKIPPED
    if answer.ok:
        return Delivery.State.SENT
    if (answer.temporary and outcome.call is not None
            and outcome.delivery.attempts < settings.ENGAGE_WEBHOOK_MAX_ATTEMPTS):
        return Delivery.State.QUEUED
    return Delivery.State.FAILED


def _apply(delivery: Delivery, outcome: Outcome, state: str, mapped: tuple[dict, str],
           now: datetime) -> None:
    """Set the delivery's new state, reason and payload (not saved)."""
    answer = outcome.answer
    forgotten = outcome.delivery.cio_id is not None and delivery.cio_id is None  # suppressed
    payload = dict(delivery.payload)
    if not forgotten:
        payload.update(_shown(outcome.call, answer))
    if mapped[0]:
        payload["mapped"] = mapped[0]
    delivery.payload, delivery.state = payload, state
    if state == Delivery.State.QUEUED:
        delivery.next_attempt_at = now + retry_delay(delivery.attempts, answer, now)
        delivery.reason = f"attempt {delivery.attempts}: {answer.problem}; will retry"
    elif state in (Delivery.State.FAILED, Delivery.State.SKIPPED):
        delivery.next_attempt_at = None
        delivery.reason = answer.problem
        if answer.temporary and outcome.call is not None:
            delivery.reason += f" (gave up after {delivery.attempts} attempts)"
    else:
        delivery.next_attempt_at, delivery.sent_at = None, now
        delivery.reason = mapped[1]


def _shown(call: Call | None, answer: Answer) -> dict:
    """Return what the delivery keeps of the request and the answer, for display."""
    if call is None:
        return {}
    shown = {"rendered": {"method": call.method, "url": call.url, "status": answer.status}}
    if answer.status is not None:
        shown["response"] = {"status": answer.status, "headers": answer.headers,
                             "body": answer.body[:DISPLAY_BYTES].decode("utf-8", "replace"),
                             "truncated": answer.truncated or len(answer.body) > DISPLAY_BYTES}
    return shown


def _tell_journey(journey: Journey | None, delivery: Delivery, answer: Answer,
                  now: datetime) -> bool:
    """Keep the answer in the journey's context (``{{webhook.<step id>.*}}``) and wake the
    journey if it waits for this delivery (not saved); tell whether it changed."""
    if journey is None or journey.state != Journey.State.ACTIVE:
        return False
    body = answer.json()
    if body is None and answer.body and len(answer.body) <= DISPLAY_BYTES:
        body = answer.text()
    webhooks = {**(journey.context.get("webhooks") or {}),
                delivery.step_id: {"status": answer.status, "ok": answer.ok, "body": body,
                                   "headers": answer.headers}}
    journey.context = {**journey.context, "webhooks": webhooks}
    if journey.step_data.get("delivery") == delivery.pk:
        journey.next_run_at = now
    return True


def map_responses(outcomes: list[Outcome]) -> dict[int, tuple[dict, str]]:
    """Set the mapped response fields of a batch of sent deliveries on their people; return,
    per delivery, what was set and any problem.

    Each delivery's values are worked out first; those that change someone are written
    with one ``update_people`` call per workspace (a suppressed or deleted person is left
    alone; an invalid value is refused for its delivery only). Should that call fail, the
    workspace's deliveries are mapped one by one, each in a savepoint of its own: one
    person's trouble never undoes the batch.
    """
    mapped: dict[int, tuple[dict, str]] = {}
    pending: dict[int, list[tuple[Delivery, Person, dict]]] = {}
    attributes: dict[int, dict] = {}  # each person's attributes as the batch leaves them
    for outcome in outcomes:
        delivery, person = outcome.delivery, outcome.person
        current = attributes.get(person.pk, person.attributes) if person is not None else {}
        values, reason, write = response_values(delivery, outcome.answer, person, current)
        mapped[delivery.pk] = (values, reason)
        if write:
            attributes[person.pk] = {**current, **values}
            pending.setdefault(delivery.workspace_id, []).append((delivery, person, values))
    for workspace_id in sorted(pending):  # people of one workspace locked at once, in order
        writes = pending[workspace_id]
        try:
            with transaction.atomic():
                results = people.update_people(writes[0][0].workspace,
                                                [(person.pk, values)
                                                 for _, person, values in writes])
        except Exception:
            log.exception("mapping the responses of %s webhook deliveries at once failed; "
                          "mapping them one by one", len(writes))
            for delivery, _, values in writes:
                mapped[delivery.pk] = _identify(delivery, values)
            continue
        for (delivery, _, values), result in zip(writes, results, strict=True):
            mapped[delivery.pk] = _mapped(values, result)
    return mapped


def response_values(delivery: Delivery, answer: Answer, person: Person | None,
                    current: dict | None = None) -> tuple[dict, str, bool]:
    """Return the attribute values the step maps out of the answer, any problem, and
    whether they must be written (they change the person's ``current`` attributes)."""
    step = None
    if delivery.campaign is not None:
        step = Workflow(delivery.campaign.definition["workflow"]["steps"]).get(delivery.step_id)
    mapping = (step or {}).get("response") or []
    if not mapping or not delivery.cio_id:
        return {}, "", False
    data = answer.json()
    if data is None:
        return {}, "the response is not JSON: nothing was mapped", False
    if person is None:
        return {}, "mapping the response: the person is gone", False
    current = person.attributes if current is None else current
    values: dict[str, Any] = {}
    for item in mapping:
        found = extract(data, item["path"])
        if found is not _MISSING:
            _put(values, current, item["attribute"], found)
    # Nothing changes: no need to lock and rewrite the person.
    unchanged = all(current.get(key) == value for key, value in values.items())
    return values, "", bool(values) and not unchanged


def _identify(delivery: Delivery, values: dict) -> tuple[dict, str]:
    """Write one delivery's values through ``identify_person``, in a savepoint."""
    try:
        with transaction.atomic():
            result = people.identify_person(
                delivery.workspace, people.Ref("cio_id", delivery.cio_id), values)
    except people.InvalidInput as error:
        return {}, f"mapping the response failed: {error}"
    except Exception as error:  # one person's trouble must not undo the batch
        log.exception("webhook delivery %s: mapping the response failed", delivery.pk)
        return {}, f"mapping the response failed: {error}"
    return _mapped(values, result)


def _mapped(values: dict, result: people.Result | people.InvalidInput) -> tuple[dict, str]:
    """Return what was set and any problem, from the people service's answer."""
    if isinstance(result, people.InvalidInput):
        return {}, f"mapping the response failed: {result}"
    if result.outcome in (people.Outcome.NOT_FOUND, people.Outcome.SUPPRESSED):
        return {}, f"mapping the response: {result.outcome}"
    if result.outcome in (people.Outcome.CONFLICT, people.Outcome.STALE):
        return {}, f"mapping the response: {result.outcome} ({result.message})"
    return values, ""


_MISSING = object()


def extract(data: Any, path: str) -> Any:
    """Return the value at a JSON path (``plan``, ``data.plan``, ``items[0]``,
    ``items[].id``: a list), or _MISSING."""
    values, spread = [data], False
    for step in parse_path(path):
        found = []
        for value in values:
            if step.kind == "key" and isinstance(value, dict) and step.value in value:
                found.append(value[step.value])
            elif step.kind == "index" and isinstance(value, list) and step.value < len(value):
                found.append(value[step.value])
            elif step.kind == "any" and isinstance(value, list):
                found.extend(value)
                spread = True
        values = found
    if spread:
        return values
    return values[0] if values and values[0] is not None else _MISSING


def _put(values: dict, current: dict, attribute: str, value: Any) -> None:
    """Set ``value`` at an attribute path of keys (``plan`` or ``billing.plan``), keeping
    what else a nested attribute holds."""
    keys = [step.value for step in parse_path(attribute) if step.kind == "key"]
    if len(keys) > 1 and keys[0] not in values:
        values[keys[0]] = copy.deepcopy(current.get(keys[0])) if isinstance(
            current.get(keys[0]), dict) else {}
    target = values
    for key in keys[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[keys[-1]] = value
