"""The journey engine: entering people into campaigns and carrying them through workflows.

Rules it keeps (``DESIGN.md``, "Journeys"):
- Entering is idempotent: a journey is unique per (campaign, entry key).
- Delays are data: a journey waits with ``next_run_at``; ``advance_due`` claims due
  journeys (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's IMMEDIATE transactions
  serialise writers) and advances them.
- One batch, one transaction: the steps' local effects (attribute updates, segment
  changes, created events, deletions, branch choices), the append-only step log rows
  and the journeys' moves commit together, so a replayed batch finds the journeys moved
  on and repeats nothing. A journey whose step fails unexpectedly is rolled back alone
  (a savepoint) and retried later; the others go on.
- Messages and webhooks become deliveries (an outbox row, unique per journey step);
  sending them is the delivery's business. A journey goes on after an email at once and
  waits for a webhook's answer.
"""

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import connection, transaction
from django.utils import timezone

from campaigns import liquid
from campaigns.definition import DATA_TRIGGERS
from campaigns.models import Campaign, Delivery, Journey, JourneyStep
from campaigns.workflow import Workflow
from engage.sql import insert_rows
from people import services as people
from people.models import Person, Suppression
from segments import conditions
from segments import services as segments
from segments.models import Membership, Segment

log = logging.getLogger(__name__)

BATCH_SIZE = 200
# Steps one journey may take in one go before it yields to others (it continues in the
# next batch): a long chain of actions never monopolises a worker.
MAX_STEPS_AT_ONCE = 50
WAIT_UNTIL_RECHECK = timedelta(minutes=5)
RETRY_AFTER_ERROR = timedelta(minutes=1)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
JOURNEY_FIELDS = ["workspace", "campaign", "person", "cio_id", "entry_key", "state",
                  "exit_reason", "step_id", "step_data", "seq", "next_run_at", "context",
                  "entered_at"]
ENTRY_INDEX = "(campaign_id, entry_key)"


# --- entering --------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """Someone (or some data) entering a campaign once per ``key``."""

    key: str
    person_id: int | None
    cio_id: str | None = None
    context: dict = field(default_factory=dict)


def enter(campaign: Campaign, entries: list[Entry], *, now: datetime | None = None) -> int:
    """Start journeys for ``entries``, each at most once per key; return how many started.

    One statement for the whole list; an entry whose key already has a journey (a
    replayed trigger) is skipped.
    """
    if not entries:
        return 0
    now = now or timezone.now()
    rows = [(campaign.workspace_id, campaign.pk, entry.person_id, entry.cio_id, entry.key,
             Journey.State.ACTIVE, "", "", {}, 0, now, entry.context, now) for entry in entries]
    return len(insert_rows(Journey, JOURNEY_FIELDS, rows, returning=("id",),
                           skip_conflicts_on=ENTRY_INDEX))


# --- moves: what a step tells the engine to do next ------------------------------------


@dataclass
class Next:
    """Done here: record ``outcome`` and go on to what follows the step."""

    outcome: str = "done"
    data: dict = field(default_factory=dict)


@dataclass
class Path:
    """Take the block's path ``key``."""

    key: str
    data: dict = field(default_factory=dict)


@dataclass
class Wait:
    """Stay at this step until ``until`` (None: until something wakes the journey)."""

    until: datetime | None
    outcome: str = "waiting"
    data: dict = field(default_factory=dict)
    keep: dict = field(default_factory=dict)  # what the step remembers while waiting


@dataclass
class End:
    """Leave the campaign here."""

    state: str
    reason: str
    data: dict = field(default_factory=dict)


# --- advancing -------------------------------------------------------------------------


def advance_due(*, now: datetime | None = None, limit: int = BATCH_SIZE) -> int:
    """Advance a batch of due journeys in one transaction; return how many were advanced."""
    now = now or timezone.now()
    if not Journey.objects.filter(state=Journey.State.ACTIVE, next_run_at__lte=now).exists():
        return 0  # a read, not a write transaction: cheap to ask every half second
    with transaction.atomic():
        due = (Journey.objects.filter(state=Journey.State.ACTIVE, next_run_at__lte=now)
               .order_by("next_run_at")
               .select_for_update(skip_locked=True, of=("self",))
               .select_related("campaign", "person"))
        journeys = list(due[:limit])
        workflows: dict[int, Workflow] = {}
        for journey in journeys:
            campaign = journey.campaign
            if campaign.pk not in workflows:
                workflows[campaign.pk] = Workflow(campaign.definition["workflow"]["steps"])
            _advance_one(journey, workflows[campaign.pk], now)
        # A stopping campaign is stopped once its last journey has ended.
        Campaign.objects.filter(
            pk__in={journey.campaign_id for journey in journeys}, state=Campaign.State.STOPPING,
        ).exclude(journeys__state=Journey.State.ACTIVE).update(state=Campaign.State.STOPPED)
    return len(journeys)


