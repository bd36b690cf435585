"""Campaign pages: the list, creating a campaign, its trigger settings with previews, the
review of what keeps it from starting, and the "Campaign actions" (start, stop, restart,
archive, unarchive, delete) in dialogs.

Every write goes through ``campaigns.services``; settings are saved against the
definition's version, so a stale form is refused rather than overwriting someone's edit.
"""

import json
import re
from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from campaigns import dates, metrics, services
from campaigns.definition import DefinitionError, Problem, validate
from campaigns.forms import (
    EXIT_CHOICES,
    FILTER_OPERATORS,
    FREQUENCY_CHANGES,
    CampaignCreateForm,
    DeleteForm,
    SettingsForm,
    StartForm,
    StopForm,
    field_for,
)
from campaigns.models import Campaign, Delivery, Journey
from campaigns.segment_triggers import trigger_tree
from campaigns.triggers import webhook_token
from engage.pages import (
    capped_count,
    htmx_redirect,
    keyset_page,
    new_submit_token,
    remember_job,
    safe_back,
    started_job,
    swaps_a_partial,
)
from engage.workspaces import role_required
from people.models import Event
from segments import conditions, operations
from segments.builder_forms import (
    ATTRIBUTE_OPERATOR_CHOICES,
    COUNT_OPERATOR_CHOICES,
    GROUP_CHOICES,
    TIMESTAMP_UNIT_CHOICES,
    row_kinds,
)
from segments.models import Segment

# One lifecycle change per confirmed dialog: a double submit finds its token used.
ACTION_TOKENS = "campaign_action_tokens"
LIST_SIZE = 50  # campaigns a page of the list, newest first
RECENT_EVENTS = 1000  # the newest events read for the event picker's names
SAMPLE = 5
_STEP_PLACE = re.compile(r"steps\[(\d+)\]|paths\[(\d+)\]")


def _campaign(request, pk) -> Campaign:
    return get_object_or_404(Campaign.objects.in_workspace(request.membership.workspace),
                             pk=pk)


# --- words ------------------------------------------------------------------------------


def trigger_words(definition: dict, segment_names: dict[int, str]) -> str:
    """Return what triggers a campaign, in words."""
    ((kind, body),) = definition["trigger"].items()
    if kind == "segments":
        chosen = body.get("segments") or []
        if not chosen:
            return "They meet conditions (no segment chosen yet)"
        names = [("" if item["in"] else "not in ")
                 + segment_names.get(item["id"], f"segment {item['id']}") for item in chosen]
        joiner = " and " if body.get("match", "all") == "all" else " or "
        return "People in " + joiner.join(names)
    if kind == "event":
        name = body.get("name")
        return f"They perform {name}" if name else "They perform an event (none chosen yet)"
    if kind == "date":
        attribute = body.get("attribute")
        if not attribute:
            return "A particular date (no attribute chosen yet)"
        offset = body.get("offset_days", 0)
        when = ("on" if not offset else f"{abs(offset)} day{'s' if abs(offset) != 1 else ''} "
                + ("before" if offset < 0 else "after"))
        recurrence = {"once": "once", "monthly": "every month",
                      "yearly": "every year"}[body.get("recurrence", "once")]
        return f"{when} {attribute}, {recurrence}, at {body.get('time', '09:00')}"
    if kind == "form":
        form_id = body.get("id")
        return f"They fill out the form {form_id}" if form_id else "They fill out a form"
    return Campaign.Trigger(kind).label


def _segment_names(workspace, definitions) -> dict[int, str]:
    ids = set()
    for definition in definitions:
        ids |= services.segment_ids(definition)
    if not ids:
        return {}
    return dict(Segment.objects.in_workspace(workspace).filter(pk__in=ids)
                .values_list("pk", "name"))


# --- the list ---------------------------------------------------------------------------


