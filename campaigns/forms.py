"""Forms of the campaign pages: create a campaign, its trigger settings, and the actions.

The settings form reads what the page posts into a new definition (the workflow stays as
saved) and puts the definition validator's problems back beside the fields they name.
Rows (a segments trigger's segments, an event trigger's filters) are posted as parallel
lists (``segment``/``segment_in``, ``filter_field``/``filter_operator``/``filter_value``,
and the goal event's ``goal_filter_field``...).
"""

import copy
import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

from django import forms
from django.utils import timezone

from campaigns.definition import DATA_TRIGGERS, MAX_INTERVAL_DAYS, Problem
from campaigns.models import Campaign
from campaigns.services import Audience
from segments import conditions
from segments.builder_forms import ATTRIBUTE_OPERATOR_CHOICES, Builder

# A new campaign's trigger, before its settings are filled in (unconfigured in a draft).
NEW_TRIGGERS = {
    "segments": {"match": "all", "segments": []},
    "event": {"name": None, "filters": []},
    "date": {"attribute": None},
    "form": {"id": None},
    "webhook": {},
    "api": {},
}

FREQUENCY_CHOICES = {
    "segments": [("once", "Once: people enter the campaign once"),
                 ("rematch", "Every time they stop matching and match again"),
                 ("interval", "Again every N days while they still match")],
    "event": [("every", "Every time they perform the event"),
              ("once", "Once ever: the first time they perform it"),
              ("at_most_once", "At most once within N hours")],
}
# What changing the frequency does (Customer.io's "Changing frequency").
FREQUENCY_CHANGES = [
    ("Re-match to once", "After the change, people enter the campaign once. Anyone who "
                         "might have re-entered in the future no longer does."),
    ("Re-match to a fixed interval", "Only new people who match restart; this does not "
                                     "apply to people who have been through the campaign."),
    ("Fixed interval to once", "People scheduled to re-enter no longer do; those in the "
                               "campaign go on with their journey."),
    ("Fixed interval to re-match", "People scheduled to restart no longer do: they must "
                                   "stop matching and match again to re-enter. Those in the "
                                   "campaign go on with their journey."),
]
EXIT_CHOICES = [
    ("unmatch", "They no longer match the campaign's trigger and filters"),
    ("goal", "They perform the conversion goal"),
    ("goal_or_unmatch", "They perform the goal, or no longer match the trigger and filters"),
    ("never", "People don't exit: they move through the entire campaign"),
]
GOAL_CHOICES = [("", "No conversion goal"), ("event", "They perform an event"),
                ("enters_segment", "They enter a segment"),
                ("leaves_segment", "They leave a segment")]
RECURRENCE_CHOICES = [("once", "Only once, on this date"), ("monthly", "Every month"),
                      ("yearly", "Every year")]
_ROW_PLACE = re.compile(
    r"^(trigger\.segments\.segments|trigger\.event\.filters|goal\.event\.filters)\[(\d+)\]")


def split_tags(text: str) -> list[str]:
    return [tag.strip() for tag in text.split(",") if tag.strip()]


class CampaignCreateForm(forms.Form):
    """A new campaign's name, description, tags and trigger type."""

    name = forms.CharField(max_length=255)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    tags = forms.CharField(required=False, help_text="Separated by commas",
                           widget=forms.TextInput(attrs={"placeholder": "onboarding, email"}))
    trigger = forms.ChoiceField(label="What triggers this campaign?",
                                choices=Campaign.Trigger.choices, widget=forms.RadioSelect)

    def definition(self) -> dict:
        data = self.cleaned_data
        return {"name": data["name"], "description": data["description"],
                "tags": split_tags(data["tags"]),
                "trigger": {data["trigger"]: copy.deepcopy(NEW_TRIGGERS[data["trigger"]])}}

    def add_problems(self, problems: list[Problem]) -> None:
        for problem in problems:
            field = problem.place.split("[")[0].split(".")[0]
            self.add_error(field if field in self.fields else None,
                           problem.message if field in self.fields
                           else f"{problem.place}: {problem.message}")