def _advance_one(journey: Journey, workflow: Workflow, now: datetime) -> None:
    """Advance one journey as far as it goes now, in a savepoint of the batch."""
    try:
        with transaction.atomic():
            Run(journey, workflow, now).advance()
    except Exception:  # a bug or a fault in one journey must not stop the others
        log.exception("journey %s failed at step %s", journey.pk, journey.step_id)
        failures = journey.step_data.get("failures", 0) + 1
        Journey.objects.filter(pk=journey.pk).update(
            next_run_at=now + RETRY_AFTER_ERROR * min(failures, 60),
            step_data={**journey.step_data, "failures": failures})


class Run:
    """One journey advancing: the steps it takes now, and their log rows."""

    def __init__(self, journey: Journey, workflow: Workflow, now: datetime):
        self.journey = journey
        self.campaign = journey.campaign
        self.workflow = workflow
        self.now = now
        self.log: list[JourneyStep] = []

    @property
    def person(self) -> Person | None:
        return self.journey.person

    def advance(self) -> None:
        journey = self.journey
        if self.campaign.state not in (Campaign.State.RUNNING, Campaign.State.STOPPING):
            return self.end(End(Journey.State.EXITED, f"campaign_{self.campaign.state}"), None)
        if journey.person_id is None and self.campaign.trigger not in ("webhook", "api"):
            return self.end(End(Journey.State.EXITED, "person_deleted"), None)
        if not journey.step_id and journey.seq == 0 and journey.person_id is not None:
            from campaigns.goals import goal_met_on_entry

            if goal_met_on_entry(self.campaign, journey.person_id):
                return self.end(End(Journey.State.EXITED, "goal_met_on_entry"), None)
        for _ in range(MAX_STEPS_AT_ONCE):
            step = (self.workflow.get(journey.step_id) if journey.step_id
                    else self.workflow.first())
            if step is None:
                return self.end(End(Journey.State.FINISHED, "finished"), None)
            # A data campaign's step acts on the person it names (campaigns.triggers).
            move = bind_person(self, step) or STEP_RUNNERS[step["type"]](self, step)
            if isinstance(move, Wait):
                if move.outcome and not journey.step_data.get("waiting"):
                    self.record(step, move.outcome, move.data)
                journey.step_id = step["id"]
                journey.step_data = {**move.keep, "waiting": True}
                journey.next_run_at = move.until
                return self.save()
            if isinstance(move, End):
                return self.end(move, step)
            if isinstance(move, Path):
                self.record(step, f"path:{move.key}", move.data)
                following = self.workflow.on_path(step["id"], move.key)
            else:
                self.record(step, move.outcome, move.data)
                following = self.workflow.after(step["id"])
            journey.step_data = {}
            if following is None:
                return self.end(End(Journey.State.FINISHED, "finished"), None)
            journey.step_id = following["id"]
        journey.next_run_at = self.now  # more to do: in the next batch, after others
        self.save()

    def record(self, step: dict, outcome: str, data: dict | None = None) -> int:
        self.journey.seq += 1
        self.log.append(JourneyStep(journey_id=self.journey.pk, seq=self.journey.seq,
                                    step_id=step["id"], step_type=step["type"],
                                    outcome=outcome[:80], data=data or {}, created_at=self.now))
        return self.journey.seq

    def end(self, move: End, step: dict | None) -> None:
        if step is not None:
            self.record(step, "exited" if move.state == Journey.State.EXITED else "done",
                        {"reason": move.reason, **move.data})
        journey = self.journey
        journey.state, journey.exit_reason = move.state, move.reason
        journey.ended_at, journey.next_run_at, journey.lease_until = self.now, None, None
        journey.step_data = {}
        self.save()

    def save(self) -> None:
        JourneyStep.objects.bulk_create(self.log)
        self.log = []
        Journey.objects.filter(pk=self.journey.pk).update(**{
            name: getattr(self.journey, name) for name in (
                "state", "exit_reason", "step_id", "step_data", "seq", "next_run_at",
                "lease_until", "ended_at")})

    # --- what steps need -----------------------------------------------------------------

    def liquid_context(self) -> dict[str, Any]:
        person = self.person
        customer = {}
        if person is not None:
            customer = {**person.attributes, "id": person.customer_id, "email": person.email,
                        "cio_id": person.cio_id}
        context = self.journey.context
        return {"customer": customer, "event": (context.get("event") or {}).get("data") or {},
                "trigger": context.get("trigger") or {},
                "webhook": context.get("webhooks") or {},  # answers of earlier webhook steps
                "campaign": {"id": self.campaign.pk, "name": self.campaign.name}}

    def matches(self, tree: dict | None) -> bool:
        """Tell whether the journey's person matches a condition tree now."""
        if tree is None:
            return True
        if self.person is None:
            return False
        compiled = conditions.compile_tree(tree, now=self.now, correlated=True,
                                           workspace_id=self.campaign.workspace_id)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM people_person WHERE people_person.id = %s AND "
                           f"({compiled.sql})", [self.person.pk, *compiled.params])
            return cursor.fetchone() is not None

    def still_triggered(self) -> bool:
        """Tell whether the person still matches the campaign's trigger and filters."""
        definition = self.campaign.definition
        trigger = definition["trigger"].get("segments")
        if trigger:
            wanted = {item["id"]: item["in"] for item in trigger["segments"]}
            inside = set(Membership.objects.filter(person_id=self.person.pk,
                                                   segment_id__in=wanted)
                         .values_list("segment_id", flat=True))
            found = [(segment_id in inside) == should for segment_id, should in wanted.items()]
            if not (all(found) if trigger["match"] == "all" else any(found)):
                return False
        return self.matches(definition.get("filters"))

    def before_message(self) -> End | Wait | str | None:
        """Apply the exit rule and the filters before a message: End, Wait (a grace
        period), a reason to skip the message, or None to send it."""
        exit_rule = self.campaign.definition.get("exit")
        if self.person is None:
            return End(Journey.State.EXITED, "person_deleted")
        if exit_rule in ("unmatch", "goal_or_unmatch") and not self.still_triggered():
            return self.grace() or End(Journey.State.EXITED, "unmatched")
        if not self.matches(self.campaign.definition.get("filters")):
            return "the person no longer matches the campaign's filters"
        return None

    def grace(self) -> Wait | None:
        """Wait out the campaign's grace period for someone who stopped matching, as a
        segment-triggered campaign allows; None when there is none or it is over."""
        grace = _duration(self.campaign.definition.get("grace_period") or {})
        if not grace or self.campaign.trigger != Campaign.Trigger.SEGMENTS:
            return None
        until = self.journey.step_data.get("grace_until")
        until_at = datetime.fromisoformat(until) if until else self.now + grace
        if until_at <= self.now:
            return None
        return Wait(min(until_at, self.now + WAIT_UNTIL_RECHECK), outcome="grace",
                    data={"until": _stamp(until_at)}, keep={"grace_until": _stamp(until_at)})

    def person_ref(self) -> people.Ref:
        return people.Ref("cio_id", self.person.cio_id)

    def deliver(self, step: dict, kind: str) -> Delivery:
        """Write the step's delivery (once: unique per journey step) and return it."""
        seq = self.journey.seq + 1  # the log row this step writes next
        state, reason = Delivery.State.QUEUED, ""
        sending = step.get("sending", "automatic")
        if sending == "off":
            state, reason = Delivery.State.SKIPPED, "sending is off for this step"
        elif sending == "draft":
            state = Delivery.State.DRAFTED
        if kind == Delivery.Kind.EMAIL and self.person is not None and self.person.unsubscribed:
            allowed = step.get("send_to_unsubscribed")
            if allowed is None:
                allowed = self.campaign.definition.get("send_to_unsubscribed", False)
            if not allowed:
                state, reason = Delivery.State.SKIPPED, "the person is unsubscribed"
        delivery, _ = Delivery.objects.get_or_create(
            journey=self.journey, journey_seq=seq,
            defaults={"workspace_id": self.campaign.workspace_id, "campaign": self.campaign,
                      "step_id": step["id"], "kind": kind, "state": state, "reason": reason,
                      "cio_id": self.person.cio_id if self.person else None,
                      "recipient": (self.person.email or "") if self.person else "",
                      "next_attempt_at": self.now if state == Delivery.State.QUEUED else None,
                      "created_at": self.now})
        return delivery