@role_required("viewer")
def campaign_list(request):
    """Active or archived campaigns with their trigger, people in them now, sent, converted.

    A fixed number of queries for the page: the campaigns, one grouped query of their
    journeys, one of their sent deliveries and one of the segments they name.
    """
    workspace = request.membership.workspace
    archived = request.GET.get("tab") == "archived"
    rows = Campaign.objects.in_workspace(workspace)
    rows = (rows.filter(state=Campaign.State.ARCHIVED) if archived
            else rows.exclude(state=Campaign.State.ARCHIVED))
    before = request.GET.get("before", "")
    campaigns, next_before = keyset_page(rows, size=LIST_SIZE,
                                         before=int(before) if before.isdigit() else None)
    ids = [campaign.pk for campaign in campaigns]
    totals = metrics.journey_totals(ids) if ids else {}
    sent = dict(Delivery.objects.filter(campaign_id__in=ids, state=Delivery.State.SENT)
                .order_by().values("campaign_id").annotate(sent=Count("pk"))
                .values_list("campaign_id", "sent")) if ids else {}
    names = _segment_names(workspace, [campaign.definition for campaign in campaigns])
    for campaign in campaigns:
        campaign.trigger_words = trigger_words(campaign.definition, names)
        campaign.figures = {**totals.get(campaign.pk, {}), "sent": sent.get(campaign.pk, 0)}
    return render(request, "campaigns/campaign_list.html", {
        "campaigns": campaigns, "archived": archived, "next_before": next_before,
    })


# --- create -----------------------------------------------------------------------------


@role_required("editor")
@require_http_methods(["GET", "POST"])
def campaign_create(request):
    """Name a campaign and choose its trigger; it is created as a draft, then set up."""
    form = CampaignCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            campaign = services.create_campaign(request.membership.workspace, form.definition())
        except DefinitionError as error:
            form.add_problems(error.problems)
        else:
            messages.success(request, f"Created the draft “{campaign.name}”: now set up "
                                      "its trigger.")
            return redirect("campaigns:settings", pk=campaign.pk)
    status = 400 if form.is_bound else 200
    return render(request, "campaigns/campaign_form.html", {"form": form}, status=status)


# --- settings ---------------------------------------------------------------------------


def _segment_choices(workspace) -> list:
    """Return the workspace's segments with their member counts (capped), in one query."""
    return list(operations.with_member_counts(Segment.objects.in_workspace(workspace))
                .order_by("name", "pk").values("pk", "name", "archived", "member_count"))


@role_required("viewer")
@require_http_methods(["GET", "POST"])
def campaign_settings(request, pk):
    """The trigger, filters, frequency, goal and exit, saved against the version shown.

    Posting ``op`` other than "save" re-renders the form as posted (add a segment row,
    add an occurrence's data as a filter, refresh the previews) without saving.
    """
    campaign = _campaign(request, pk)
    workspace = request.membership.workspace
    segments = _segment_choices(workspace)
    choices = [(str(row["pk"]), row["name"]) for row in segments]
    status, stale = 200, None
    if request.method == "POST":
        if not request.membership.can_edit:
            raise PermissionDenied("this needs the editor role")
        form = SettingsForm(request.POST, campaign=campaign, segment_choices=choices)
        op = request.POST.get("op", "save")
        if op == "add-segment":
            form.segment_rows.append({"id": "", "in": True, "errors": []})
        elif op.startswith("filter:"):
            try:
                key, item = json.loads(op.removeprefix("filter:"))
            except (ValueError, TypeError):
                key, item = "", ""
            if isinstance(key, str) and key:
                form.add_filter(key, item)
        elif op.startswith(("add:", "remove:")):  # the filters' rows (the segment builder's)
            form.builder.apply(op)
            form.builder.renumber()
        elif op == "save":
            saved = _save_settings(campaign, form)
            if isinstance(saved, Campaign):
                messages.success(request, f"Saved the settings of “{saved.name}”.")
                return redirect("campaigns:settings", pk=campaign.pk)
            if saved is not None:  # refused as stale: the fresh form, and why
                stale, campaign = saved, saved.campaign
                form = SettingsForm(campaign=campaign, segment_choices=choices)
                status = 409
            else:
                status = 400
    else:
        form = SettingsForm(campaign=campaign, segment_choices=choices)
    context = {
        "campaign": campaign, "tab": "settings", "form": form, "stale": stale,
        "segments": segments, "filter_operators": FILTER_OPERATORS,
        **_builder_context(campaign, segments),
        "frequency_changes": FREQUENCY_CHANGES,
        "editable": request.membership.can_edit and campaign.state != Campaign.State.ARCHIVED,
        **_previews(workspace, campaign, form, can_edit=request.membership.can_edit),
    }
    if swaps_a_partial(request):
        # The filters' rows swap themselves; everything else swaps the whole form.
        part = "filters-builder" if request.htmx.target == "builder" else "settings-form"
        return render(request, f"campaigns/campaign_settings.html#{part}", context)
    return render(request, "campaigns/campaign_settings.html", context, status=status)


