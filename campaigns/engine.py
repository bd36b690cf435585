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
- Set-based: a batch's journeys take their steps together, group by group (one campaign,
  one step): a branch is one condition query, an attribute update one write through the
  people services, and step rows and moves one statement (``Batch``, ``save_runs``). Other
  steps, data campaigns and a group that fails go journey by journey (``Run``).
- Messages and webhooks become deliveries (an outbox row, unique per journey step);
  sending them is the delivery's business. A journey goes on after an email at once and
  waits for a webhook's answer.
"""

import hashlib
import logging
import operator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import connection, transaction
from django.utils import timezone

from campaigns import liquid
from campaigns.definition import DATA_TRIGGERS
from campaigns.models import (
    Campaign,
    Delivery,
    Journey,
    JourneyStep,
    load_campaigns,
    settle_stopping,
)
from campaigns.workflow import Workflow
from engage.sql import in_ids, insert_rows, json_text, select_models, update_rows
from people import services as people
from people.models import Person, Suppression
from segments import conditions
from segments import services as segments
from segments.models import Membership, Segment

log = logging.getLogger(__name__)

BATCH_SIZE = 500
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
# Due journeys, the longest due first (along ``journey_due_idx``).
CLAIM_WHERE = "state = 'active' AND next_run_at <= %s ORDER BY next_run_at"
assert Journey.State.ACTIVE == "active"
JOURNEY_COLUMNS = ", ".join(Journey._meta.get_field(name).column for name in JOURNEY_FIELDS)


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
    if connection.vendor != "postgresql" and not Journey.objects.filter(
            state=Journey.State.ACTIVE, next_run_at__lte=now).exists():
        # A read, not a write transaction: cheap to ask every half second. (On PostgreSQL
        # a claim that finds nothing writes nothing either.)
        return 0
    with transaction.atomic():
        journeys = select_models(Journey, CLAIM_WHERE, [now],
                                 lock="FOR UPDATE SKIP LOCKED", limit=limit)
        if not journeys:
            return 0
        Batch(journeys, now).advance()
        # A stopping campaign is stopped once its last journey has ended. (Asked of every
        # campaign in the batch: one may have begun stopping since it was read.)
        settle_stopping(journey.campaign_id for journey in journeys)
    return len(journeys)


class Batch:
    """Claimed journeys advancing together, step by step, as sets.

    Each round groups the journeys that go on by (campaign, step); a group at a step with
    a batch runner (``BATCH_RUNNERS``) takes that step together, in a savepoint, with a
    statement or two for all of them (one condition query for a branch, one attribute
    write for an update). Their step log rows and moves are written at the end together
    (``save_runs``). A journey at any other step, a data campaign's journey
    (``bind_person``), and every journey of a group whose batch runner raised go on
    alone afterwards (``Run``, each in a savepoint), from where the batch left them.
    """

    def __init__(self, journeys: list[Journey], now: datetime):
        self.now = now
        # Each campaign is read once, not once per journey; people when a step needs them.
        campaigns = load_campaigns(journey.campaign_id for journey in journeys)
        workflows = {pk: Workflow(campaign.definition["workflow"]["steps"])
                     for pk, campaign in campaigns.items()}
        self.runs: list[Run] = []
        cache_campaign = Journey.campaign.field.set_cached_value  # ``journey.campaign = ``
        for journey in journeys:
            cache_campaign(journey, campaigns[journey.campaign_id])
            self.runs.append(Run(journey, workflows[journey.campaign_id], now))

    def advance(self) -> None:
        together = [run for run in self.runs if run.campaign.trigger not in DATA_TRIGGERS]
        alone: list[tuple[Run, int]] = [(run, MAX_STEPS_AT_ONCE) for run in self.runs
                                        if run.campaign.trigger in DATA_TRIGGERS]
        moving = self.start(together)
        for taken in range(MAX_STEPS_AT_ONCE):
            groups: dict[tuple[int, str], list[Run]] = {}
            for run in moving:
                step = run.current_step()
                if step is None:
                    run.end(End(Journey.State.FINISHED, "finished"), None)
                elif step["type"] in BATCH_RUNNERS:
                    groups.setdefault((run.campaign.pk, step["id"]), []).append(run)
                else:
                    alone.append((run, MAX_STEPS_AT_ONCE - taken))
            moving = []
            for runs in groups.values():
                step = runs[0].current_step()
                if needs_people(step):
                    load_people(runs)
                runner = BATCH_RUNNERS[step["type"]]
                try:
                    # A runner that queries does it in a savepoint: a failed statement
                    # must not spoil the batch's transaction.
                    with nullcontext() if runner in QUERYLESS else transaction.atomic():
                        moves = runner(runs, step)
                except Exception:  # redo the group journey by journey: one fault stays alone
                    log.exception("a batch of %s journeys failed at step %s; going on one "
                                  "by one", len(runs), step["id"])
                    alone += [(run, MAX_STEPS_AT_ONCE - taken) for run in runs]
                    continue
                moving += [run for run, move in zip(runs, moves, strict=True)
                           if run.take(step, move)]
            if not moving:
                break
        for run in moving:
            run.journey.next_run_at = self.now  # more to do: in the next batch, after others
            run.changed = True
        save_runs([run for run in together if run.changed])
        load_people([run for run, _ in alone])
        checked = {id(run) for run in together}
        for run, budget in alone:
            _advance_one(run.journey, run.workflow, self.now, budget=budget,
                         checked=id(run) in checked)

    def start(self, runs: list["Run"]) -> list["Run"]:
        """End the journeys that may not go on (as ``Run.check``); return the others."""
        from campaigns.goals import goals_met_on_entry

        entering: dict[int, list[Run]] = {}
        for run in runs:
            if not run.journey.step_id and run.journey.seq == 0 and run.journey.person_id:
                entering.setdefault(run.campaign.pk, []).append(run)
        met: set[int] = set()  # journeys whose goal is met on entry
        for group in entering.values():
            people_met = goals_met_on_entry(group[0].campaign,
                                            [run.journey.person_id for run in group])
            met |= {run.journey.pk for run in group if run.journey.person_id in people_met}
        moving = []
        for run in runs:
            end = run.check(goal_met=run.journey.pk in met)
            if end is None:
                moving.append(run)
            else:
                run.end(end, None)
        return moving


def load_people(runs: list["Run"]) -> None:
    """Give the runs' journeys their people, with one query for those not loaded yet."""
    wanted = {run.journey.person_id for run in runs if run.journey.person_id is not None
              and not Journey.person.is_cached(run.journey)}
    if not wanted:
        return
    found = Person.objects.in_bulk(wanted)
    for run in runs:
        if run.journey.person_id in found:
            run.journey.person = found[run.journey.person_id]