# --- the steps -------------------------------------------------------------------------


def bind_person(run: "Run", step: dict) -> "Next | None":
    """Give a data campaign's step the person it names; None when it may go on.

    Only data campaigns (webhook, API) name a person on a step. The identifier is
    rendered with the trigger's data; the person is found, or, for an attribute update,
    created through the people services (a suppressed identifier creates nobody).
    Otherwise the step is skipped or fails, visibly.
    """
    if run.campaign.trigger not in DATA_TRIGGERS:
        return None
    run.journey.person = None  # each step acts on the person it names, or on nobody
    named = step.get("person")
    if not named:
        return None
    ((kind, template),) = named.items()
    try:
        value = liquid.render(template, run.liquid_context()).strip()
    except liquid.TemplateError as error:
        return Next("failed", {"reason": f"person: {error}"})
    if not value:
        return Next("skipped", {"reason": f"the step's {kind} is empty"})
    workspace = run.campaign.workspace
    person = Person.objects.with_identifier(workspace, kind, value).order_by("pk").first()
    if person is None and step["type"] == "update_attributes":
        try:
            person = people.identify_person(workspace, people.Ref(kind, value), {}).person
        except people.InvalidInput as error:
            return Next("failed", {"reason": str(error)})
    if person is None:
        return Next("skipped", {"reason": f"nobody has the {kind} {value}"})
    run.journey.person = person
    return None



