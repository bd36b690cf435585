"""The visual workflow editor: the canvas page, one small request per edit, step settings.

Every edit posts the version of the campaign the canvas showed and answers with the
canvas re-rendered (``workflow.html#canvas``). An edit against an older version is
refused with HTTP 409 and the canvas as it is now, so two tabs never overwrite each
other; a refused edit (a bad slot, a block into itself, a definition the validator
refuses) answers 400 or 422 with the canvas and the reason. Viewers and archived
campaigns get the canvas without edit controls, and 403 on edits.
"""

import json
import re
import uuid
from dataclasses import dataclass, field

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import reswap, retarget

from campaigns import definition as definitions
from campaigns import editing, liquid, metrics, webhooks
from campaigns.editor_forms import TYPE_LABELS, settings_form
from campaigns.models import Campaign
from campaigns.services import CampaignStateError, StaleEdit
from engage.workspaces import role_required
from people.models import Event, Person
from segments import builder_forms

TEMPLATE = "campaigns/editor/workflow.html"
STEP_TYPES = list(TYPE_LABELS.items())
STEP_PLACE = re.compile(r"^workflow\.steps\[\d+\](?:\.paths\[\d+\]\.steps\[\d+\])*")
STALE = ("This workflow changed since you opened it (in another tab, or someone else "
         "edited it): this is it as it is now. Make your change again if it still applies.")
PATH_LABELS = {"true": "Yes", "false": "No", "met": "Condition met", "max_time": "Time ran out"}
WEEKDAY_RANGE = ", ".join(definitions.WEEKDAYS[:5])


@dataclass
class Lane:
    key: str
    label: str
    entries: list  # the cards, with a slot before, between and after them when editable


@dataclass(frozen=True)
class Place:
    """A slot of the canvas: where a step can be added or dropped."""

    index: int
    is_slot: bool = True


@dataclass
class Card:
    step: dict
    label: str
    summary: str
    problems: list
    lanes: list = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.step["id"]

    @property
    def type(self) -> str:
        return self.step["type"]


# --- reading the canvas ------------------------------------------------------------------


def _duration_text(value: dict | None) -> str:
    if not value:
        return ""
    parts = [f"{value[unit]} {unit if value[unit] != 1 else unit[:-1]}"
             for unit in definitions.DURATION_UNITS if value.get(unit)]
    return " ".join(parts)


def describe(step: dict) -> str:
    """Return a short summary of a step's settings for its card."""
    kind = step["type"]
    if kind == "email":
        return step.get("subject") or ""
    if kind == "delay":
        text = _duration_text(step.get("duration"))
        return f"Wait {text}" if text else ""
    if kind == "webhook":
        return f"{step['method']} {step['url']}" if step.get("url") else step["method"]
    if kind == "time_window":
        days = ", ".join(step["days"]) if isinstance(step["days"], list) else ""
        days = "weekdays" if days == WEEKDAY_RANGE else days
        return f"{days} {step['start']}–{step['end']}"
    if kind == "wait_until":
        text = _duration_text(step.get("max"))
        return f"at most {text}" if text else ""
    if kind == "random_split":
        return " / ".join(f"{path['key']} {path['weight']}%" for path in step["paths"])
    if kind == "update_attributes":
        changes = list(step.get("set") or {})
        return ", ".join(changes + [f"−{name}" for name in step.get("unset") or []])
    if kind == "segment_membership":
        segment = step.get("segment")
        return f"{step['action']} · segment {segment}" if segment else step["action"]
    if kind == "create_event":
        return step.get("name") or ""
    if kind == "delete_person":
        return "and suppress" if step.get("suppress") else ""
    return ""


def _problems_by_step(campaign: Campaign) -> dict[str, list[str]]:
    """Return the unconfigured parts of the workflow, by step id (the validator's words)."""
    definition = campaign.definition
    places = {place: step["id"] for place, step in
              definitions.iter_steps(definition["workflow"]["steps"])}
    found: dict[str, list[str]] = {}
    for problem in definitions.unconfigured(definition, workspace=campaign.workspace):
        match = STEP_PLACE.match(problem.place)
        if match and match.group(0) in places:
            what = problem.place[match.end():].lstrip(".")
            found.setdefault(places[match.group(0)], []).append(
                f"{what}: {problem.message}" if what else problem.message)
    return found


