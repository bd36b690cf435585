"""Test mode: what a campaign's workflow would do for a person, without doing any of it.

A dry run walks the workflow's block tree as the engine does (``campaigns.workflow``),
on a virtual clock: delays and time windows move the clock on; branches and waits
evaluate their condition for the person now (``segments.conditions``, in the database,
read only); attribute updates change an in-memory copy of the person's attributes, which
later conditions and templates see; emails and webhooks are rendered with Liquid and
shown, never sent. The campaign's filters and exit rule are checked on entry and before
every message, as the engine checks them; whatever would stop the person is said, with
the step where it happens. Nothing is written: every statement a dry run makes is a read.

The rendering helpers here (``liquid_context``, ``render_email``, ``render_webhook``)
are pure and are what the campaign pages use to preview a delivery.
"""

import json
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import connection
from django.db.models import Max, Min
from django.utils import timezone

from campaigns import liquid
from campaigns.definition import DATA_TRIGGERS, iter_steps, unconfigured
from campaigns.engine import _duration, choose_path, next_window_opening
from campaigns.goals import goal_met_on_entry
from campaigns.models import Campaign
from campaigns.workflow import Workflow
from people.models import Event, Person
from segments import conditions
from segments.models import Membership, Segment

# A workflow that loops on itself cannot exist (a tree), but a deep one may be long.
MAX_STEPS = 500
EMAIL_FIELDS = ("from", "to", "reply_to", "subject", "body_html", "body_text")
WEBHOOK_FIELDS = ("method", "url", "headers", "body")
# Headers whose values are credentials: shown as HIDDEN on pages and in test mode.
SECRET_HEADER = re.compile(r"auth|token|secret|key|cookie|password|signature", re.IGNORECASE)
HIDDEN = "(hidden)"


# --- rendering, shared with the campaign pages ------------------------------------------


def liquid_context(campaign: Campaign, person: Person | None, *, attributes: dict | None = None,
                   context: dict | None = None) -> dict[str, Any]:
    """Return the Liquid variables of a message to ``person``, as the engine gives them:
    ``customer`` (``attributes`` in place of the stored ones when given), ``event`` and
    ``trigger`` (from a journey's context), ``campaign``."""
    customer = {}
    if person is not None:
        customer = {**(person.attributes if attributes is None else attributes),
                    "id": person.customer_id, "email": person.email, "cio_id": person.cio_id}
    context = context or {}
    return {"customer": customer, "event": (context.get("event") or {}).get("data") or {},
            "trigger": context.get("trigger") or {},
            "campaign": {"id": campaign.pk, "name": campaign.name}}


def _render_fields(message: dict, names: tuple, variables: dict) -> tuple[dict, str | None]:
    """Render each named field (None where it fails); return them and the first error."""
    rendered: dict[str, Any] = {}
    errors = []
    for name in names:
        value = message.get(name)
        rendered[name] = None
        if value is None:
            continue
        try:
            rendered[name] = liquid.render_value(value, variables)
        except liquid.TemplateError as error:
            errors.append(f"{name}: {error}")
    return rendered, (errors[0] if errors else None)


def render_email(message: dict, variables: dict) -> dict:
    """Return an email's from, to, reply-to, subject and bodies rendered, with ``error``
    naming the field whose template fails (the delivery would fail)."""
    rendered, error = _render_fields(message, EMAIL_FIELDS, variables)
    return {**rendered, "error": error}


def render_webhook(message: dict, variables: dict, *, hide_secrets: bool = True) -> dict:
    """Return a webhook's method, URL, headers and body rendered (a JSON body as text),
    with ``error`` naming the field whose template fails. For display: the values of
    headers that carry credentials are hidden unless ``hide_secrets`` is False."""
    rendered, error = _render_fields(message, WEBHOOK_FIELDS, variables)
    if hide_secrets and isinstance(rendered.get("headers"), dict):
        rendered["headers"] = {name: HIDDEN if SECRET_HEADER.search(name) else value
                               for name, value in rendered["headers"].items()}
    body = rendered.get("body")
    if isinstance(body, dict | list):
        rendered["body"] = json.dumps(body, indent=2, ensure_ascii=False)
    return {**rendered, "method": rendered.get("method") or "POST", "error": error}


# --- conditions for a person whose attributes exist only in memory ----------------------


