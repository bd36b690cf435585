"""The campaign definition: one JSON document that the App API, the editor and the engine
all speak (``DESIGN.md``, "Campaign definition").

``validate`` reads a definition and returns it normalised (defaults filled in, a stable
id on every workflow step that lacks one), or raises ``DefinitionError`` naming the
place of every problem, as ``workflow.steps[2].paths[1].steps[0].url``. It writes
nothing; the only reads are of the workspace's segments that conditions and steps name.

Two kinds of problem: a definition that is wrong (a bad type, an unknown field, an
impossible setting) is refused always; a step that is merely not configured yet (an
email without a subject, a branch without a condition) is allowed in a draft and
refused when the campaign starts (``starting=True``).
"""

import copy
import re
import secrets
from dataclasses import dataclass
from datetime import time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from segments import conditions

MAX_STEPS = 250
MAX_DEPTH = 8
MAX_NAME = 255
MAX_DESCRIPTION = 2000
MAX_TAGS = 20
MAX_TAG = 50
MAX_EVENT_NAME_BYTES = 100
MAX_DELAY_DAYS = 366
MAX_INTERVAL_DAYS = 3650
MAX_WINDOW_HOURS = 24 * 30
MAX_PATHS = 10
MAX_TEXT = 200_000  # characters of a message body or a webhook body
STEP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FORM_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
TIME_OF_DAY = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
SENDING = ("automatic", "draft", "off")
EXITS = ("unmatch", "goal", "goal_or_unmatch", "never")
TRIGGERS = ("segments", "event", "date", "form", "webhook", "api")
# Triggers whose journeys are one person's each. An API-triggered broadcast enters one
# journey per recipient (``campaigns.broadcasts``), its data as ``{{trigger.*}}``.
PERSON_TRIGGERS = ("segments", "event", "date", "form", "api")
# Triggers whose workflow acts on the person its data names ("person" on a step).
DATA_TRIGGERS = ("webhook",)
FREQUENCIES = {
    "segments": {"once": set(), "rematch": set(), "interval": {"days"}},
    "event": {"every": set(), "once": set(), "at_most_once": {"hours"}},
}
DEFAULT_FREQUENCY = {"segments": {"mode": "once"}, "event": {"mode": "every"}}
DURATION_UNITS = {"days": 86_400, "hours": 3_600, "minutes": 60, "seconds": 1}
IDENTIFIER_KINDS = ("id", "email", "cio_id")
TOP_LEVEL = {"name", "description", "tags", "trigger", "filters", "frequency", "goal",
             "exit", "send_to_unsubscribed", "grace_period", "workflow"}

# Each step type: its fields (besides id, type, name and person) and their defaults.
STEP_FIELDS: dict[str, dict[str, Any]] = {
    "email": {"from": None, "reply_to": None, "to": "{{customer.email}}", "subject": None,
              "body_html": None, "body_text": None, "sending": "automatic",
              "send_to_unsubscribed": None, "tracking": True},
    "delay": {"duration": None},
    "webhook": {"method": "POST", "url": None, "headers": {}, "body": None,
                "sending": "automatic", "response": []},
    "time_window": {"days": list(WEEKDAYS[:5]), "start": "09:00", "end": "17:00",
                    "timezone": "person", "fallback_timezone": "UTC"},
    "branch": {"condition": None, "paths": None},
    "wait_until": {"condition": None, "max": None, "paths": None},
    "random_split": {"paths": None},
    "update_attributes": {"set": {}, "unset": []},
    "segment_membership": {"action": "add", "segment": None},
    "create_event": {"name": None, "data": {}},
    "delete_person": {"suppress": False},
    "exit": {},
}
FIXED_PATHS = {"branch": ("true", "false"), "wait_until": ("met", "max_time")}
# Steps that act on a person, and so name one in a data campaign.
PERSON_STEPS = {"email", "update_attributes", "segment_membership", "create_event",
                "delete_person"}


@dataclass(frozen=True)
class Problem:
    place: str  # where in the definition, e.g. "workflow.steps[0].subject"
    reason: str  # "invalid" or "unconfigured"
    message: str