def _builder_context(campaign: Campaign, segments: list) -> dict:
    """Return what the segment builder's rows need, for the campaign's filters."""
    engagement_note = ""
    if conditions.node_kind("engagement") is None:
        engagement_note = "Engagement conditions are not available yet."
    return {
        "form_action": reverse("campaigns:settings", args=[campaign.pk]),
        "segment_choices": [(str(row["pk"]), f"{row['name']} (archived)" if row["archived"]
                             else row["name"]) for row in segments],
        "attribute_operators": ATTRIBUTE_OPERATOR_CHOICES,
        "count_operators": COUNT_OPERATOR_CHOICES,
        "timestamp_units": TIMESTAMP_UNIT_CHOICES,
        "group_choices": GROUP_CHOICES,
        "addable_rows": list(row_kinds().items()),
        "engagement_note": engagement_note,
    }


def _save_settings(campaign: Campaign, form: SettingsForm):
    """Save the form; return the campaign, a StaleEdit, or None (problems on the form)."""
    if not form.is_valid():
        return None
    try:
        return services.update_campaign(campaign, form.definition(),
                                        version=form.cleaned_data["version"])
    except services.StaleEdit as stale:
        return stale
    except DefinitionError as error:
        form.add_problems(error.problems)
    except services.CampaignStateError as error:
        form.add_error(None, str(error))
    return None


def _previews(workspace, campaign: Campaign, form: SettingsForm, *, can_edit: bool) -> dict:
    """Return what the trigger's previews show, from the values on the form."""
    kind = campaign.trigger
    value = (lambda name: form.data.get(name, "")) if form.is_bound else (
        lambda name: form.initial.get(name) or "")
    if kind == "segments":
        return {"trigger_matches": _trigger_matches(workspace, form)}
    if kind == "event":
        return _event_preview(workspace, str(value("event_name")).strip())
    if kind == "date":
        return {"date_preview": _date_preview(workspace, form, value)}
    if kind == "webhook":  # the URL's secret is made the first time an editor looks
        return {"webhook_token": webhook_token(campaign) if can_edit
                else campaign.webhook_token}
    return {}


def _trigger_matches(workspace, form: SettingsForm) -> dict | None:
    """Return how many people the segments chosen on the form hold together now (capped)."""
    rows = [row for row in form.segment_rows if isinstance(row["id"], int)]
    if not rows:
        return None
    match = (form.data.get("match") if form.is_bound else form.initial.get("match")) or "all"
    tree = trigger_tree({"trigger": {"segments": {
        "match": match if match in ("all", "any") else "all",
        "segments": [{"id": row["id"], "in": row["in"]} for row in rows]}}})
    try:
        conditions.validate(tree, workspace=workspace)
    except conditions.ConditionError:
        return None
    count, more = capped_count(conditions.matching_people(workspace, tree))
    return {"count": count, "more": more}