def save_runs(runs: list["Run"]) -> None:
    """Write the runs' step log rows and their journeys' moves: one statement on
    PostgreSQL (``SAVE_RUNS_SQL``), an insert and an update on SQLite."""
    if not runs:
        return
    steps = [row for run in runs for row in run.log]
    moves = [(run.journey.pk, *_move_of(run.journey)) for run in runs]
    if connection.vendor == "postgresql":
        _save_runs_postgresql(steps, moves)
    else:
        insert_rows(JourneyStep, STEP_FIELDS, steps)
        update_rows(Journey, MOVE_FIELDS, moves)
    for run in runs:
        run.log, run.changed = [], False


STEP_FIELDS = ["journey", "seq", "step_id", "step_type", "outcome", "data", "created_at"]
MOVE_FIELDS = ["state", "exit_reason", "step_id", "step_data", "seq", "next_run_at",
               "lease_until", "ended_at"]
_move_of = operator.attrgetter(*MOVE_FIELDS)

# PostgreSQL takes a batch's step rows and moves in one round trip: one statement, its
# rows in two JSON parameters (encoded at once by the C encoder, read with one cast per
# column). The insert is a data-modifying WITH, which runs whether or not the update
# reads it.
SAVE_RUNS_SQL = (
    "WITH steps AS (INSERT INTO campaigns_journeystep (journey_id, seq, step_id, step_type, "
    "outcome, data, created_at) SELECT (r->>0)::bigint, (r->>1)::integer, r->>2, r->>3, "
    "r->>4, r->5, (r->>6)::timestamptz FROM jsonb_array_elements(%s::jsonb) AS s(r)) "
    "UPDATE campaigns_journey AS j SET state = m.r->>1, exit_reason = m.r->>2, "
    "step_id = m.r->>3, step_data = m.r->4, seq = (m.r->>5)::integer, "
    "next_run_at = (m.r->>6)::timestamptz, lease_until = (m.r->>7)::timestamptz, "
    "ended_at = (m.r->>8)::timestamptz FROM jsonb_array_elements(%s::jsonb) AS m(r) "
    "WHERE j.id = (m.r->>0)::bigint")