def _entries(steps: list[dict], problems: dict, slots: bool) -> list:
    """Return the cards of a sequence, with the slots between them when ``slots``."""
    entries = [Place(0)] if slots else []
    for index, step in enumerate(steps, start=1):
        card = Card(step, TYPE_LABELS[step["type"]], step.get("name") or describe(step),
                    problems.get(step["id"], []))
        if step["type"] == "create_event":
            card.summary = describe(step)
        for path in step.get("paths") or []:
            label = PATH_LABELS.get(path["key"], path["key"])
            if "weight" in path:
                label = f"{path['key']} · {path['weight']}%"
            card.lanes.append(Lane(path["key"], label,
                                   _entries(path["steps"], problems, slots)))
        entries.append(card)
        if slots:
            entries.append(Place(index))
    return entries


def _editable(request, campaign: Campaign) -> bool:
    return request.membership.can_edit and campaign.state != Campaign.State.ARCHIVED


def _canvas_context(request, campaign: Campaign, **extra) -> dict:
    base = reverse("campaigns:workflow", kwargs={"pk": campaign.pk})
    editable = _editable(request, campaign)
    new_step_id = definitions.new_step_id()
    # What every slot's menu and every card's form repeat, rendered once: a 60-step
    # canvas has some 80 slots, and rendering 12 buttons in each cost most of the page.
    hidden = format_html('<input type="hidden" name="csrfmiddlewaretoken" value="{}">'
                         '<input type="hidden" name="version" value="{}">',
                         get_token(request), campaign.version)
    return {
        "campaign": campaign,
        "tab": "workflow",
        "editable": editable,
        "entries": _entries(campaign.definition["workflow"]["steps"],
                            _problems_by_step(campaign), editable),
        "step_types": STEP_TYPES,
        "new_step_id": new_step_id,
        "base_url": base,
        "hidden_fields": hidden,
        "add_fields": hidden + format_html(
            '<input type="hidden" name="step_id" value="{}">', new_step_id),
        "add_buttons": format_html_join("", '<button type="submit" name="type" '
                                        'value="{}">{}</button>', STEP_TYPES),
        "trigger": next(iter(campaign.definition["trigger"])),
        **extra,
    }


def _campaign(request, pk: int) -> Campaign:
    workspace = request.membership.workspace
    campaign = get_object_or_404(Campaign, pk=pk, workspace=workspace)
    campaign.workspace = workspace  # read already, with the membership
    return campaign


# --- the page ----------------------------------------------------------------------------


@role_required("viewer")
@require_GET
def figures(request, pk):
    """Each step's figures, swapped into the canvas's cards (a request of their own, so
    that the page and every edit stay quick however many journeys the campaign has)."""
    campaign = _campaign(request, pk)
    steps = [(step["id"], step["type"])
             for _, step in definitions.iter_steps(campaign.definition["workflow"]["steps"])]
    return render(request, f"{TEMPLATE}#figures", {
        "campaign": campaign, "steps": steps, "figures": metrics.step_metrics(campaign)})


@role_required("viewer")
@require_GET
def workflow(request, pk):
    campaign = _campaign(request, pk)
    context = _canvas_context(request, campaign)
    step_id = request.GET.get("step")
    if step_id:
        context.update(_panel_context(request, campaign, step_id))
    return render(request, TEMPLATE, context)


# --- edits -------------------------------------------------------------------------------


def _version(request) -> int:
    text = request.POST.get("version") or request.POST.get("page_version", "")
    return int(text) if text.isdigit() else 0


def _slot(request) -> editing.Slot:
    index = request.POST.get("index", "")
    if not index.isdigit():
        raise editing.EditError("the position to put the step at is missing")
    return editing.Slot(request.POST.get("parent") or None, request.POST.get("path") or None,
                        int(index))


def _removed_steps(request) -> str | None:
    choice = request.POST.get("removed_steps")
    return choice if choice in ("move_on", "exit") else None