def matches(tree: dict | None, person: Person, attributes: dict, now: datetime) -> bool:
    """Tell whether the condition tree matches the person, with ``attributes`` in place of
    their stored attributes; their events and memberships are read as they are. One read.
    """
    if tree is None:
        return True
    compiled = conditions.compile_tree(tree, now=now, correlated=True,
                                       workspace_id=person.workspace_id)
    columns = []
    for column in (f.column for f in Person._meta.concrete_fields):
        if column == "attributes":
            columns.append(("CAST(%s AS jsonb)" if connection.vendor == "postgresql"
                            else "json(%s)") + " AS attributes")
        else:
            columns.append(f"{connection.ops.quote_name(column)}")
    # The person's row, with the attributes replaced, under the table's own name: the
    # compiled condition reads ``people_person.*`` as it does in the engine.
    sql = (f"SELECT 1 FROM (SELECT {', '.join(columns)} FROM people_person WHERE id = %s) "
           f"people_person WHERE {compiled.sql}")
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(attributes), person.pk, *compiled.params])
        return cursor.fetchone() is not None


# --- the dry run ------------------------------------------------------------------------


@dataclass
class Moment:
    """One thing the workflow would do, at a moment of the virtual clock."""

    at: datetime
    step_id: str
    step_type: str
    name: str
    depth: int
    outcome: str  # what happens, in words
    stops: bool = False  # the journey ends here
    email: dict | None = None  # the rendered email
    webhook: dict | None = None  # the rendered request
    changes: dict | None = None  # attributes set (value) or removed (None)