assert (JourneyStep._meta.db_table, Journey._meta.db_table) == (
    "campaigns_journeystep", "campaigns_journey")
assert MOVE_FIELDS[5:] == ["next_run_at", "lease_until", "ended_at"]


def _save_runs_postgresql(steps: list[tuple], moves: list[tuple]) -> None:
    """Write step rows (values of STEP_FIELDS) and moves (the journey's id, then values
    of MOVE_FIELDS) in one statement."""
    stamps: dict[datetime, str] = {}

    def stamp(moment: datetime | None) -> str | None:
        if moment is None:
            return None
        found = stamps.get(moment)
        if found is None:
            stamps[moment] = found = moment.isoformat()
        return found

    with connection.cursor() as cursor:
        cursor.execute(SAVE_RUNS_SQL, [
            json_text([(*row[:6], stamp(row[6])) for row in steps]),
            json_text([(*row[:6], stamp(row[6]), stamp(row[7]), stamp(row[8]))
                     for row in moves])])


def _advance_one(journey: Journey, workflow: Workflow, now: datetime, *,
                 budget: int = MAX_STEPS_AT_ONCE, checked: bool = False) -> None:
    """Advance one journey as far as it goes now, in a savepoint of the batch."""
    try:
        with transaction.atomic():
            Run(journey, workflow, now).advance(budget=budget, checked=checked)
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
        self.log: list[tuple] = []  # step log rows to write (values of STEP_FIELDS)
        self.changed = False  # the journey moved (or its log grew) since it was last saved

    @property
    def person(self) -> Person | None:
        return self.journey.person

    def check(self, *, goal_met: bool | None = None) -> End | None:
        """Return how the journey ends before its next step (its campaign is no longer
        running, its person is gone, its goal was met as it entered), or None."""
        journey = self.journey
        if self.campaign.state not in (Campaign.State.RUNNING, Campaign.State.STOPPING):
            return End(Journey.State.EXITED, f"campaign_{self.campaign.state}")
        if journey.person_id is None and self.campaign.trigger not in ("webhook", "api"):
            return End(Journey.State.EXITED, "person_deleted")
        if not journey.step_id and journey.seq == 0 and journey.person_id is not None:
            if goal_met is None:
                from campaigns.goals import goal_met_on_entry

                goal_met = goal_met_on_entry(self.campaign, journey.person_id)
            if goal_met:
                return End(Journey.State.EXITED, "goal_met_on_entry")
        return None

    def current_step(self) -> dict | None:
        """Return the step the journey is at (None: past the end of the workflow)."""
        step_id = self.journey.step_id
        return self.workflow.get(step_id) if step_id else self.workflow.first()

    def advance(self, *, budget: int = MAX_STEPS_AT_ONCE, checked: bool = False) -> None:
        """Take the journey's steps, at most ``budget`` of them, and save where it is.

        ``checked``: ``check`` was done already (by the batch this journey came from).
        """
        end = None if checked else self.check()
        if end is not None:
            self.end(end, None)
            return self.save()
        for _ in range(budget):
            step = self.current_step()
            if step is None:
                self.end(End(Journey.State.FINISHED, "finished"), None)
                return self.save()
            # A data campaign's step acts on the person it names (campaigns.triggers).
            move = bind_person(self, step) or STEP_RUNNERS[step["type"]](self, step)
            if not self.take(step, move):
                return self.save()
        self.journey.next_run_at = self.now  # more to do: in the next batch, after others
        self.save()

    def take(self, step: dict, move: "Next | Path | Wait | End") -> bool:
        """Apply a step's move to the journey (in memory); tell whether it goes on now."""
        journey = self.journey
        self.changed = True
        if isinstance(move, Wait):
            if move.outcome and not journey.step_data.get("waiting"):
                self.record(step, move.outcome, move.data)
            journey.step_id = step["id"]
            journey.step_data = {**move.keep, "waiting": True}
            journey.next_run_at = move.until
            return False
        if isinstance(move, End):
            self.end(move, step)
            return False
        if isinstance(move, Path):
            self.record(step, f"path:{move.key}", move.data)
            following = self.workflow.on_path(step["id"], move.key)
        else:
            self.record(step, move.outcome, move.data)
            following = self.workflow.after(step["id"])
        journey.step_data = {}
        if following is None:
            self.end(End(Journey.State.FINISHED, "finished"), None)
            return False
        journey.step_id = following["id"]
        return True

    def record(self, step: dict, outcome: str, data: dict | None = None) -> int:
        journey = self.journey
        journey.seq += 1
        self.changed = True
        self.log.append((journey.id, journey.seq, step["id"], step["type"], outcome[:80],
                         data or {}, self.now))
        return journey.seq

    def end(self, move: End, step: dict | None) -> None:
        """End the journey (in memory: ``save`` writes it)."""
        if step is not None:
            self.record(step, "exited" if move.state == Journey.State.EXITED else "done",
                        {"reason": move.reason, **move.data})
        journey = self.journey
        journey.state, journey.exit_reason = move.state, move.reason
        journey.ended_at, journey.next_run_at, journey.lease_until = self.now, None, None
        journey.step_data = {}
        self.changed = True

    def save(self) -> None:
        insert_rows(JourneyStep, STEP_FIELDS, self.log)
        self.log = []
        self.changed = False
        Journey.objects.filter(pk=self.journey.pk).update(**{
            name: getattr(self.journey, name) for name in MOVE_FIELDS})

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
        return bool(matching_people(self.campaign.workspace_id, [self.person.pk], tree,
                                    now=self.now))

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