def _event_preview(workspace, name: str) -> dict:
    """Return the workspace's recent event names, and a few recent occurrences of ``name``."""
    recent = (Event.objects.filter(workspace=workspace).order_by("-timestamp")
              .values_list("name", flat=True)[:RECENT_EVENTS])
    names = list(dict.fromkeys(recent))
    occurrences = []
    if name:
        since = timezone.now() - timedelta(days=30)
        occurrences = list(Event.objects.filter(workspace=workspace, name=name,
                                                timestamp__gte=since)
                           .select_related("person").order_by("-timestamp")[:SAMPLE])
        for occurrence in occurrences:
            data = occurrence.data if isinstance(occurrence.data, dict) else {}
            occurrence.pairs = [(key, item) for key, item in data.items()
                                if isinstance(item, str | int | float | bool)][:10]
    return {"event_names": sorted(names), "occurrences": occurrences}


def _date_preview(workspace, form: SettingsForm, value) -> dict | None:
    """Return the next fire times of the date trigger on the form for a few real people."""
    attribute = str(value("date_attribute")).strip()
    if not attribute:
        return None
    try:
        at = str(value("date_time") or "09:00")
        trigger = dates.DateTrigger.from_definition({
            "attribute": attribute,
            "recurrence": value("date_recurrence") or "once",
            "offset_days": int(value("date_offset_days") or 0),
            "time": at, "timezone": str(value("date_timezone") or "UTC"),
            "fallback_timezone": str(value("date_fallback_timezone") or "UTC")})
        dates.parse_path(attribute)
        dates.zone(trigger.fallback_timezone)
        if not trigger.per_person_zone:
            dates.zone(trigger.timezone)
    except (ValueError, KeyError, LookupError):
        return {"invalid": True}
    tree = {"attribute": {"field": attribute, "operator": "exists"}}
    try:
        people = list(conditions.matching_people(workspace, tree).order_by("-pk")[:SAMPLE])
    except conditions.ConditionError:
        return {"invalid": True}
    now = timezone.now()
    return {"people": [(person, dates.occurrence_for(trigger, person.attributes, now))
                       for person in people]}


# --- review -----------------------------------------------------------------------------


def step_for(definition: dict, place: str) -> dict | None:
    """Return the workflow step that ``place`` (``workflow.steps[0]...``) is in."""
    steps, found = definition["workflow"]["steps"], None
    for match in _STEP_PLACE.finditer(place):
        step_index, path_index = match.groups()
        if step_index is not None:
            index = int(step_index)
            if not isinstance(steps, list) or index >= len(steps):
                break
            found = steps[index]
        elif found is not None:
            paths = found.get("paths") or []
            if int(path_index) >= len(paths):
                break
            steps = paths[int(path_index)].get("steps", [])
    return found if isinstance(found, dict) else None


def step_at(definition: dict, place: str) -> str | None:
    """Return the id of the workflow step that ``place`` is in."""
    step = step_for(definition, place)
    return step.get("id") if step else None


def problem_where(definition: dict, problem: Problem) -> str:
    """Return where a problem is, in words: its step (type and name), or the settings."""
    if not problem.place.startswith("workflow"):
        return "Trigger & settings"
    step = step_for(definition, problem.place)
    if step is None:
        return "Workflow"
    kind = str(step.get("type", "")).replace("_", " ").capitalize()
    return f"{kind} step “{step['name']}”" if step.get("name") else f"{kind} step"


def problem_link(campaign: Campaign, problem: Problem) -> str:
    """Return where a problem is fixed: its workflow step, or its settings field."""
    if problem.place.startswith("workflow"):
        step_id = step_at(campaign.definition, problem.place)
        # The workflow editor with the step's settings open, scrolled to its card.
        base = reverse("campaigns:workflow", args=[campaign.pk])
        return base + (f"?step={step_id}#step-{step_id}" if step_id else "")
    field = field_for(problem.place, campaign.trigger)
    base = reverse("campaigns:settings", args=[campaign.pk])
    return base + (f"#field-{field}" if field else "")