def _number(text: str):
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _json(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def filter_condition(field: str, operator: str, value: str) -> dict:
    """Return an event-data filter from a row's field, operator and value as typed."""
    condition: dict = {"field": field.strip(), "operator": operator}
    if operator in conditions.PRESENCE_OPERATORS or operator == "is_timestamp":
        return condition
    structured = _json(value) if value.strip()[:1] in ("[", "{") else None
    if operator == "in":
        condition["value"] = structured if isinstance(structured, list) else [
            item.strip() for item in value.split(",") if item.strip()]
    elif operator in conditions.TIMESTAMP_OPERATORS and isinstance(structured, dict):
        condition["value"] = structured  # {"days_ago": N} or {"days_from_now": N}
    elif operator in conditions.NUMBER_OPERATORS or operator in conditions.TIMESTAMP_OPERATORS:
        condition["value"] = _number(value)
    else:
        condition["value"] = value
    return condition


def filter_row(condition: dict) -> dict:
    """Return a filter row's field, operator and value text from a filter."""
    value = condition.get("value", "")
    if isinstance(value, list) and all(isinstance(item, str) and "," not in item
                                       and not item.startswith(("[", "{"))
                                       for item in value):
        value = ", ".join(value)
    elif isinstance(value, bool | int | float):
        value = conditions.text_form(value)
    elif not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False)  # a list of other values, {"days_ago"}
    return {"field": condition.get("field", ""), "operator": condition.get("operator", "eq"),
            "value": value, "errors": []}