def _duration(value: dict) -> timedelta:
    return timedelta(days=value.get("days", 0), hours=value.get("hours", 0),
                     minutes=value.get("minutes", 0), seconds=value.get("seconds", 0))


def _stamp(moment: datetime) -> str:
    return moment.isoformat()


def step_delay(run: Run, step: dict):
    until = run.journey.step_data.get("until")
    if until is None:
        until_at = run.now + _duration(step["duration"])
        return Wait(until_at, data={"until": _stamp(until_at)}, keep={"until": _stamp(until_at)})
    until_at = datetime.fromisoformat(until)
    if until_at > run.now:
        return Wait(until_at, keep={"until": until})
    return Next()


def step_email(run: Run, step: dict):
    check = run.before_message()
    if isinstance(check, End | Wait):
        return check
    delivery = run.deliver(step, Delivery.Kind.EMAIL)
    if check and delivery.state in (Delivery.State.QUEUED, Delivery.State.DRAFTED):
        Delivery.objects.filter(pk=delivery.pk).update(state=Delivery.State.SKIPPED,
                                                       reason=check, next_attempt_at=None)
        delivery.state = Delivery.State.SKIPPED
    return Next(f"delivery:{delivery.state}", {"delivery": delivery.pk})


def step_webhook(run: Run, step: dict):
    waiting_for = run.journey.step_data.get("delivery")
    if waiting_for is not None:
        state = (Delivery.objects.filter(pk=waiting_for).values_list("state", flat=True)
                 .first())
        if state in (Delivery.State.QUEUED, Delivery.State.SENDING, Delivery.State.DRAFTED):
            return Wait(None, outcome="", keep={"delivery": waiting_for})
        return Next(f"delivery:{state}", {"delivery": waiting_for})
    delivery = run.deliver(step, Delivery.Kind.WEBHOOK)
    if delivery.state in (Delivery.State.QUEUED, Delivery.State.DRAFTED):
        # Goes on when the webhook has been answered (its sender wakes the journey).
        return Wait(None, outcome=f"delivery:{delivery.state}", data={"delivery": delivery.pk},
                    keep={"delivery": delivery.pk})
    return Next(f"delivery:{delivery.state}", {"delivery": delivery.pk})


def _zone(run: Run, step: dict) -> ZoneInfo:
    name = step.get("timezone", "UTC")
    if name == "person":
        name = (run.person.attributes.get("timezone") if run.person else None) or ""
        try:
            return ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            name = step.get("fallback_timezone", "UTC")
    return ZoneInfo(name)


def next_window_opening(now: datetime, days: list[str], start: str, end: str,
                        zone: ZoneInfo) -> datetime | None:
    """Return None when ``now`` is inside the window, else the moment it next opens.

    A window whose end is before its start runs overnight into the next day. A local
    time that a DST change skips opens at the first moment after the gap.
    """
    local = now.astimezone(zone)
    opens, closes = (datetime.strptime(value, "%H:%M").time() for value in (start, end))
    for days_back in (1, 0):  # an overnight window opened yesterday may still be open
        day = local.date() - timedelta(days=days_back)
        if WEEKDAYS[day.weekday()] not in days:
            continue
        opening = datetime.combine(day, opens, tzinfo=zone)
        closing = datetime.combine(day + timedelta(days=1) if closes <= opens else day,
                                   closes, tzinfo=zone)
        if opening <= local < closing:
            return None
    for ahead in range(0, 8):
        day = local.date() + timedelta(days=ahead)
        if WEEKDAYS[day.weekday()] not in days:
            continue
        opening = datetime.combine(day, opens, tzinfo=zone)
        # Round-trip through UTC: a skipped local time becomes the moment after the gap.
        opening = opening.astimezone(ZoneInfo("UTC"))
        if opening > now:
            return opening
    return None