def campaign_problems(campaign: Campaign) -> list[Problem]:
    """Return everything that keeps the campaign from starting, unconfigured steps included."""
    try:
        validate(campaign.definition, workspace=campaign.workspace, starting=True)
    except DefinitionError as error:
        return error.problems
    return []


@role_required("viewer")
def campaign_review(request, pk):
    campaign = _campaign(request, pk)
    definition = campaign.definition
    problems = [(problem, problem_link(campaign, problem), problem_where(definition, problem))
                for problem in campaign_problems(campaign)]
    names = _segment_names(request.membership.workspace, [definition])
    return render(request, "campaigns/campaign_review.html", {
        "campaign": campaign, "tab": "review", "problems": problems,
        "trigger_words": trigger_words(definition, names),
        "step_count": sum(1 for _ in _walk(definition["workflow"]["steps"])),
        "definition": definition,
        "exit_words": dict(EXIT_CHOICES).get(definition["exit"], definition["exit"]),
    })


def _walk(steps):
    for step in steps:
        yield step
        for path in step.get("paths") or []:
            yield from _walk(path.get("steps", []))


# --- actions ----------------------------------------------------------------------------


def _back(request, campaign: Campaign) -> str:
    """Return the campaign page an action was asked from, to go back to."""
    asked_from = request.POST.get("next") or request.GET.get("next")
    if not asked_from and request.htmx:
        asked_from = request.htmx.current_url_abs_path
    back = safe_back(asked_from)
    if back and back.startswith(f"/campaigns/{campaign.pk}/"):
        return back
    return reverse("campaigns:settings", args=[campaign.pk])


def _dialog(request, campaign: Campaign, action: str, context: dict, *, status: int = 200):
    """Render an action's dialog: swapped into the page by HTMX, else a page holding it."""
    context = {"campaign": campaign, "action": action, "back": _back(request, campaign),
               "token": request.POST.get("token") or new_submit_token(), **context}
    if request.htmx:
        return render(request, f"campaigns/campaign_action.html#{action}-dialog", context)
    return render(request, "campaigns/campaign_action.html", context, status=status)


def _done(request, campaign: Campaign, message: str, url: str | None = None):
    remember_job(request, ACTION_TOKENS, campaign.pk)
    messages.success(request, message)
    return htmx_redirect(request, url or _back(request, campaign))


def current_matches(campaign: Campaign) -> dict | None:
    """Return how many people match a segments trigger and filters now (capped)."""
    if campaign.trigger != Campaign.Trigger.SEGMENTS:
        return None
    tree = trigger_tree(campaign.definition)
    if not campaign.definition["trigger"]["segments"]["segments"]:
        return None
    try:
        conditions.validate(tree, workspace=campaign.workspace)
    except conditions.ConditionError:
        return None
    count, more = capped_count(conditions.matching_people(campaign.workspace, tree))
    return {"count": count, "more": more}


@role_required("editor")
@require_http_methods(["GET", "POST"])
def campaign_start(request, pk):
    """Start or restart now or at a set time; a segments trigger asks which people enter."""
    campaign = _campaign(request, pk)
    if request.method == "POST" and started_job(request, ACTION_TOKENS) is not None:
        return htmx_redirect(request, _back(request, campaign))
    zone = request.membership.workspace.timezone
    form = StartForm(request.POST or None, zone=zone)
    problems = campaign_problems(campaign)
    if request.method == "POST" and form.is_valid() and not problems:
        audience = form.cleaned_data["audience"]
        try:
            if form.cleaned_data["when"] == "later":
                at = form.cleaned_data["starts_at"]
                services.schedule_start(campaign, at=at, audience=audience)
                shown = timezone.localtime(at, dates.zone(zone)).strftime("%Y-%m-%d %H:%M")
                return _done(request, campaign, f"“{campaign.name}” starts at {shown} "
                                                f"({zone}).")
            services.start_campaign(campaign, audience=audience)
            return _done(request, campaign, f"Started “{campaign.name}”.")
        except DefinitionError as error:
            problems = error.problems
        except services.CampaignStateError as error:
            campaign.refresh_from_db()
            if campaign.state == Campaign.State.RUNNING:  # a second submit raced the first
                return _done(request, campaign, f"“{campaign.name}” is running.")
            form.add_error(None, str(error))
    return _dialog(request, campaign, "start", {
        "form": form, "problems": problems, "matches": current_matches(campaign),
        "restart": campaign.state == Campaign.State.STOPPED,
    }, status=400 if form.is_bound else 200)