class SettingsForm(forms.Form):
    """A campaign's trigger settings, filters, frequency, goal, exit and unsubscribed rule."""

    version = forms.IntegerField(widget=forms.HiddenInput)
    match = forms.ChoiceField(required=False, choices=[
        ("all", "all of these segments (AND)"), ("any", "any of these segments (OR)")])
    event_name = forms.CharField(required=False, label="Event name", max_length=200)
    date_attribute = forms.CharField(required=False, label="Attribute holding the date",
                                     max_length=200)
    date_recurrence = forms.ChoiceField(required=False, label="Recurrence",
                                        choices=RECURRENCE_CHOICES)
    date_offset_days = forms.IntegerField(
        required=False, label="Days from the date", min_value=-365, max_value=365,
        help_text="0 fires on the date; -3 three days before it, 3 three days after")
    date_time = forms.CharField(required=False, label="At (HH:MM)", max_length=5)
    date_timezone = forms.CharField(required=False, label="Time zone", max_length=64,
                                    help_text="An IANA name, or “person” for each "
                                              "person's timezone attribute")
    date_fallback_timezone = forms.CharField(required=False, label="Fallback time zone",
                                             max_length=64)
    form_id = forms.CharField(required=False, label="Form id", max_length=100)
    filters = forms.CharField(
        required=False, label="Filters (a condition tree, JSON)",
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text='Checked on entry and before every message, e.g. {"attribute": '
                  '{"field": "plan", "operator": "eq", "value": "pro"}}. Empty: no filters.')
    frequency_mode = forms.ChoiceField(required=False, label="Frequency", choices=[])
    frequency_days = forms.IntegerField(required=False, label="Every N days", min_value=1,
                                        max_value=MAX_INTERVAL_DAYS)
    frequency_hours = forms.IntegerField(required=False, label="Within N hours", min_value=1,
                                         max_value=MAX_INTERVAL_DAYS * 24)
    goal_kind = forms.ChoiceField(required=False, label="Conversion goal", choices=GOAL_CHOICES)
    goal_event = forms.CharField(required=False, label="Goal event", max_length=200)
    goal_segment = forms.TypedChoiceField(required=False, label="Goal segment", coerce=int,
                                          empty_value=None, choices=[])
    goal_within_days = forms.IntegerField(required=False, label="Within days of a message",
                                          min_value=1, max_value=365, initial=7)
    exit = forms.ChoiceField(required=False, label="People exit when", choices=EXIT_CHOICES)
    grace_period_hours = forms.IntegerField(
        required=False, label="Grace period (hours)", min_value=0, max_value=366 * 24,
        help_text="Before a message, someone who stopped matching gets this long to match "
                  "again before they exit")
    send_to_unsubscribed = forms.BooleanField(required=False,
                                              label="Send messages to unsubscribed people")

    def __init__(self, *args, campaign: Campaign, segment_choices: list, **kwargs):
        self.campaign = campaign
        definition = campaign.definition
        if not args and "data" not in kwargs:
            kwargs.setdefault("initial", self.initial_from(campaign))
        super().__init__(*args, **kwargs)
        self.kind = campaign.trigger
        self.fields["goal_segment"].choices = [("", "choose a segment…"), *segment_choices]
        # A grace period of whole hours is edited here; another stays as it is.
        if self.kind != "segments" or _grace_seconds(definition) % 3600:
            del self.fields["grace_period_hours"]
        self.has_frequency = self.kind in FREQUENCY_CHOICES
        if self.has_frequency:
            self.fields["frequency_mode"].choices = FREQUENCY_CHOICES[self.kind]
        else:  # a campaign triggered by a date, a form or data has no frequency
            for name in ("frequency_mode", "frequency_days", "frequency_hours"):
                del self.fields[name]
        self.segment_rows = self._segment_rows(definition)
        self.filter_rows = self._filter_rows(definition)
        self.goal_filter_rows = self._filter_rows(definition, prefix="goal_filter_")
        self.builder, self.filters_as_json = self._filters_builder(definition)
        # Problems about the rows as a whole ("choose at least one segment").
        self.row_errors: dict[str, list[str]] = {"segments": [], "event_filters": [],
                                                 "goal_filters": []}

    @staticmethod
    def initial_from(campaign: Campaign) -> dict:
        definition = campaign.definition
        ((kind, trigger),) = definition["trigger"].items()
        initial = {"version": campaign.version, "exit": definition["exit"],
                   "grace_period_hours": _grace_seconds(definition) // 3600,
                   "send_to_unsubscribed": definition["send_to_unsubscribed"]}
        if definition.get("filters") is not None:
            initial["filters"] = json.dumps(definition["filters"], indent=2,
                                            ensure_ascii=False)
        if kind == "segments":
            initial["match"] = trigger["match"]
        elif kind == "event":
            initial["event_name"] = trigger.get("name") or ""
        elif kind == "date":
            initial.update({f"date_{key}": value for key, value in trigger.items()
                            if value is not None})
        elif kind == "form":
            initial["form_id"] = trigger.get("id") or ""
        frequency = definition.get("frequency") or {}
        initial["frequency_mode"] = frequency.get("mode")
        initial["frequency_days"] = frequency.get("days")
        initial["frequency_hours"] = frequency.get("hours")
        goal = definition.get("goal")
        if goal:
            initial["goal_within_days"] = goal.get("within_days", 7)
            if "event" in goal:
                initial.update(goal_kind="event", goal_event=goal["event"]["name"])
            else:
                kind = "enters_segment" if "enters_segment" in goal else "leaves_segment"
                initial.update(goal_kind=kind, goal_segment=goal[kind])
        return initial

    # --- rows ---------------------------------------------------------------------------

    def _segment_rows(self, definition: dict) -> list[dict]:
        if self.is_bound:
            ids, insides = self.data.getlist("segment"), self.data.getlist("segment_in")
            # Blank rows stay on the form (a row being filled in) but name no segment.
            rows = [{"id": int(text) if text.isdigit() else text.strip(),
                     "in": (insides[index] if index < len(insides) else "in") != "not_in",
                     "errors": []}
                    for index, text in enumerate(ids)]
        else:
            chosen = definition["trigger"].get("segments", {}).get("segments", [])
            rows = [{"id": item["id"], "in": item["in"], "errors": []} for item in chosen]
        return rows

    def chosen_segments(self) -> list[dict]:
        """Return the segment rows that name a segment (blank rows are being filled in)."""
        return [row for row in self.segment_rows if row["id"] != ""]

    def _filter_rows(self, definition: dict, *, prefix: str = "filter_") -> list[dict]:
        """Return rows of event-data filters: the trigger's, or (``goal_filter_``) the goal's."""
        if self.is_bound:
            fields = self.data.getlist(f"{prefix}field")
            operators = self.data.getlist(f"{prefix}operator")
            values = self.data.getlist(f"{prefix}value")
            return [{"field": field, "operator": operators[index] if index < len(operators)
                     else "eq", "value": values[index] if index < len(values) else "",
                     "errors": []}
                    for index, field in enumerate(fields) if field.strip()]
        if prefix == "goal_filter_":
            chosen = ((definition.get("goal") or {}).get("event") or {}).get("filters") or []
        else:
            chosen = (definition["trigger"].get("event") or {}).get("filters") or []
        return [filter_row(condition) for condition in chosen]

    def _filters_builder(self, definition: dict) -> tuple[Builder, bool]:
        """Return the filters as the segment builder's rows, and whether they are JSON instead.

        A tree the rows cannot show as it is (a condition kind without a row, an explicit
        default) is edited as JSON, so that saving never changes what it does.
        """
        if self.is_bound:
            if self.data.get("filters_mode") == "json":
                return Builder.empty(), True
            return Builder.from_post(self.data), False
        tree = definition.get("filters")
        builder = Builder.from_tree(tree)
        if tree is not None and _unwrapped(builder.tree()) != _unwrapped(tree):
            return Builder.empty(), True
        return builder, False

    def add_filter(self, field: str, value) -> None:
        """Add a filter row (from an occurrence's data key and value) to those posted."""
        self.filter_rows.append(filter_row({"field": field, "operator": "eq",
                                            "value": value}))

    # --- reading ------------------------------------------------------------------------

    def clean_filters(self):
        text = self.cleaned_data["filters"].strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError as error:
            raise forms.ValidationError(f"This is not JSON: {error}") from error

    def clean_date_offset_days(self):
        value = self.cleaned_data["date_offset_days"]
        return 0 if value is None else value

    def definition(self) -> dict:
        """Return the campaign's definition with the posted settings (the workflow as saved)."""
        data = self.cleaned_data
        out = copy.deepcopy(self.campaign.definition)
        kind = self.kind
        if kind == "segments":
            out["trigger"] = {"segments": {"match": data["match"] or "all", "segments": [
                {"id": row["id"], "in": row["in"]} for row in self.chosen_segments()]}}
        elif kind == "event":
            out["trigger"] = {"event": {
                "name": data["event_name"].strip() or None,
                "filters": [filter_condition(row["field"], row["operator"], row["value"])
                            for row in self.filter_rows]}}
        elif kind == "date":
            out["trigger"] = {"date": {
                "attribute": data["date_attribute"].strip() or None,
                "recurrence": data["date_recurrence"] or "once",
                "offset_days": data["date_offset_days"],
                "time": data["date_time"].strip() or "09:00",
                "timezone": data["date_timezone"].strip() or "UTC",
                "fallback_timezone": data["date_fallback_timezone"].strip() or "UTC"}}
        elif kind == "form":
            out["trigger"] = {"form": {"id": data["form_id"].strip() or None}}
        if kind in DATA_TRIGGERS:
            return out  # data campaigns have no filters, frequency, goal or exit to set
        out["filters"] = data["filters"] if self.filters_as_json else self.builder.tree()
        mode = data.get("frequency_mode")
        if mode:
            out["frequency"] = {"mode": mode}
            if mode == "interval":
                out["frequency"]["days"] = data["frequency_days"]
            if mode == "at_most_once":
                out["frequency"]["hours"] = data["frequency_hours"]
        goal_kind = data["goal_kind"]
        if not goal_kind:
            out["goal"] = None
        else:
            out["goal"] = {"within_days": data["goal_within_days"] or 7}
            if goal_kind == "event":
                out["goal"]["event"] = {"name": data["goal_event"].strip(), "filters": [
                    filter_condition(row["field"], row["operator"], row["value"])
                    for row in self.goal_filter_rows]}
            else:
                out["goal"][goal_kind] = data["goal_segment"]
        out["exit"] = data["exit"] or out["exit"]
        if "grace_period_hours" in self.fields:
            out["grace_period"] = {"hours": data["grace_period_hours"] or 0}
        out["send_to_unsubscribed"] = data["send_to_unsubscribed"]
        return out

    # --- problems -----------------------------------------------------------------------

    def add_problems(self, problems: list[Problem]) -> None:
        """Put each of the validator's problems beside the field or row it names."""
        in_rows = []
        for problem in problems:
            if not self.filters_as_json and (problem.place == "filters"
                                             or problem.place.startswith("filters.")):
                in_rows.append((problem.place.removeprefix("filters").removeprefix(".")
                                or "(root)", problem.message))
                continue
            row = _ROW_PLACE.match(problem.place)
            if row:
                rows = {"trigger.segments.segments": self.chosen_segments(),
                        "trigger.event.filters": self.filter_rows,
                        "goal.event.filters": self.goal_filter_rows}[row.group(1)]
                index = int(row.group(2))
                if index < len(rows):
                    rows[index]["errors"].append(problem.message)
                    continue
            field = field_for(problem.place, self.kind)
            if field in self.row_errors:
                self.row_errors[field].append(problem.message)
            elif field in self.fields:
                self.add_error(field, f"{problem.message} ({problem.place})"
                               if problem.place != PLACES.get(field) else problem.message)
            else:
                self.add_error(None, f"{problem.place}: {problem.message}")
        if in_rows:
            self.builder.tree()  # gives every row its place in the tree
            self.builder.place(in_rows)


