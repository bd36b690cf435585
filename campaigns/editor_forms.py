"""The workflow editor's settings forms: one per step type, from a step and back.

Each form reads a step's fields (``initial_for``) and turns what was posted into the
settings that ``campaigns.editing.update_step`` takes (``settings``). Shapes are checked
here; what a step may hold is the definition validator's to say, and its problems come
back beside the fields they are about (``FIELD_OF``).
"""

import json

from django import forms

from campaigns import definition as definitions
from segments.builder_forms import Builder

SENDING_CHOICES = [("automatic", "Send automatically"), ("draft", "Queue a draft"),
                   ("off", "Do not send")]
UNSUBSCRIBED_CHOICES = [("", "As the campaign says"), ("yes", "Send to unsubscribed people"),
                        ("no", "Do not send to unsubscribed people")]
TYPE_LABELS = {
    "email": "Email", "delay": "Delay", "webhook": "Webhook", "time_window": "Time window",
    "branch": "True/false branch", "wait_until": "Wait until", "random_split": "Random split",
    "update_attributes": "Update attributes", "segment_membership": "Segment membership",
    "create_event": "Create event", "delete_person": "Delete person", "exit": "Exit",
}
# A step field's form field, where the names differ ("from" is a Python keyword).
FIELD_OF = {"from": "sender", "duration": "days", "max": "max_days", "paths": "weights"}


def _json(text: str, *, kinds: tuple, what: str):
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as error:
        raise forms.ValidationError(f"is not valid JSON: {error}") from None
    if not isinstance(value, kinds):
        raise forms.ValidationError(f"must be {what}")
    return value


def _dump(value) -> str:
    return "" if value in (None, {}, []) else json.dumps(value, indent=2, ensure_ascii=False)


class StepForm(forms.Form):
    name = forms.CharField(required=False, max_length=definitions.MAX_NAME,
                           label="Name on the canvas")
    person_kind = forms.ChoiceField(required=False, label="Acts on the person with",
                                    choices=[("", "—")] + [(kind, kind) for kind in
                                                           definitions.IDENTIFIER_KINDS])
    person_value = forms.CharField(required=False, label="Identifier (Liquid)",
                                   help_text="e.g. {{trigger.email}}")

    def __init__(self, *args, step: dict, names_person: bool, **kwargs):
        self.step = step
        super().__init__(*args, **kwargs)
        if not names_person or step["type"] not in definitions.PERSON_STEPS:
            del self.fields["person_kind"], self.fields["person_value"]

    @classmethod
    def initial_for(cls, step: dict) -> dict:
        initial = {"name": step.get("name") or ""}
        person = step.get("person")
        if person:
            ((initial["person_kind"], initial["person_value"]),) = person.items()
        return initial

    def settings(self) -> dict:
        data = self.cleaned_data
        settings = {"name": data.get("name", "")}
        if "person_kind" in self.fields:
            kind, value = data["person_kind"], data["person_value"].strip()
            settings["person"] = {kind: value} if kind and value else None
        return settings

    def place_problem(self, field: str, message: str, where: str = "") -> None:
        """Show a validator's problem about the step field ``field`` beside its input
        (``where``: the place inside the field, for a condition)."""
        name = FIELD_OF.get(field, field)
        self.add_error(name if name in self.fields else None,
                       message if name in self.fields else f"{field}: {message}")


def _duration_initial(prefix: str, value: dict | None) -> dict:
    return {f"{prefix}{unit}": (value or {}).get(unit) if value else None
            for unit in definitions.DURATION_UNITS}


def _duration(data: dict, prefix: str) -> dict | None:
    values = {unit: data.get(f"{prefix}{unit}") for unit in definitions.DURATION_UNITS}
    if all(value is None for value in values.values()):
        return None  # not set yet
    return {unit: value or 0 for unit, value in values.items()}


class EmailForm(StepForm):
    sender = forms.CharField(required=False, label="From", max_length=500)
    reply_to = forms.CharField(required=False, max_length=500)
    to = forms.CharField(required=False, max_length=500)
    subject = forms.CharField(required=False, max_length=1000)
    body_html = forms.CharField(required=False, label="Body (HTML, Liquid)",
                                widget=forms.Textarea(attrs={"rows": 10}))
    body_text = forms.CharField(required=False, label="Plain text body (optional)",
                                widget=forms.Textarea(attrs={"rows": 4}))
    sending = forms.ChoiceField(choices=SENDING_CHOICES)
    send_to_unsubscribed = forms.ChoiceField(required=False, choices=UNSUBSCRIBED_CHOICES)
    tracking = forms.BooleanField(required=False, label="Track opens and clicks")

    @classmethod
    def initial_for(cls, step):
        unsubscribed = {None: "", True: "yes", False: "no"}[step.get("send_to_unsubscribed")]
        return {**super().initial_for(step), "sender": step.get("from") or "",
                "reply_to": step.get("reply_to") or "", "to": step.get("to") or "",
                "subject": step.get("subject") or "", "body_html": step.get("body_html") or "",
                "body_text": step.get("body_text") or "", "sending": step["sending"],
                "send_to_unsubscribed": unsubscribed, "tracking": step["tracking"]}

    def settings(self):
        data = self.cleaned_data
        return {**super().settings(), "from": data["sender"] or None,
                "reply_to": data["reply_to"] or None, "to": data["to"] or None,
                "subject": data["subject"] or None, "body_html": data["body_html"] or None,
                "body_text": data["body_text"] or None, "sending": data["sending"],
                "send_to_unsubscribed": {"": None, "yes": True, "no": False}[
                    data["send_to_unsubscribed"]],
                "tracking": data["tracking"]}