def _edit(request, pk: int, apply, *, panel: str | None = None, focus: str = ""):
    """Run one edit (``apply(campaign, version)``) and answer with the canvas.

    ``panel`` names the step whose settings panel answers instead (the canvas goes along
    out of band); ``focus`` the step that keyboard focus goes to once it is shown.
    """
    campaign = _campaign(request, pk)
    if campaign.state == Campaign.State.ARCHIVED:
        raise PermissionDenied("an archived campaign is read-only: unarchive it to edit")
    status, message, form = 200, "", None
    try:
        campaign = apply(campaign, _version(request))
    except StaleEdit as stale:
        campaign, status, message = stale.campaign, 409, STALE
    except editing.PeopleWaiting as waiting:
        return _ask_about_people(request, campaign, waiting)
    except editing.EditError as error:
        status, message = 400, f"Not changed: {error}."
    except _FormInvalid as invalid:
        status, form = 422, invalid.form
    except definitions.DefinitionError as error:
        status = 422
        message = "Not saved: " + "; ".join(f"{problem.place}: {problem.message}"
                                            for problem in error.problems)
        form = getattr(error, "form", None)
    except CampaignStateError as error:
        campaign, status, message = _campaign(request, pk), 409, f"Not saved: {error}."
    if not request.htmx and form is not None:  # the page, with the form's errors
        context = _canvas_context(request, campaign, message=message)
        context.update(_panel_context(request, campaign, panel, form=form))
        return render(request, TEMPLATE, context, status=status)
    if not request.htmx:
        if message:
            messages.error(request, message)
        url = reverse("campaigns:workflow", kwargs={"pk": campaign.pk})
        return redirect(f"{url}?step={panel}" if panel else url)
    if panel is not None:
        context = _canvas_context(request, campaign, canvas_oob=True, message=message)
        context.update(_panel_context(request, campaign, panel, form=form,
                                      saved=status == 200))
        return render(request, f"{TEMPLATE}#settings-response", context, status=status)
    context = _canvas_context(request, campaign, message=message,
                              focus=focus if status == 200 else "")
    return render(request, f"{TEMPLATE}#canvas-response", context, status=status)


class _FormInvalid(Exception):  # noqa: N818 - control flow within this module
    def __init__(self, form):
        self.form = form


def _ask_about_people(request, campaign: Campaign, waiting: editing.PeopleWaiting):
    """Ask whether the people at the steps an edit removes move on or exit.

    HTMX gets the question as a dialog; without JavaScript it comes on the page.
    """
    question = {
        "count": waiting.count, "action": request.path,
        "fields": [(key, value) for key, value in request.POST.items()
                   if key not in ("removed_steps", "csrfmiddlewaretoken")]}
    if not request.htmx:
        return render(request, TEMPLATE, _canvas_context(request, campaign, asking=True,
                                                         **question))
    response = render(request, f"{TEMPLATE}#people-waiting", {
        "campaign": campaign, **question,
        "base_url": reverse("campaigns:workflow", kwargs={"pk": campaign.pk})})
    return reswap(retarget(response, "#editor-dialog"), "innerHTML")


@role_required("editor")
@require_POST
def step_add(request, pk):
    return _edit(request, pk, lambda campaign, version: editing.add(
        campaign, kind=request.POST.get("type", ""), slot=_slot(request),
        step_id=request.POST.get("step_id", ""), version=version),
        focus=request.POST.get("step_id", ""))


@role_required("editor")
@require_POST
def step_move(request, pk):
    return _edit(request, pk, lambda campaign, version: editing.move(
        campaign, step_id=request.POST.get("step", ""), slot=_slot(request), version=version),
        focus=request.POST.get("step", ""))


@role_required("editor")
@require_POST
def step_delete(request, pk):
    return _edit(request, pk, lambda campaign, version: editing.delete(
        campaign, step_id=request.POST.get("step", ""), version=version,
        removed_steps=_removed_steps(request)))


@role_required("editor")
@require_POST
def path_add(request, pk):
    return _edit(request, pk, lambda campaign, version: editing.add_split_path(
        campaign, step_id=request.POST.get("step", ""), version=version))


@role_required("editor")
@require_POST
def path_remove(request, pk):
    return _edit(request, pk, lambda campaign, version: editing.remove_split_path(
        campaign, step_id=request.POST.get("step", ""), key=request.POST.get("key", ""),
        version=version, removed_steps=_removed_steps(request)))


# --- step settings -----------------------------------------------------------------------


def _names_person(campaign: Campaign) -> bool:
    return campaign.trigger in definitions.DATA_TRIGGERS


def _manual_segments(campaign: Campaign, step: dict) -> list:
    if step["type"] != "segment_membership":
        return []
    from segments.models import Segment

    return list(Segment.objects.in_workspace(campaign.workspace_id).filter(
        kind=Segment.Kind.MANUAL).order_by("name", "pk").values_list("pk", "name"))