def _skip(delivery: Delivery, reason: str | None) -> None:
    """Skip a delivery just written for a person the campaign's filters no longer match."""
    if reason and delivery.state in (Delivery.State.QUEUED, Delivery.State.DRAFTED):
        Delivery.objects.filter(pk=delivery.pk).update(state=Delivery.State.SKIPPED,
                                                       reason=reason, next_attempt_at=None)
        delivery.state = Delivery.State.SKIPPED


def step_email(run: Run, step: dict):
    check = run.before_message()
    if isinstance(check, End | Wait):
        return check
    delivery = run.deliver(step, Delivery.Kind.EMAIL)
    _skip(delivery, check)
    return Next(f"delivery:{delivery.state}", {"delivery": delivery.pk})


def step_webhook(run: Run, step: dict):
    waiting_for = run.journey.step_data.get("delivery")
    if waiting_for is not None:
        state = (Delivery.objects.filter(pk=waiting_for).values_list("state", flat=True)
                 .first())
        if state in (Delivery.State.QUEUED, Delivery.State.SENDING, Delivery.State.DRAFTED):
            return Wait(None, outcome="", keep={"delivery": waiting_for})
        return Next(f"delivery:{state}", {"delivery": waiting_for})
    # A webhook is a message: the exit rule and the filters apply before it is sent (the
    # seed's deleting webhook must not reach people who came back). A data campaign's
    # step acts on the person it names, if any: without one there is nobody to check.
    check = None
    if run.person is not None or run.campaign.trigger not in DATA_TRIGGERS:
        check = run.before_message()
        if isinstance(check, End | Wait):
            return check
    delivery = run.deliver(step, Delivery.Kind.WEBHOOK)
    _skip(delivery, check)
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


def step_wait_until(run: Run, step: dict, *, met: bool | None = None):
    """Go on when the condition is met (``met``: found already) or the deadline passed."""
    deadline = run.journey.step_data.get("deadline")
    deadline_at = (datetime.fromisoformat(deadline) if deadline
                   else run.now + _duration(step["max"]))
    if run.matches(step["condition"]) if met is None else met:
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


# --- the steps, for many journeys at once ------------------------------------------------
#
# A batch runner takes the runs of one group (journeys of one campaign at one step) and
# returns their moves, in order. It may write (in the batch's savepoint for the group),
# but never moves a journey itself: ``Run.take`` does.