class DelayForm(StepForm):
    days = forms.IntegerField(required=False, min_value=0)
    hours = forms.IntegerField(required=False, min_value=0)
    minutes = forms.IntegerField(required=False, min_value=0)
    seconds = forms.IntegerField(required=False, min_value=0)

    @classmethod
    def initial_for(cls, step):
        return {**super().initial_for(step), **_duration_initial("", step.get("duration"))}

    def settings(self):
        return {**super().settings(), "duration": _duration(self.cleaned_data, "")}


class WebhookForm(StepForm):
    method = forms.ChoiceField(choices=[(method, method) for method in definitions.METHODS])
    url = forms.CharField(required=False, label="URL (Liquid)", max_length=2000)
    headers = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                              help_text="One per line: Name: value")
    body = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 6}),
                           help_text="JSON (an object or a list) or text; Liquid inside")
    response = forms.CharField(required=False, label="Response mapping",
                               widget=forms.Textarea(attrs={"rows": 3}),
                               help_text="One per line: response path = attribute")
    sending = forms.ChoiceField(choices=SENDING_CHOICES)

    @classmethod
    def initial_for(cls, step):
        body = step.get("body")
        return {**super().initial_for(step), "method": step["method"],
                "url": step.get("url") or "",
                "headers": "\n".join(f"{name}: {value}" for name, value in
                                     (step.get("headers") or {}).items()),
                "body": body if isinstance(body, str) else _dump(body),
                "response": "\n".join(f"{item['path']} = {item['attribute']}"
                                      for item in step.get("response") or []),
                "sending": step["sending"]}

    def clean_headers(self):
        headers = {}
        for line in self.cleaned_data["headers"].splitlines():
            if not line.strip():
                continue
            name, colon, value = line.partition(":")
            if not colon or not name.strip():
                raise forms.ValidationError(f"'{line}' is not a header: write Name: value")
            headers[name.strip()] = value.strip()
        return headers

    def clean_response(self):
        mapping = []
        for line in self.cleaned_data["response"].splitlines():
            if not line.strip():
                continue
            path, equals, attribute = line.partition("=")
            if not equals or not path.strip() or not attribute.strip():
                raise forms.ValidationError(f"'{line}' is not a mapping: write path = "
                                            "attribute")
            mapping.append({"path": path.strip(), "attribute": attribute.strip()})
        return mapping

    def clean_body(self):
        text = self.cleaned_data["body"]
        if not text.strip():
            return None
        if text.lstrip()[:1] in "{[":
            try:
                return json.loads(text)
            except ValueError:
                return text  # text that happens to start with a bracket (Liquid, say)
        return text

    def settings(self):
        data = self.cleaned_data
        return {**super().settings(), "method": data["method"], "url": data["url"] or None,
                "headers": data["headers"], "body": data["body"],
                "response": data["response"], "sending": data["sending"]}


class TimeWindowForm(StepForm):
    days = forms.MultipleChoiceField(choices=[(day, day.title()) for day in
                                              definitions.WEEKDAYS],
                                     widget=forms.CheckboxSelectMultiple)
    start = forms.CharField(max_length=5, help_text="HH:MM")
    end = forms.CharField(max_length=5, help_text="HH:MM")
    timezone = forms.CharField(max_length=100,
                               help_text="\"person\" for the person's own, or an IANA name")
    fallback_timezone = forms.CharField(max_length=100)

    @classmethod
    def initial_for(cls, step):
        return {**super().initial_for(step),
                **{key: step[key] for key in ("days", "start", "end", "timezone",
                                              "fallback_timezone")}}

    def settings(self):
        data = self.cleaned_data
        return {**super().settings(), **{key: data[key] for key in (
            "days", "start", "end", "timezone", "fallback_timezone")}}


class ConditionForm(StepForm):
    """A block's condition, in the segment builder's rows (``segments.builder_forms``)."""

    def __init__(self, data=None, *, step, **kwargs):
        super().__init__(data, step=step, **kwargs)
        self.builder = (Builder.from_post(data) if data is not None
                        else Builder.from_tree(step.get("condition")))

    def settings(self):
        return {**super().settings(), "condition": self.builder.tree()}

    def place_problem(self, field: str, message: str, where: str = "") -> None:
        if field != "condition":
            return super().place_problem(field, message)
        self.builder.tree()  # gives every row its place in the tree
        self.builder.place([(where or "(root)", message)])
        self.add_error(None, "The condition has problems: see beside its rows.")
        return None