@dataclass
class DryRun:
    """What the workflow would do for one person from ``started_at``."""

    person: Person
    started_at: datetime
    moments: list[Moment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # said once, before the path
    ended: str = ""  # how the journey ends, in words
    attributes: dict = field(default_factory=dict)  # the in-memory attributes at the end

    @property
    def ends_at(self) -> datetime:
        return self.moments[-1].at if self.moments else self.started_at


class _Walk:
    def __init__(self, campaign: Campaign, person: Person, now: datetime,
                 trigger: dict | None = None):
        self.campaign = campaign
        self.definition = campaign.definition
        self.person = person
        self.clock = now
        self.attributes = json.loads(json.dumps(person.attributes))  # a deep copy
        self.run = DryRun(person=person, started_at=now)
        self.trigger = trigger
        self.context = self._trigger_context()
        self.workflow = Workflow(self.definition["workflow"]["steps"])
        places = list(iter_steps(self.definition["workflow"]["steps"]))
        self.depths = {step["id"]: place.count(".paths[") for place, step in places}
        # What is not configured yet, per step (the deepest step whose place holds it).
        self.unready: dict[str, list[str]] = {}
        for problem in unconfigured(self.definition, workspace=campaign.workspace):
            owners = [step["id"] for place, step in places
                      if problem.place.startswith(f"{place}.") or problem.place == place]
            where = problem.place.rsplit(".", 1)[-1]
            if owners:
                self.unready.setdefault(owners[-1], []).append(f"{where}: {problem.message}")
            else:
                self.run.notes.append(f"Not ready to start: {problem.place}: "
                                      f"{problem.message}.")

    def _trigger_context(self) -> dict:
        """The journey context of an entry now: the trigger data given (a webhook's or a
        broadcast's), or an event trigger's latest such event of the person."""
        if self.trigger is not None:
            return {"trigger": self.trigger}
        name = (self.definition["trigger"].get("event") or {}).get("name")
        if not name:
            return {}
        event = (Event.objects.filter(person=self.person, name=name)
                 .order_by("-timestamp", "-pk").first())
        if event is None:
            self.run.notes.append(f"They have no {name} event: {{{{event.*}}}} is empty.")
            return {"event": {"name": name, "data": {}}}
        self.run.notes.append(f"The event data is their latest {name} event "
                              f"({event.timestamp:%Y-%m-%d %H:%M}).")
        return {"event": {"name": name, "id": event.pk, "data": event.data}}

    def variables(self) -> dict:
        return liquid_context(self.campaign, self.person, attributes=self.attributes,
                              context=self.context)

    def matches(self, tree: dict | None) -> bool:
        # Evaluated for the person as they are now (events and memberships cannot be
        # known ahead), with the attributes the run has set so far.
        return matches(tree, self.person, self.attributes, self.run.started_at)

    def add(self, step: dict, outcome: str, **extra) -> Moment:
        moment = Moment(at=self.clock, step_id=step["id"], step_type=step["type"],
                        name=step.get("name") or step["type"].replace("_", " ").capitalize(),
                        depth=self.depths.get(step["id"], 0), outcome=outcome, **extra)
        self.run.moments.append(moment)
        return moment

    def stop(self, step: dict | None, outcome: str, ended: str) -> None:
        if step is not None:
            self.add(step, outcome, stops=True)
        self.run.ended = ended

    # --- what the engine checks ----------------------------------------------------------

    def still_triggered(self) -> bool:
        trigger = self.definition["trigger"].get("segments")
        if trigger:
            wanted = {item["id"]: item["in"] for item in trigger["segments"]}
            inside = set(Membership.objects.filter(person_id=self.person.pk,
                                                   segment_id__in=wanted)
                         .values_list("segment_id", flat=True))
            found = [(segment_id in inside) == should for segment_id, should in wanted.items()]
            if not (all(found) if trigger.get("match", "all") == "all" else any(found)):
                return False
        return self.matches(self.definition.get("filters"))

    def entry(self) -> bool:
        """Check what the engine checks on entry; tell whether the person would enter."""
        if self.campaign.trigger in DATA_TRIGGERS:
            self.run.notes.append("A data campaign's steps act on the person their data "
                                  "names: shown here acting on this person"
                                  + (", with the trigger data given." if self.trigger
                                     else ", without trigger data."))
        if self.definition["trigger"].get("segments") and not self.still_triggered():
            self.run.notes.append("They do not meet the trigger now; shown as if they "
                                  "entered.")
        if not self.matches(self.definition.get("filters")):
            self.run.ended = ("Would not enter: they do not match the campaign's filters "
                              "(checked on entry).")
            return False
        if goal_met_on_entry(self.campaign, self.person.pk):
            self.run.ended = ("Would exit on entry: they already meet the campaign's goal "
                              "and its exit rule includes the goal.")
            return False
        return True

    def before_message(self, step: dict) -> bool | str:
        """The engine's checks before a message: False when the journey would end here
        (said and recorded), a reason to skip the message, or True to send it."""
        exit_rule = self.definition.get("exit")
        if exit_rule in ("unmatch", "goal_or_unmatch") and not self.still_triggered():
            grace = _duration(self.definition.get("grace_period") or {})
            if grace and self.campaign.trigger == Campaign.Trigger.SEGMENTS:
                self.stop(step, f"They no longer match the trigger or filters: after a grace "
                                f"period of {_words(grace)} they would exit here.",
                          "Exits: no longer matching (exit rule).")
            else:
                self.stop(step, "They no longer match the trigger or filters: they would "
                                "exit here (exit rule).", "Exits: no longer matching.")
            return False
        if not self.matches(self.definition.get("filters")):
            return "the person no longer matches the campaign's filters"
        return True

    # --- the steps -----------------------------------------------------------------------

    def walk(self) -> DryRun:
        if not self.entry():
            return self.run
        step = self.workflow.first()
        for _ in range(MAX_STEPS):
            if step is None or self.run.ended:
                break
            if step["id"] in self.unready:
                self.stop(step, "Not configured yet: " + "; ".join(self.unready[step["id"]]),
                          "Stops at a step that is not configured yet.")
                break
            following = getattr(self, f"step_{step['type']}")(step)
            if self.run.ended:
                break
            step = following
        else:
            self.run.notes.append(f"Stopped after {MAX_STEPS} steps.")
        if not self.run.ended:
            self.run.ended = "Finishes the workflow."
        self.run.attributes = self.attributes
        return self.run

    def after(self, step: dict) -> dict | None:
        return self.workflow.after(step["id"])

    def path(self, step: dict, key: str, outcome: str) -> dict | None:
        self.add(step, outcome)
        return self.workflow.on_path(step["id"], key)

    def step_delay(self, step: dict):
        duration = _duration(step["duration"])
        self.add(step, f"Waits {_words(duration)}.")
        self.clock += duration
        return self.after(step)

    def step_time_window(self, step: dict):
        opening = next_window_opening(self.clock, step["days"], step["start"], step["end"],
                                      self._zone(step))
        if opening is None:
            self.add(step, "Inside the time window: goes on at once.")
        else:
            self.add(step, f"Outside the time window: waits until it opens "
                           f"({opening:%a %Y-%m-%d %H:%M} UTC).")
            self.clock = opening
        return self.after(step)

    def _zone(self, step: dict) -> ZoneInfo:
        name = step.get("timezone") or "UTC"
        if name == "person":
            try:
                return ZoneInfo(str(self.attributes.get("timezone") or ""))
            except (ZoneInfoNotFoundError, ValueError):
                name = step.get("fallback_timezone") or "UTC"
        return ZoneInfo(name)

    def step_branch(self, step: dict):
        key = "true" if self.matches(step["condition"]) else "false"
        return self.path(step, key, f"The condition is {key} for them: takes the {key} path.")

    def step_wait_until(self, step: dict):
        if self.matches(step["condition"]):
            return self.path(step, "met", "The condition is met now: takes the met path.")
        longest = _duration(step["max"])
        self.add(step, f"The condition is not met now: shown waiting its longest, "
                       f"{_words(longest)}, then taking the max time path.")
        self.clock += longest
        return self.workflow.on_path(step["id"], "max_time")

    def step_random_split(self, step: dict):
        # The engine picks by the journey's id; the person's id stands in for it here.
        key = choose_path(self.person.pk, step["id"], step["paths"])
        return self.path(step, key, f"A random split: shown taking path {key}.")

    def step_update_attributes(self, step: dict):
        try:
            values = liquid.render_value(step["set"], self.variables())
        except liquid.TemplateError as error:
            self.add(step, f"Would fail: {error}")
            return self.after(step)
        changes = {**values, **dict.fromkeys(step.get("unset") or [])}
        for name, value in changes.items():
            if value is None:
                self.attributes.pop(name, None)
            else:
                self.attributes[name] = value
        self.add(step, "Updates their attributes (in this test only).", changes=changes)
        return self.after(step)

    def step_segment_membership(self, step: dict):
        segment = Segment.objects.filter(pk=step["segment"],
                                         workspace=self.campaign.workspace_id).first()
        name = segment.name if segment else f"segment {step['segment']}"
        verb = "add them to" if step["action"] == "add" else "remove them from"
        self.add(step, f"Would {verb} {name} (later conditions see the segment as it is).")
        return self.after(step)

    def step_create_event(self, step: dict):
        try:
            variables = self.variables()
            name = liquid.render(step["name"], variables)
            data = liquid.render_value(step["data"], variables)
        except liquid.TemplateError as error:
            self.add(step, f"Would fail: {error}")
            return self.after(step)
        self.add(step, f"Would record the event {name} with "
                       f"{json.dumps(data, ensure_ascii=False)}.")
        return self.after(step)

    def step_delete_person(self, step: dict):
        how = "delete and suppress" if step.get("suppress") else "delete"
        self.stop(step, f"Would {how} them.", f"Exits: the campaign would {how} them.")

    def step_exit(self, step: dict):
        self.stop(step, "Exit step: leaves the campaign.", "Exits at an exit step.")

    def step_email(self, step: dict):
        check = self.before_message(step)
        if check is False:
            return None
        email = render_email(step, self.variables())
        sending = step.get("sending", "automatic")
        allowed = step.get("send_to_unsubscribed")
        if allowed is None:
            allowed = self.definition.get("send_to_unsubscribed", False)
        if isinstance(check, str):
            outcome = f"Would be skipped: {check}."
        elif sending == "off":
            outcome = "Would be skipped: sending is off for this step."
        elif self.person.unsubscribed and not allowed:
            outcome = "Would be skipped: the person is unsubscribed."
        elif email["error"]:
            outcome = f"Would fail: {email['error']}"
        elif sending == "draft":
            outcome = "Would be drafted for an editor to send."
        else:
            outcome = "Would be sent (not sent in a test)."
        self.add(step, outcome, email=email)
        return self.after(step)

    def step_webhook(self, step: dict):
        check = True  # a webhook is a message: the engine checks before it too
        if self.person is not None or self.campaign.trigger not in DATA_TRIGGERS:
            check = self.before_message(step)
            if check is False:
                return None
        webhook = render_webhook(step, self.variables())
        sending = step.get("sending", "automatic")
        if isinstance(check, str):
            outcome = f"Would be skipped: {check}."
        elif sending == "off":
            outcome = "Would be skipped: sending is off for this step."
        elif webhook["error"]:
            outcome = f"Would fail: {webhook['error']}"
        elif sending == "draft":
            outcome = "Would be drafted; the journey waits until an editor sends it."
        else:
            outcome = "Would be called (not called in a test); the journey waits for it."
        self.add(step, outcome, webhook=webhook)
        return self.after(step)


def _words(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    parts = []
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return ", ".join(parts) or "no time"


def dry_run(campaign: Campaign, person: Person, *, now: datetime | None = None,
            trigger: dict | None = None) -> DryRun:
    """Return what the campaign's workflow would do for ``person`` entering at ``now``
    (with ``trigger`` as ``{{trigger.*}}``), without writing anything."""
    return _Walk(campaign, person, now or timezone.now(), trigger).walk()


def find_person(workspace, query: str) -> Person | None:
    """Return the workspace's person an email, id or cio_id names (in that order)."""
    query = query.strip()
    if not query:
        return None
    kinds = ("email",) if "@" in query else ("id", "cio_id")
    for kind in kinds:
        person = Person.objects.with_identifier(workspace, kind, query).order_by("pk").first()
        if person is not None:
            return person
    return None


def sample_people(workspace, count: int) -> list[Person]:
    """Return up to ``count`` people of the workspace picked at random, without scanning
    the table: each a seek to a random point of the primary key's range."""
    people = Person.objects.in_workspace(workspace)
    bounds = people.aggregate(low=Min("pk"), high=Max("pk"))
    if bounds["low"] is None:
        return []
    picked: dict[int, Person] = {}
    for _ in range(count * 3):
        if len(picked) >= count:
            break
        point = random.randint(bounds["low"], bounds["high"])  # noqa: S311 - not a secret
        person = people.filter(pk__gte=point).order_by("pk").first()
        if person is not None:
            picked.setdefault(person.pk, person)
    return list(picked.values())