def step_time_window(run: Run, step: dict):
    opening = next_window_opening(run.now, step["days"], step["start"], step["end"],
                                  _zone(run, step))
    if opening is None:
        return Next()
    return Wait(opening, data={"until": _stamp(opening)})


def step_branch(run: Run, step: dict):
    return Path("true" if run.matches(step["condition"]) else "false")


def step_wait_until(run: Run, step: dict):
    deadline = run.journey.step_data.get("deadline")
    deadline_at = (datetime.fromisoformat(deadline) if deadline
                   else run.now + _duration(step["max"]))
    if run.matches(step["condition"]):
        return Path("met")
    if deadline_at <= run.now:
        return Path("max_time")
    return Wait(min(deadline_at, run.now + WAIT_UNTIL_RECHECK),
                outcome="waiting", data={"deadline": _stamp(deadline_at)},
                keep={"deadline": _stamp(deadline_at)})


def choose_path(journey_id: int, step_id: str, paths: list[dict]) -> str:
    """Pick a random split's path by weight, the same way every time for a journey."""
    digest = hashlib.sha256(f"{journey_id}:{step_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % sum(path["weight"] for path in paths)
    for path in paths:
        point -= path["weight"]
        if point < 0:
            return path["key"]
    return paths[-1]["key"]


def step_random_split(run: Run, step: dict):
    return Path(choose_path(run.journey.pk, step["id"], step["paths"]))


def step_update_attributes(run: Run, step: dict):
    if run.person is None:
        return Next("skipped", {"reason": "no person"})
    try:
        values = liquid.render_value(step["set"], run.liquid_context())
    except liquid.TemplateError as error:
        return Next("failed", {"reason": str(error)})
    body = {**values, **{name: None for name in step["unset"]}}
    try:
        result = people.identify_person(run.campaign.workspace, run.person_ref(), body)
    except people.InvalidInput as error:
        return Next("failed", {"reason": str(error)})
    run.person.refresh_from_db()
    return Next(f"done:{result.outcome}" if result.outcome != "updated" else "done")


def step_segment_membership(run: Run, step: dict):
    if run.person is None:
        return Next("skipped", {"reason": "no person"})
    segment = Segment.objects.filter(pk=step["segment"], workspace=run.campaign.workspace_id,
                                     kind=Segment.Kind.MANUAL).first()
    if segment is None:
        return Next("skipped", {"reason": f"there is no manual segment {step['segment']}"})
    changed = segments.change_manual(segment, [run.person.pk], add=step["action"] == "add")
    return Next("done" if changed else "unchanged")


def step_create_event(run: Run, step: dict):
    if run.person is None:
        return Next("skipped", {"reason": "no person"})
    try:
        context = run.liquid_context()
        name = liquid.render(step["name"], context)
        data = liquid.render_value(step["data"], context)
        result = people.track_event(run.campaign.workspace, run.person_ref(), name=name,
                                    data=data, timestamp=int(run.now.timestamp()))
    except (liquid.TemplateError, people.InvalidInput) as error:
        return Next("failed", {"reason": str(error)})
    return Next("done" if result.outcome == "created" else f"done:{result.outcome}")


def step_delete_person(run: Run, step: dict):
    if run.person is None:
        return End(Journey.State.EXITED, "person_deleted")
    ref = run.person_ref()
    if step.get("suppress"):
        people.suppress_identifier(run.campaign.workspace, ref,
                                   source=Suppression.Source.CAMPAIGN)
    else:
        people.delete_person(run.campaign.workspace, ref,
                             source=Suppression.Source.CAMPAIGN)
    # The deletion ended this journey already (people_deleting); keep what it forgot.
    run.journey.refresh_from_db(fields=["person", "cio_id", "context"])
    return End(Journey.State.EXITED, "deleted_by_campaign", {"suppressed": bool(step.get(
        "suppress"))})


def step_exit(run: Run, step: dict):
    return End(Journey.State.EXITED, "exit_step")


STEP_RUNNERS = {
    "delay": step_delay,
    "email": step_email,
    "webhook": step_webhook,
    "time_window": step_time_window,
    "branch": step_branch,
    "wait_until": step_wait_until,
    "random_split": step_random_split,
    "update_attributes": step_update_attributes,
    "segment_membership": step_segment_membership,
    "create_event": step_create_event,
    "delete_person": step_delete_person,
    "exit": step_exit,
}