@role_required("editor")
@require_POST
def campaign_unschedule(request, pk):
    campaign = _campaign(request, pk)
    try:
        services.schedule_start(campaign, at=None)
    except services.CampaignStateError as error:
        messages.error(request, str(error))
        return htmx_redirect(request, _back(request, campaign))
    messages.success(request, f"“{campaign.name}” no longer starts at a set time.")
    return htmx_redirect(request, _back(request, campaign))


@role_required("editor")
@require_http_methods(["GET", "POST"])
def campaign_stop(request, pk):
    """Stop: people in it exit now, or finish their journeys first."""
    campaign = _campaign(request, pk)
    if request.method == "POST" and started_job(request, ACTION_TOKENS) is not None:
        return htmx_redirect(request, _back(request, campaign))
    form = StopForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            stopped = services.stop_campaign(campaign, journeys=form.cleaned_data["journeys"])
        except services.CampaignStateError as error:
            campaign.refresh_from_db()
            if campaign.state == Campaign.State.STOPPED:  # a second submit raced the first
                return _done(request, campaign, f"“{campaign.name}” is stopped.")
            form.add_error(None, str(error))
        else:
            return _done(request, campaign, f"Stopped “{campaign.name}”." if stopped.state ==
                         Campaign.State.STOPPED else f"“{campaign.name}” is stopping: people "
                         "in it finish their journeys.")
    active, more = capped_count(Journey.objects.filter(campaign=campaign,
                                                       state=Journey.State.ACTIVE))
    return _dialog(request, campaign, "stop", {"form": form, "active": active,
                                               "more": more},
                   status=400 if form.is_bound else 200)


@role_required("editor")
@require_http_methods(["GET", "POST"])
def campaign_archive(request, pk):
    campaign = _campaign(request, pk)
    if request.method == "POST":
        if started_job(request, ACTION_TOKENS) is None:
            services.archive_campaign(campaign)
            return _done(request, campaign, f"Archived “{campaign.name}”.")
        return htmx_redirect(request, _back(request, campaign))
    return _dialog(request, campaign, "archive", {})


@role_required("editor")
@require_POST
def campaign_unarchive(request, pk):
    campaign = _campaign(request, pk)
    try:
        services.unarchive_campaign(campaign)
    except services.CampaignStateError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Unarchived “{campaign.name}”: it is stopped.")
    return htmx_redirect(request, _back(request, campaign))


@role_required("editor")
@require_http_methods(["GET", "POST"])
def campaign_delete(request, pk):
    """Delete a campaign behind its typed name; its message figures stay, anonymous."""
    if request.method == "POST" and started_job(request, ACTION_TOKENS) is not None:
        return htmx_redirect(request, reverse("campaigns:list"))
    campaign = _campaign(request, pk)
    form = DeleteForm(request.POST or None, campaign=campaign)
    if request.method == "POST" and form.is_valid():
        name = campaign.name
        services.delete_campaign(campaign)
        return _done(request, campaign, f"Deleted “{name}”.", url=reverse("campaigns:list"))
    return _dialog(request, campaign, "delete", {"form": form},
                   status=400 if form.is_bound else 200)