def matching_people(workspace_id: int, person_ids: list[int], tree: dict, *,
                    now: datetime) -> set[int]:
    """Return those of ``person_ids`` whom a condition tree matches now: one statement."""
    if not person_ids:
        return set()
    compiled = conditions.compile_tree(tree, now=now, correlated=True,
                                       workspace_id=workspace_id)
    wanted, params = in_ids("people_person.id", sorted(set(person_ids)))
    with connection.cursor() as cursor:
        cursor.execute("SELECT people_person.id FROM people_person WHERE "
                       f"people_person.workspace_id = %s AND {wanted} AND ({compiled.sql})",
                       [workspace_id, *params, *compiled.params])
        return {row[0] for row in cursor.fetchall()}


def each(runs: list[Run], step: dict) -> list:
    """Run a step that needs no query (a delay, a split, a window, an exit) per journey."""
    runner = STEP_RUNNERS[step["type"]]
    return [runner(run, step) for run in runs]


def batch_delay(runs: list[Run], step: dict) -> list:
    """Start or end a delay for the group: those starting it now share one wait."""
    starting = None
    moves = []
    for run in runs:
        if "until" in run.journey.step_data:
            moves.append(step_delay(run, step))
            continue
        if starting is None:  # the same moment and step for the whole batch
            starting = step_delay(run, step)
        moves.append(starting)
    return moves


def batch_branch(runs: list[Run], step: dict) -> list:
    """Evaluate a branch's condition for the whole group in one statement."""
    run = runs[0]
    matched = matching_people(run.campaign.workspace_id,
                              [run.journey.person_id for run in runs
                               if run.journey.person_id is not None],
                              step["condition"], now=run.now)
    return [Path("true" if run.journey.person_id in matched else "false") for run in runs]


def batch_wait_until(runs: list[Run], step: dict) -> list:
    """Check a wait's condition for the whole group in one statement."""
    run = runs[0]
    matched = matching_people(run.campaign.workspace_id,
                              [run.journey.person_id for run in runs
                               if run.journey.person_id is not None],
                              step["condition"], now=run.now)
    return [step_wait_until(run, step, met=run.journey.person_id in matched) for run in runs]


def batch_update_attributes(runs: list[Run], step: dict) -> list:
    """Render each journey's attributes, then write them all through one people service."""
    moves: list = [None] * len(runs)
    changes: list[tuple[int, int, dict]] = []  # (index of the run, person id, identify body)
    unset = {name: None for name in step["unset"]}
    # Without templates every journey sends the same body: one, read once by the service.
    same = None if _templated(step["set"]) else {**step["set"], **unset}
    for index, run in enumerate(runs):
        if run.journey.person_id is None:
            moves[index] = Next("skipped", {"reason": "no person"})
            continue
        if same is not None:
            changes.append((index, run.journey.person_id, same))
            continue
        try:
            values = liquid.render_value(step["set"], run.liquid_context())
        except liquid.TemplateError as error:
            moves[index] = Next("failed", {"reason": str(error)})
            continue
        changes.append((index, run.journey.person_id, {**values, **unset}))
    if changes:
        results = people.update_people(runs[0].campaign.workspace,
                                       [(person_id, body) for _, person_id, body in changes],
                                       keep_people=False)
        for (index, _, _), result in zip(changes, results, strict=True):
            if isinstance(result, people.InvalidInput):
                moves[index] = Next("failed", {"reason": str(result)})
                continue
            journey = runs[index].journey
            if result.person is not None:
                journey.person = result.person  # what later steps read
            elif Journey.person.is_cached(journey):  # written in SQL: read again if needed
                Journey.person.field.delete_cached_value(journey)
            moves[index] = Next(f"done:{result.outcome}" if result.outcome != "updated"
                                else "done")
    return moves


def needs_people(step: dict) -> bool:
    """Tell whether a batch runner reads the journeys' people (beyond their ids)."""
    if step["type"] == "update_attributes":
        return _templated(step["set"])  # the service reads and locks them itself
    return step["type"] == "time_window"


def _templated(value: Any) -> bool:
    if isinstance(value, str):
        return "{" in value
    if isinstance(value, list):
        return any(_templated(item) for item in value)
    if isinstance(value, dict):
        return any(_templated(item) for item in value.values())
    return False


QUERYLESS = {each, batch_delay}  # batch runners that run no statement: no savepoint needed
BATCH_RUNNERS = {
    "delay": batch_delay,
    "time_window": each,
    "random_split": each,
    "exit": each,
    "branch": batch_branch,
    "wait_until": batch_wait_until,
    "update_attributes": batch_update_attributes,
}