class WaitUntilForm(ConditionForm):
    max_days = forms.IntegerField(required=False, min_value=0, label="At most, days")
    max_hours = forms.IntegerField(required=False, min_value=0, label="hours")
    max_minutes = forms.IntegerField(required=False, min_value=0, label="minutes")
    max_seconds = forms.IntegerField(required=False, min_value=0, label="seconds")

    @classmethod
    def initial_for(cls, step):
        return {**super().initial_for(step), **_duration_initial("max_", step.get("max"))}

    def settings(self):
        return {**super().settings(), "max": _duration(self.cleaned_data, "max_")}


class RandomSplitForm(StepForm):
    def __init__(self, *args, step, **kwargs):
        super().__init__(*args, step=step, **kwargs)
        for path in step["paths"]:
            self.fields[f"weight_{path['key']}"] = forms.IntegerField(
                min_value=1, max_value=100, label=f"Path {path['key']} (%)")

    @classmethod
    def initial_for(cls, step):
        return {**super().initial_for(step),
                **{f"weight_{path['key']}": path["weight"] for path in step["paths"]}}

    def settings(self):
        return {**super().settings(), "weights": {
            path["key"]: self.cleaned_data[f"weight_{path['key']}"]
            for path in self.step["paths"]}}


class UpdateAttributesForm(StepForm):
    set = forms.CharField(required=False, label="Set (JSON object; Liquid in values)",
                          widget=forms.Textarea(attrs={"rows": 5}))
    unset = forms.CharField(required=False, label="Remove (attribute names, comma separated)")

    @classmethod
    def initial_for(cls, step):
        return {**super().initial_for(step), "set": _dump(step.get("set")),
                "unset": ", ".join(step.get("unset") or [])}

    def clean_set(self):
        return _json(self.cleaned_data["set"], kinds=(dict,), what="a JSON object") or {}

    def clean_unset(self):
        return [name.strip() for name in self.cleaned_data["unset"].split(",") if name.strip()]

    def settings(self):
        data = self.cleaned_data
        return {**super().settings(), "set": data["set"], "unset": data["unset"]}


class SegmentMembershipForm(StepForm):
    action = forms.ChoiceField(choices=[("add", "Add to"), ("remove", "Remove from")])
    segment = forms.TypedChoiceField(required=False, coerce=int, empty_value=None,
                                     label="Manual segment")

    def __init__(self, *args, segments=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["segment"].choices = [("", "Choose a manual segment")] + [
            (str(pk), name) for pk, name in segments]

    @classmethod
    def initial_for(cls, step):
        return {**super().initial_for(step), "action": step["action"],
                "segment": step.get("segment")}

    def settings(self):
        data = self.cleaned_data
        return {**super().settings(), "action": data["action"], "segment": data["segment"]}


class CreateEventForm(StepForm):
    # A create_event step's ``name`` is the event's name.
    name = forms.CharField(required=False, label="Event name",
                           max_length=definitions.MAX_EVENT_NAME_BYTES)
    data = forms.CharField(required=False, label="Data (JSON object; Liquid in values)",
                           widget=forms.Textarea(attrs={"rows": 5}))

    @classmethod
    def initial_for(cls, step):
        return {**super().initial_for(step), "data": _dump(step.get("data"))}

    def clean_data(self):
        return _json(self.cleaned_data["data"], kinds=(dict,), what="a JSON object") or {}

    def settings(self):
        settings = {**super().settings(), "data": self.cleaned_data["data"]}
        settings["name"] = settings["name"] or None
        return settings


class DeletePersonForm(StepForm):
    suppress = forms.BooleanField(required=False,
                                  label="Suppress too: never store their identifiers again")

    @classmethod
    def initial_for(cls, step):
        return {**super().initial_for(step), "suppress": step["suppress"]}

    def settings(self):
        return {**super().settings(), "suppress": self.cleaned_data["suppress"]}


FORMS: dict[str, type[StepForm]] = {
    "email": EmailForm, "delay": DelayForm, "webhook": WebhookForm,
    "time_window": TimeWindowForm, "branch": ConditionForm, "wait_until": WaitUntilForm,
    "random_split": RandomSplitForm, "update_attributes": UpdateAttributesForm,
    "segment_membership": SegmentMembershipForm, "create_event": CreateEventForm,
    "delete_person": DeletePersonForm, "exit": StepForm,
}


def settings_form(step: dict, *, data=None, names_person: bool = False,
                  segments=()) -> StepForm:
    """Return the settings form of ``step``: bound to ``data`` when posted."""
    form_class = FORMS[step["type"]]
    extra = {"segments": segments} if form_class is SegmentMembershipForm else {}
    return form_class(data, step=step, names_person=names_person,
                      initial=form_class.initial_for(step), **extra)