def _grace_seconds(definition: dict) -> int:
    grace = definition.get("grace_period") or {}
    units = {"days": 86_400, "hours": 3_600, "minutes": 60, "seconds": 1}
    return sum(grace.get(unit, 0) * seconds for unit, seconds in units.items())


def _unwrapped(tree: dict | None) -> dict | None:
    """Return the builder's tree as it would be written by hand: one condition unwrapped."""
    if tree and list(tree) == ["and"] and len(tree["and"]) == 1:
        return tree["and"][0]
    return tree


# Where a settings field's value goes in the definition.
PLACES = {
    "match": "trigger.segments.match",
    "event_name": "trigger.event.name",
    "form_id": "trigger.form.id",
    "filters": "filters",
    "exit": "exit",
    "send_to_unsubscribed": "send_to_unsubscribed",
    "grace_period_hours": "grace_period",
    **{f"date_{key}": f"trigger.date.{key}" for key in (
        "attribute", "recurrence", "offset_days", "time", "timezone", "fallback_timezone")},
}


def field_for(place: str, kind: str) -> str | None:
    """Return the settings field that edits a definition's ``place`` (None: none does)."""
    for field, prefix in PLACES.items():
        if place == prefix or place.startswith(prefix + ".") or place.startswith(prefix + "["):
            return field
    if place.startswith("trigger.segments"):
        return "segments"
    if place.startswith("trigger.event.filters"):
        return "event_filters"
    if place.startswith("frequency"):
        return {"frequency.days": "frequency_days",
                "frequency.hours": "frequency_hours"}.get(place, "frequency_mode")
    if place.startswith("goal"):
        if place == "goal.within_days":
            return "goal_within_days"
        if place.startswith("goal.event.filters"):
            return "goal_filters"
        if place.startswith("goal.event"):
            return "goal_event"
        if place.startswith(("goal.enters_segment", "goal.leaves_segment")):
            return "goal_segment"
        return "goal_kind"
    return None