def _panel_context(request, campaign: Campaign, step_id: str, *, form=None,
                   saved: bool = False) -> dict:
    try:
        step = editing.find_step(campaign.definition["workflow"]["steps"], step_id)
    except editing.EditError:
        return {"panel_step": None}
    if form is None or saved:
        form = settings_form(step, names_person=_names_person(campaign),
                             segments=_manual_segments(campaign, step))
    conditions = {}
    if step["type"] in ("branch", "wait_until"):
        from segments.models import Segment

        conditions = {
            "form_action": reverse("campaigns:workflow-step",
                                   kwargs={"pk": campaign.pk, "step_id": step_id}),
            "segment_choices": [(str(pk), name) for pk, name in Segment.objects.in_workspace(
                campaign.workspace_id).order_by("name", "pk").values_list("pk", "name")],
            "attribute_operators": builder_forms.ATTRIBUTE_OPERATOR_CHOICES,
            "count_operators": builder_forms.COUNT_OPERATOR_CHOICES,
            "timestamp_units": builder_forms.TIMESTAMP_UNIT_CHOICES,
            "group_choices": builder_forms.GROUP_CHOICES,
            "addable_rows": list(builder_forms.row_kinds().items()),
        }
    return {**conditions,
            "panel_step": step, "panel_label": TYPE_LABELS[step["type"]], "form": form,
            "saved": saved,
            "base_url": reverse("campaigns:workflow", kwargs={"pk": campaign.pk}),
            "panel_url": reverse("campaigns:workflow-step",
                                 kwargs={"pk": campaign.pk, "step_id": step_id})}


@role_required("viewer")
@require_http_methods(["GET", "POST"])
def step_settings(request, pk, step_id):
    if request.method == "GET":
        campaign = _campaign(request, pk)
        if not request.htmx:  # the panel comes on the editor's page
            url = reverse("campaigns:workflow", kwargs={"pk": campaign.pk})
            return redirect(f"{url}?step={step_id}")
        context = {"campaign": campaign, "editable": _editable(request, campaign),
                   **_panel_context(request, campaign, step_id)}
        return render(request, f"{TEMPLATE}#panel", context)
    if not request.membership.can_edit:
        raise PermissionDenied("this needs the editor role")
    op = request.POST.get("op", "save")
    if op != "save":
        return _condition_rows(request, pk, step_id, op)

    def apply(campaign, version):
        step = editing.find_step(campaign.definition["workflow"]["steps"], step_id)
        form = settings_form(step, data=request.POST, names_person=_names_person(campaign),
                             segments=_manual_segments(campaign, step))
        if not form.is_valid():
            raise _FormInvalid(form)
        try:
            return editing.update(campaign, step_id=step_id, settings=form.settings(),
                                  version=version)
        except definitions.DefinitionError as error:
            _place_problems(campaign, step_id, form, error)
            error.form = form
            raise

    return _edit(request, pk, apply, panel=step_id)


def _condition_rows(request, pk: int, step_id: str, op: str):
    """Add or remove a row of a block's condition (nothing is saved until Save)."""
    campaign = _campaign(request, pk)
    try:
        step = editing.find_step(campaign.definition["workflow"]["steps"], step_id)
    except editing.EditError as error:
        raise Http404(str(error)) from None
    if step["type"] not in ("branch", "wait_until"):
        raise Http404("only a branch or a wait-until has a condition")
    form = settings_form(step, data=request.POST, names_person=_names_person(campaign))
    added = form.builder.apply(op)
    form.builder.renumber()
    context = {"campaign": campaign, "editable": True, "form": form,
               **_panel_context(request, campaign, step_id, form=form),
               "focus": added.id if added else None}
    return render(request, f"{TEMPLATE}#condition-builder", context)


def _place_problems(campaign: Campaign, step_id: str, form, error) -> None:
    """Put the validator's problems about this step beside the settings they are about."""
    steps = campaign.definition["workflow"]["steps"]
    place = next((place for place, step in definitions.iter_steps(steps)
                  if step["id"] == step_id), None)
    for problem in error.problems:
        if place and problem.place.startswith(place + "."):
            rest = problem.place[len(place) + 1:]
            field = re.split(r"[.\[]", rest)[0]
            form.place_problem(field, problem.message, rest[len(field):].lstrip("."))
        else:
            form.add_error(None, f"{problem.place}: {problem.message}")


# --- email preview -----------------------------------------------------------------------


def _preview_person(campaign: Campaign, text: str) -> Person | None:
    people = Person.objects.in_workspace(campaign.workspace_id)
    text = text.strip()
    if not text:
        return people.order_by("-pk").first()
    kind = "email" if "@" in text else "id"
    return (Person.objects.with_identifier(campaign.workspace, kind, text).first()
            or people.filter(cio_id=text).first())