class DefinitionError(Exception):
    """A definition that cannot be saved (or started), with every problem and its place."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.place}: {p.message}" for p in problems))


def validate(definition: Any, *, workspace, starting: bool = False) -> dict:
    """Return ``definition`` normalised, or raise DefinitionError naming every problem.

    With ``starting``, steps that are not configured yet are problems too.
    """
    reader = _Reader(workspace)
    normalised = reader.definition(definition)
    problems = [p for p in reader.problems if starting or p.reason != "unconfigured"]
    if problems:
        raise DefinitionError(problems)
    return normalised


def unconfigured(definition: dict, *, workspace) -> list[Problem]:
    """Return what keeps a (valid) definition from starting: its unconfigured parts."""
    reader = _Reader(workspace)
    reader.definition(definition)
    return [p for p in reader.problems if p.reason == "unconfigured"]


def iter_steps(steps: list[dict], place: str = "workflow.steps"):
    """Yield (place, step) for every step of a workflow, depth first, in order."""
    for index, step in enumerate(steps):
        here = f"{place}[{index}]"
        yield here, step
        for path_index, path in enumerate(step.get("paths") or []):
            yield from iter_steps(path.get("steps", []), f"{here}.paths[{path_index}].steps")


def new_step_id() -> str:
    """Return a fresh step id (stable once stored: journeys and metrics refer to it)."""
    return "s" + secrets.token_hex(5)


class _Reader:
    def __init__(self, workspace):
        self.workspace = workspace
        self.problems: list[Problem] = []
        self.step_ids: set[str] = set()
        self.steps = 0
        self.segment_places: dict[int, str] = {}
        self.manual_segment_places: dict[int, str] = {}

    # --- reporting ----------------------------------------------------------------------

    def invalid(self, place: str, message: str) -> None:
        self.problems.append(Problem(place, "invalid", message))

    def missing(self, place: str, message: str) -> None:
        self.problems.append(Problem(place, "unconfigured", message))

    def unknown_keys(self, value: dict, allowed: set, place: str) -> None:
        for key in sorted(set(value) - allowed, key=str):
            self.invalid(f"{place}.{key}" if place else str(key), f"unknown field '{key}'")

    # --- the document -------------------------------------------------------------------

    def definition(self, raw: Any) -> dict:
        if not isinstance(raw, dict):
            self.invalid("(root)", "a campaign definition must be a JSON object")
            return {}
        self.unknown_keys(raw, TOP_LEVEL, "")
        out = {
            "name": self.text(raw.get("name"), "name", MAX_NAME, required=True),
            "description": self.text(raw.get("description", ""), "description",
                                     MAX_DESCRIPTION) or "",
            "tags": self.tags(raw.get("tags", [])),
        }
        trigger_kind, out["trigger"] = self.trigger(raw.get("trigger"))
        out["filters"] = self.condition(raw.get("filters"), "filters", optional=True)
        out["frequency"] = self.frequency(raw.get("frequency"), trigger_kind,
                                          has_filters=out["filters"] is not None)
        out["goal"] = self.goal(raw.get("goal"), trigger_kind)
        out["exit"] = self.exit(raw.get("exit"), trigger_kind, out["goal"])
        out["send_to_unsubscribed"] = self.boolean(raw.get("send_to_unsubscribed", False),
                                                   "send_to_unsubscribed")
        out["grace_period"] = self.duration(raw.get("grace_period") or {"hours": 0},
                                            "grace_period", allow_zero=True)
        workflow = raw.get("workflow", {"steps": []})
        if not isinstance(workflow, dict) or not isinstance(workflow.get("steps"), list):
            self.invalid("workflow", "workflow must be an object with a list of steps")
            workflow = {"steps": []}
        else:
            self.unknown_keys(workflow, {"steps"}, "workflow")
        out["workflow"] = {"steps": self.sequence(workflow["steps"], "workflow.steps", 1,
                                                  trigger_kind)}
        self.check_segments()
        return out

    def text(self, value: Any, place: str, limit: int, *, required: bool = False,
             configured: bool = False) -> str | None:
        """Read a string; ``required`` refuses its absence, ``configured`` only delays that."""
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.invalid(place, "is required")
            elif configured:
                self.missing(place, "is not set")
            return None if value is None or required or configured else value
        if not isinstance(value, str):
            self.invalid(place, "must be a string")
            return None
        if len(value) > limit:
            self.invalid(place, f"must be at most {limit} characters")
        if "\x00" in value:
            self.invalid(place, "must not contain NUL characters")
        return value

    def boolean(self, value: Any, place: str, *, nullable: bool = False) -> bool | None:
        if value is None and nullable:
            return None
        if not isinstance(value, bool):
            self.invalid(place, "must be true or false" + (" or null" if nullable else ""))
            return None
        return value

    def whole(self, value: Any, place: str, low: int, high: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.invalid(place, f"must be a whole number from {low} to {high}")
            return None
        return value

    def tags(self, raw: Any) -> list[str]:
        if not isinstance(raw, list) or len(raw) > MAX_TAGS:
            self.invalid("tags", f"tags must be a list of at most {MAX_TAGS} strings")
            return []
        tags = []
        for index, tag in enumerate(raw):
            tag = self.text(tag, f"tags[{index}]", MAX_TAG, required=True)
            if tag is not None and tag.strip() not in tags:
                tags.append(tag.strip())
        return tags

    def timezone(self, value: Any, place: str, *, person: bool) -> str | None:
        if person and value == "person":
            return value
        if isinstance(value, str) and value and "\x00" not in value:
            try:
                ZoneInfo(value)
                return value
            except (ZoneInfoNotFoundError, ValueError):
                pass
        self.invalid(place, "must be an IANA time zone name such as Europe/Berlin"
                            + (", or \"person\" for the person's timezone attribute"
                               if person else ""))
        return None

    def time_of_day(self, value: Any, place: str) -> str | None:
        if not isinstance(value, str) or not TIME_OF_DAY.match(value):
            self.invalid(place, "must be a time of day as HH:MM, from 00:00 to 23:59")
            return None
        return value

    def duration(self, raw: Any, place: str, *, allow_zero: bool = False,
                 max_days: int = MAX_DELAY_DAYS) -> dict | None:
        if not isinstance(raw, dict) or not raw:
            self.invalid(place, "must be an object of days, hours, minutes and seconds")
            return None
        self.unknown_keys(raw, set(DURATION_UNITS), place)
        out = {}
        for unit in DURATION_UNITS:
            value = raw.get(unit, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                self.invalid(f"{place}.{unit}", "must be a whole number of at least 0")
                return None
            out[unit] = value
        total = sum(out[unit] * seconds for unit, seconds in DURATION_UNITS.items())
        if not allow_zero and total == 0:
            self.invalid(place, "must be longer than zero")
        elif total > max_days * 86_400:
            self.invalid(place, f"must be at most {max_days} days")
        return out

    # --- conditions ---------------------------------------------------------------------

    def condition(self, tree: Any, place: str, *, optional: bool = False,
                  configured: bool = False) -> dict | None:
        """Check a condition tree of the segment contract, reporting places under ``place``."""
        if tree is None:
            if configured:
                self.missing(place, "needs a condition")
            elif not optional:
                self.invalid(place, "is required")
            return None
        self.check_tree(tree, place)
        return tree

    def check_tree(self, tree: Any, place: str, *, strip: str = "") -> None:
        try:
            conditions.validate(tree, workspace=self.workspace)  # segments included
        except conditions.ConditionError as error:
            for where, message in error.problems:
                if strip and where.startswith(strip):
                    where = where[len(strip):]
                where = "" if where in ("(root)", "") else where
                joined = place + where if where.startswith("[") else f"{place}.{where}"
                self.invalid(joined if where else place, message)

    def event_filters(self, filters: Any, place: str) -> list:
        if not isinstance(filters, list):
            self.invalid(place, "filters must be a list of conditions on the event's data")
            return []
        # The segment contract's event filters: same fields, operators and values.
        self.check_tree({"event": {"name": "x", "filters": filters}}, place,
                        strip="event.filters")
        return filters

    def check_segments(self) -> None:
        """Refuse references to segments the workspace lacks; membership steps need manual ones."""
        from segments.models import Segment

        wanted = set(self.segment_places) | set(self.manual_segment_places)
        if not wanted:
            return
        known = {pk: kind == Segment.Kind.MANUAL for pk, kind in Segment.objects.filter(
            workspace=self.workspace, pk__in=wanted).values_list("pk", "kind")}
        for segment_id, place in self.segment_places.items():
            if segment_id not in known:
                self.invalid(place, f"there is no segment {segment_id} in this workspace")
        for segment_id, place in self.manual_segment_places.items():
            if segment_id not in known:
                self.invalid(place, f"there is no segment {segment_id} in this workspace")
            elif not known[segment_id]:
                self.invalid(place, f"segment {segment_id} is data-driven: only manual "
                                    "segments take people added or removed by a campaign")

    # --- trigger, frequency, goal, exit -----------------------------------------------

    def trigger(self, raw: Any) -> tuple[str | None, dict | None]:
        if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in TRIGGERS:
            self.invalid("trigger", "trigger must be an object with exactly one of: "
                                    + ", ".join(TRIGGERS))
            return None, None
        ((kind, body),) = raw.items()
        place = f"trigger.{kind}"
        if not isinstance(body, dict):
            self.invalid(place, "must be an object")
            return kind, None
        reader = getattr(self, f"trigger_{kind}")
        return kind, {kind: reader(body, place)}

    def trigger_segments(self, body: dict, place: str) -> dict:
        self.unknown_keys(body, {"match", "segments"}, place)
        match = body.get("match", "all")
        if match not in ("all", "any"):
            self.invalid(f"{place}.match", "must be \"all\" or \"any\"")
        chosen = body.get("segments")
        out = []
        if not isinstance(chosen, list) or not chosen:
            self.missing(f"{place}.segments", "choose at least one segment")
            return {"match": match, "segments": out}
        seen = set()
        for index, item in enumerate(chosen):
            here = f"{place}.segments[{index}]"
            if not isinstance(item, dict):
                self.invalid(here, "must be an object such as {\"id\": 12, \"in\": true}")
                continue
            self.unknown_keys(item, {"id", "in"}, here)
            segment_id = item.get("id")
            if isinstance(segment_id, bool) or not isinstance(segment_id, int):
                self.invalid(f"{here}.id", "must be a segment's id")
                continue
            inside = self.boolean(item.get("in", True), f"{here}.in")
            if segment_id in seen:
                self.invalid(f"{here}.id", f"segment {segment_id} is chosen twice")
            seen.add(segment_id)
            self.segment_places.setdefault(segment_id, f"{here}.id")
            out.append({"id": segment_id, "in": inside})
        if out and not any(item["in"] for item in out):
            self.invalid(f"{place}.segments", "at least one segment must be one people are "
                                              "in: nobody enters on not being somewhere alone")
        return {"match": match, "segments": out}

    def trigger_event(self, body: dict, place: str) -> dict:
        self.unknown_keys(body, {"name", "filters"}, place)
        name = body.get("name")
        if name is None or (isinstance(name, str) and not name.strip()):
            self.missing(f"{place}.name", "choose the event that triggers the campaign")
            name = None
        elif (not isinstance(name, str) or len(name.strip().encode()) > MAX_EVENT_NAME_BYTES
              or "\x00" in name):
            self.invalid(f"{place}.name", "must be an event name of 1 to 100 bytes")
            name = None
        else:
            name = name.strip()
        filters = self.event_filters(body.get("filters", []), f"{place}.filters")
        return {"name": name, "filters": filters}

    def trigger_date(self, body: dict, place: str) -> dict:
        self.unknown_keys(body, {"attribute", "recurrence", "offset_days", "time", "timezone",
                                 "fallback_timezone"}, place)
        attribute = body.get("attribute")
        if attribute is None:
            self.missing(f"{place}.attribute", "choose the attribute holding the date")
        else:
            try:
                conditions.parse_path(attribute)
            except ValueError as error:
                self.invalid(f"{place}.attribute", str(error))
        recurrence = body.get("recurrence", "once")
        if recurrence not in ("once", "monthly", "yearly"):
            self.invalid(f"{place}.recurrence", "must be \"once\", \"monthly\" or \"yearly\"")
        offset = self.whole(body.get("offset_days", 0), f"{place}.offset_days", -365, 365)
        at = self.time_of_day(body.get("time", "09:00"), f"{place}.time")
        zone = self.timezone(body.get("timezone", "UTC"), f"{place}.timezone", person=True)
        fallback = self.timezone(body.get("fallback_timezone", "UTC"),
                                 f"{place}.fallback_timezone", person=False)
        return {"attribute": attribute, "recurrence": recurrence, "offset_days": offset,
                "time": at, "timezone": zone, "fallback_timezone": fallback}

    def trigger_form(self, body: dict, place: str) -> dict:
        self.unknown_keys(body, {"id"}, place)
        form_id = body.get("id")
        if form_id is None:
            self.missing(f"{place}.id", "name the form whose submissions trigger the campaign")
        elif not isinstance(form_id, str) or not FORM_ID.match(form_id):
            self.invalid(f"{place}.id", "must be 1 to 100 letters, digits, '.', '_' or '-'")
        return {"id": form_id}

    def trigger_webhook(self, body: dict, place: str) -> dict:
        self.unknown_keys(body, set(), place)
        return {}

    trigger_api = trigger_webhook

    def frequency(self, raw: Any, trigger: str | None, *, has_filters: bool) -> dict | None:
        modes = FREQUENCIES.get(trigger)
        if modes is None:
            if raw is not None and trigger is not None:
                self.invalid("frequency", f"a campaign triggered by {trigger} has no frequency: "
                                          "leave it out")
            return None
        if raw is None:
            return dict(DEFAULT_FREQUENCY[trigger])
        if not isinstance(raw, dict) or raw.get("mode") not in modes:
            self.invalid("frequency.mode", "must be one of " + ", ".join(modes))
            return None
        mode = raw["mode"]
        self.unknown_keys(raw, {"mode"} | modes[mode], "frequency")
        out = {"mode": mode}
        if mode == "interval":
            out["days"] = self.whole(raw.get("days"), "frequency.days", 1, MAX_INTERVAL_DAYS)
        if mode == "at_most_once":
            out["hours"] = self.whole(raw.get("hours"), "frequency.hours", 1,
                                      MAX_INTERVAL_DAYS * 24)
        if has_filters and out != DEFAULT_FREQUENCY[trigger]:
            self.invalid("frequency", "a campaign with filters cannot limit or repeat entries: "
                                      "remove the filters or keep the default frequency")
        return out

    def goal(self, raw: Any, trigger: str | None) -> dict | None:
        if raw is None:
            return None
        if trigger in DATA_TRIGGERS:
            self.invalid("goal", "a data campaign has no conversion goal")
            return None
        kinds = {"event", "enters_segment", "leaves_segment"}
        if not isinstance(raw, dict) or len(set(raw) & kinds) != 1:
            self.invalid("goal", "goal needs exactly one of: event, enters_segment, "
                                 "leaves_segment (and within_days)")
            return None
        self.unknown_keys(raw, kinds | {"within_days"}, "goal")
        out = {"within_days": self.whole(raw.get("within_days", 7), "goal.within_days", 1, 365)}
        if "event" in raw:
            body = raw["event"]
            if not isinstance(body, dict):
                self.invalid("goal.event", "must be an object with a name and filters")
                return None
            self.unknown_keys(body, {"name", "filters"}, "goal.event")
            name = body.get("name")
            if not isinstance(name, str) or not name.strip() or len(name.encode()) > 100:
                self.invalid("goal.event.name", "must be an event name of 1 to 100 bytes")
            filters = self.event_filters(body.get("filters", []), "goal.event.filters")
            out["event"] = {"name": name, "filters": filters}
        else:
            kind = "enters_segment" if "enters_segment" in raw else "leaves_segment"
            segment_id = raw[kind]
            if isinstance(segment_id, bool) or not isinstance(segment_id, int):
                self.invalid(f"goal.{kind}", "must be a segment's id")
            else:
                self.segment_places.setdefault(segment_id, f"goal.{kind}")
            out[kind] = segment_id
        return out

    def exit(self, raw: Any, trigger: str | None, goal: dict | None) -> str:
        default = ("never" if trigger in DATA_TRIGGERS + ("event", "date", "form", "api")
                   else "unmatch")
        value = default if raw is None else raw
        if value not in EXITS:
            self.invalid("exit", "must be one of " + ", ".join(EXITS))
            return default
        if value in ("goal", "goal_or_unmatch") and goal is None:
            self.invalid("exit", "exiting on the goal needs a goal")
        if trigger in DATA_TRIGGERS and value != "never":
            self.invalid("exit", "a data campaign runs to its end: exit must be \"never\"")
        return value

    # --- workflow -----------------------------------------------------------------------

    def sequence(self, steps: Any, place: str, depth: int, trigger: str | None) -> list:
        if not isinstance(steps, list):
            self.invalid(place, "must be a list of steps")
            return []
        if depth > MAX_DEPTH:
            self.invalid(place, f"blocks may be nested at most {MAX_DEPTH} deep")
            return []
        return [step for index, raw in enumerate(steps)
                if (step := self.step(raw, f"{place}[{index}]", depth, trigger)) is not None]

    def step(self, raw: Any, place: str, depth: int, trigger: str | None) -> dict | None:
        self.steps += 1
        if self.steps == MAX_STEPS + 1:
            self.invalid(place, f"a workflow may have at most {MAX_STEPS} steps")
        if self.steps > MAX_STEPS:
            return None
        if not isinstance(raw, dict):
            self.invalid(place, "a step must be an object with a type")
            return None
        kind = raw.get("type")
        if kind not in STEP_FIELDS:
            self.invalid(f"{place}.type", "must be one of " + ", ".join(STEP_FIELDS))
            return None
        fields = STEP_FIELDS[kind]
        allowed = {"id", "type", "name", *fields}
        if kind in PERSON_STEPS and trigger in DATA_TRIGGERS:
            allowed.add("person")
        self.unknown_keys(raw, allowed, place)
        step_id = raw.get("id")
        if step_id is None:
            step_id = new_step_id()
            while step_id in self.step_ids:
                step_id = new_step_id()
        elif not isinstance(step_id, str) or not STEP_ID.match(step_id):
            self.invalid(f"{place}.id", "must be 1 to 64 letters, digits, '_' or '-'")
        elif step_id in self.step_ids:
            self.invalid(f"{place}.id", f"another step already has the id '{step_id}'")
        self.step_ids.add(step_id)
        step = {"id": step_id, "type": kind,
                "name": self.text(raw.get("name", ""), f"{place}.name", MAX_NAME) or ""}
        for name, default in fields.items():
            step[name] = copy.deepcopy(raw.get(name, default))
        if "person" in allowed:
            step["person"] = self.person(raw.get("person"), f"{place}.person")
        getattr(self, f"step_{kind}")(step, place, depth, trigger)
        return step

    def person(self, raw: Any, place: str) -> dict | None:
        if raw is None:
            self.missing(place, "name the person this step acts on, e.g. "
                                "{\"email\": \"{{trigger.email}}\"}")
            return None
        if (not isinstance(raw, dict) or len(raw) != 1
                or next(iter(raw)) not in IDENTIFIER_KINDS
                or not isinstance(next(iter(raw.values())), str)):
            self.invalid(place, "must name one identifier: id, email or cio_id, as a string")
            return None
        return raw

    def sending(self, step: dict, place: str) -> None:
        if step["sending"] not in SENDING:
            self.invalid(f"{place}.sending", "must be one of " + ", ".join(SENDING))

    def step_email(self, step: dict, place: str, depth: int, trigger) -> None:
        self.text(step["from"], f"{place}.from", 500, configured=True)
        self.text(step["reply_to"], f"{place}.reply_to", 500)
        self.text(step["to"], f"{place}.to", 500, configured=True)
        self.text(step["subject"], f"{place}.subject", 1000, configured=True)
        self.text(step["body_html"], f"{place}.body_html", MAX_TEXT)
        self.text(step["body_text"], f"{place}.body_text", MAX_TEXT)
        if not any(isinstance(step[body], str) and step[body].strip()
                   for body in ("body_html", "body_text")):
            self.missing(f"{place}.body_html", "the message has no body")
        self.sending(step, place)
        self.boolean(step["send_to_unsubscribed"], f"{place}.send_to_unsubscribed",
                     nullable=True)
        self.boolean(step["tracking"], f"{place}.tracking")

    def step_delay(self, step: dict, place: str, depth: int, trigger) -> None:
        if step["duration"] is None:
            self.missing(f"{place}.duration", "how long to wait is not set")
        else:
            step["duration"] = self.duration(step["duration"], f"{place}.duration")

    def step_webhook(self, step: dict, place: str, depth: int, trigger) -> None:
        if step["method"] not in METHODS:
            self.invalid(f"{place}.method", "must be one of " + ", ".join(METHODS))
        url = self.text(step["url"], f"{place}.url", 2000, configured=True)
        if url and not re.match(r"^(https?://|\{\{)", url.strip(), re.IGNORECASE):
            self.invalid(f"{place}.url", "must start with http:// or https://")
        headers = step["headers"]
        if not isinstance(headers, dict):
            self.invalid(f"{place}.headers", "must be an object of header names and values")
        else:
            for header, value in headers.items():
                if not HEADER_NAME.match(header):
                    self.invalid(f"{place}.headers.{header}", "is not a valid header name")
                elif not isinstance(value, str) or "\n" in value or "\r" in value:
                    self.invalid(f"{place}.headers.{header}",
                                 "must be a string on one line")
        body = step["body"]
        if body is not None and not isinstance(body, str | dict | list):
            self.invalid(f"{place}.body", "must be text, a JSON object or a list, or null")
        elif isinstance(body, str):
            self.text(body, f"{place}.body", MAX_TEXT)
        self.sending(step, place)
        mapping = step["response"]
        if not isinstance(mapping, list):
            self.invalid(f"{place}.response", "must be a list of {path, attribute}")
            return
        for index, item in enumerate(mapping):
            here = f"{place}.response[{index}]"
            if not isinstance(item, dict) or set(item) != {"path", "attribute"}:
                self.invalid(here, "must be {\"path\": ..., \"attribute\": ...}")
                continue
            for key in ("path", "attribute"):
                try:
                    conditions.parse_path(item[key])
                except ValueError as error:
                    self.invalid(f"{here}.{key}", str(error))

    def step_time_window(self, step: dict, place: str, depth: int, trigger) -> None:
        days = step["days"]
        if (not isinstance(days, list) or not days
                or not all(isinstance(day, str) and day in WEEKDAYS for day in days)):
            self.invalid(f"{place}.days", "must be a non-empty list of " + ", ".join(WEEKDAYS))
        else:
            step["days"] = [day for day in WEEKDAYS if day in days]
        start = self.time_of_day(step["start"], f"{place}.start")
        end = self.time_of_day(step["end"], f"{place}.end")
        if start and end and time.fromisoformat(start) == time.fromisoformat(end):
            self.invalid(f"{place}.end", "the window must not be empty: end differs from start")
        self.timezone(step["timezone"], f"{place}.timezone", person=True)
        self.timezone(step["fallback_timezone"], f"{place}.fallback_timezone", person=False)

    def paths(self, step: dict, place: str, depth: int, trigger, keys: tuple) -> None:
        raw = step["paths"]
        if raw is None:
            raw = [{"key": key, "steps": []} for key in keys]
        if (not isinstance(raw, list) or len(raw) != len(keys)
                or any(not isinstance(path, dict) for path in raw)
                or [path.get("key") for path in raw] != list(keys)):
            self.invalid(f"{place}.paths", "must be the paths "
                         + ", ".join(f'"{key}"' for key in keys) + ", in this order")
            step["paths"] = [{"key": key, "steps": []} for key in keys]
            return
        step["paths"] = []
        for index, path in enumerate(raw):
            self.unknown_keys(path, {"key", "steps"}, f"{place}.paths[{index}]")
            step["paths"].append({"key": path["key"], "steps": self.sequence(
                path.get("steps", []), f"{place}.paths[{index}].steps", depth + 1, trigger)})

    def step_branch(self, step: dict, place: str, depth: int, trigger) -> None:
        self.condition(step["condition"], f"{place}.condition", configured=True)
        self.paths(step, place, depth, trigger, FIXED_PATHS["branch"])

    def step_wait_until(self, step: dict, place: str, depth: int, trigger) -> None:
        self.condition(step["condition"], f"{place}.condition", configured=True)
        if step["max"] is None:
            self.missing(f"{place}.max", "how long to wait at most is not set")
        else:
            step["max"] = self.duration(step["max"], f"{place}.max")
        self.paths(step, place, depth, trigger, FIXED_PATHS["wait_until"])

    def step_random_split(self, step: dict, place: str, depth: int, trigger) -> None:
        raw = step["paths"]
        if raw is None:
            raw = [{"key": "A", "weight": 50, "steps": []}, {"key": "B", "weight": 50,
                                                              "steps": []}]
        if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_PATHS:
            self.invalid(f"{place}.paths", f"a random split has 2 to {MAX_PATHS} paths")
            step["paths"] = []
            return
        step["paths"], keys, total = [], set(), 0
        for index, path in enumerate(raw):
            here = f"{place}.paths[{index}]"
            if not isinstance(path, dict):
                self.invalid(here, "must be an object with key, weight and steps")
                continue
            self.unknown_keys(path, {"key", "weight", "steps"}, here)
            key = self.text(path.get("key"), f"{here}.key", 50, required=True)
            if key in keys:
                self.invalid(f"{here}.key", f"another path is called '{key}'")
            keys.add(key)
            weight = self.whole(path.get("weight"), f"{here}.weight", 1, 100)
            total += weight or 0
            step["paths"].append({"key": key, "weight": weight, "steps": self.sequence(
                path.get("steps", []), f"{here}.steps", depth + 1, trigger)})
        if total != 100 and all(path["weight"] for path in step["paths"]):
            self.invalid(f"{place}.paths", f"the weights add up to {total}, not 100")

    def step_update_attributes(self, step: dict, place: str, depth: int, trigger) -> None:
        changes, removals = step["set"], step["unset"]
        if not isinstance(changes, dict):
            self.invalid(f"{place}.set", "must be an object of attribute names and values")
            changes = {}
        for name in changes:
            if not name or len(name.encode()) > 150 or "\x00" in name:
                self.invalid(f"{place}.set", f"'{name}' is not an attribute name "
                                             "(1 to 150 bytes)")
        if not isinstance(removals, list) or not all(
                isinstance(name, str) and name for name in removals):
            self.invalid(f"{place}.unset", "must be a list of attribute names")
            removals = []
        if not changes and not removals:
            self.missing(f"{place}.set", "no attribute is set or removed")
        both = set(changes) & set(removals)
        if both:
            self.invalid(f"{place}.unset", f"{sorted(both)} are both set and removed")

    def step_segment_membership(self, step: dict, place: str, depth: int, trigger) -> None:
        if step["action"] not in ("add", "remove"):
            self.invalid(f"{place}.action", "must be \"add\" or \"remove\"")
        segment_id = step["segment"]
        if segment_id is None:
            self.missing(f"{place}.segment", "choose a manual segment")
        elif isinstance(segment_id, bool) or not isinstance(segment_id, int):
            self.invalid(f"{place}.segment", "must be a segment's id")
        else:
            self.manual_segment_places.setdefault(segment_id, f"{place}.segment")

    def step_create_event(self, step: dict, place: str, depth: int, trigger) -> None:
        name = step["name"]
        if name is None or (isinstance(name, str) and not name.strip()):
            self.missing(f"{place}.name", "the event has no name")
        elif not isinstance(name, str) or len(name.encode()) > MAX_EVENT_NAME_BYTES:
            self.invalid(f"{place}.name", "must be an event name of 1 to 100 bytes")
        if not isinstance(step["data"], dict):
            self.invalid(f"{place}.data", "must be an object")

    def step_delete_person(self, step: dict, place: str, depth: int, trigger) -> None:
        self.boolean(step["suppress"], f"{place}.suppress")

    def step_exit(self, step: dict, place: str, depth: int, trigger) -> None:
        pass