# --- actions ---------------------------------------------------------------------------


class StartForm(forms.Form):
    """Start (or restart) now or at a time, for current people and future additions or not."""

    audience = forms.ChoiceField(
        widget=forms.RadioSelect, initial=Audience.CURRENT_AND_FUTURE,
        choices=[(Audience.CURRENT_AND_FUTURE, "Current people and future additions"),
                 (Audience.FUTURE_ONLY, "Future additions only")])
    when = forms.ChoiceField(widget=forms.RadioSelect, initial="now",
                             choices=[("now", "Start now"), ("later", "Start at a set time")])
    starts_at = forms.DateTimeField(
        required=False, label="Start at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"])

    def __init__(self, *args, zone: str = "UTC", **kwargs):
        super().__init__(*args, **kwargs)
        self.zone = zone
        self.fields["starts_at"].help_text = f"In the workspace's time zone, {zone}"

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("when") == "later":
            at = cleaned.get("starts_at")
            if at is None:
                self.add_error("starts_at", "Choose when the campaign starts.")
                return cleaned
            if timezone.is_naive(at):
                at = datetime.combine(at.date(), at.time(), tzinfo=ZoneInfo(self.zone))
            if at <= timezone.now():
                self.add_error("starts_at", "Choose a time in the future.")
            cleaned["starts_at"] = at
        return cleaned


class StopForm(forms.Form):
    journeys = forms.ChoiceField(widget=forms.RadioSelect, initial="exit", choices=[
        ("exit", "Force people to exit immediately"),
        ("finish", "Let people finish their journey (the campaign is “Stopping” until the "
                   "last one has)")])


class DeleteForm(forms.Form):
    """Confirm deleting a campaign by typing its exact name."""

    name = forms.CharField(label="Type the campaign's name to confirm", max_length=255)

    def __init__(self, *args, campaign: Campaign, **kwargs):
        super().__init__(*args, **kwargs)
        self.campaign = campaign
        self.fields["name"].widget.attrs.update(autocomplete="off", spellcheck="false")

    def clean_name(self):
        name = self.cleaned_data["name"]
        if name.strip() != self.campaign.name.strip():
            raise forms.ValidationError(
                "That is not this campaign's name, so nothing was deleted. "
                "Type it exactly as shown, capitals included.")
        return name


# Re-exported for the settings template's filter rows.
FILTER_OPERATORS = ATTRIBUTE_OPERATOR_CHOICES