def _preview_context(campaign: Campaign, person: Person | None) -> dict:
    customer = {}
    event = {}
    if person is not None:
        customer = {**person.attributes, "id": person.customer_id, "email": person.email,
                    "cio_id": person.cio_id}
        if campaign.trigger_event:
            latest = Event.objects.filter(workspace=campaign.workspace_id, person=person,
                                          name=campaign.trigger_event).order_by(
                "-timestamp").values_list("data", flat=True).first()
            event = latest or {}
    return {"customer": customer, "event": event, "trigger": {},
            "campaign": {"id": campaign.pk, "name": campaign.name}}


@role_required("viewer")
@require_POST
def email_preview(request, pk, step_id):
    """Render the posted email fields for a chosen person, or say where rendering fails."""
    campaign = _campaign(request, pk)
    person = _preview_person(campaign, request.POST.get("preview_person", ""))
    context = _preview_context(campaign, person)
    rendered, errors = {}, []
    for name, label in (("sender", "From"), ("to", "To"), ("subject", "Subject"),
                        ("body_html", "Body"), ("body_text", "Plain text body")):
        try:
            rendered[name] = liquid.render(request.POST.get(name, ""), context)
        except liquid.TemplateError as error:
            errors.append(f"{label}: {error}")
    return render(request, f"{TEMPLATE}#email-preview", {
        "person": person, "rendered": rendered, "errors": errors,
        "asked": request.POST.get("preview_person", "").strip()})


# --- webhook test request ----------------------------------------------------------------


def _shown_body(answer: webhooks.Answer) -> str:
    """Return the answer's body for display: indented when it is JSON, cut when long."""
    data = answer.json()
    if data is not None and len(answer.body) <= webhooks.DISPLAY_BYTES:
        return json.dumps(data, indent=2, ensure_ascii=False)
    return answer.body[:webhooks.DISPLAY_BYTES].decode("utf-8", errors="replace")


def _test_request(campaign: Campaign, step: dict, data) -> dict:
    """Render the posted webhook settings for a chosen person and send them once.

    The call goes through ``campaigns.webhooks`` (private addresses refused unless
    allowed, timeouts, the size cap). Nothing is stored: no delivery, no journey, and
    the response is not mapped into the person's attributes.
    """
    asked = data.get("preview_person", "").strip()
    person = _preview_person(campaign, asked)
    result = {"test_person": person, "test_asked": asked, "test_errors": [],
              "test_call": None, "test_answer": None}
    form = settings_form(step, data=data, names_person=_names_person(campaign))
    if not form.is_valid():
        result["test_errors"] = [
            f"{form.fields[name].label or name if name in form.fields else 'Settings'}: "
            f"{' '.join(errors)}" for name, errors in form.errors.items()]
        return result
    if asked and person is None:
        return result
    message = form.settings()
    if not message.get("url"):
        result["test_errors"] = ["URL: set the URL to call first"]
        return result
    context = {**_preview_context(campaign, person), "webhook": {}}
    try:
        call = webhooks.render_call(message, context, delivery_id=0,
                                    key=f"test-{uuid.uuid4()}")
    except webhooks.Unsendable as error:
        result["test_errors"] = [str(error)]
        return result
    answer = webhooks.send(call)
    result.update(test_call=call, test_answer=answer,
                  test_body=_shown_body(answer) if answer.status is not None else "",
                  test_cut=answer.truncated or len(answer.body) > webhooks.DISPLAY_BYTES)
    return result


@role_required("editor")
@require_POST
def webhook_test(request, pk, step_id):
    """Send a webhook step's request once, as its settings stand in the panel (saved or
    not), for a chosen person; show the answer's status, headers and body."""
    campaign = _campaign(request, pk)
    try:
        step = editing.find_step(campaign.definition["workflow"]["steps"], step_id)
    except editing.EditError as error:
        raise Http404(str(error)) from None
    if step["type"] != "webhook":
        raise Http404("only a webhook step sends a test request")
    result = _test_request(campaign, step, request.POST)
    if request.htmx:
        return render(request, f"{TEMPLATE}#webhook-test", result)
    # Without JavaScript: the editor's page, the panel as posted, the answer inside it.
    form = settings_form(step, data=request.POST, names_person=_names_person(campaign))
    form.is_valid()
    context = _canvas_context(request, campaign)
    context.update(_panel_context(request, campaign, step_id, form=form))
    context.update(result, tested=True)
    return render(request, TEMPLATE, context)
