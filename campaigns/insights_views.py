"""What a campaign did and would do, in the browser: the overview (figures, a chart of
the last 30 days, a CSV of both), its journeys, the people waiting at a step, one
delivery, the drafts an editor sends or discards, test mode, and a person's journeys.

Viewers see everything; changing drafts needs an editor. Every lookup is scoped to the
current workspace: another workspace's campaign, delivery or person answers 404.
"""

import csv
import json

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from campaigns import drafts, metrics, testmode
from campaigns.definition import DATA_TRIGGERS
from campaigns.models import Campaign, Delivery, Journey
from campaigns.workflow import Workflow
from engage.pages import keyset_page, swaps_a_partial, varies_with_htmx
from engage.workspaces import role_required
from people.models import Person

PAGE_SIZE = 50
SAMPLE_MAX = 10


def _campaign(request, pk) -> Campaign:
    return get_object_or_404(Campaign.objects.in_workspace(request.membership.workspace)
                             .select_related("workspace"), pk=pk)


def _before(request) -> int | None:
    before = request.GET.get("before", "")
    return int(before) if before.isdigit() else None


# --- the overview ------------------------------------------------------------------------


def _overview(campaign: Campaign) -> dict:
    figures = metrics.campaign_metrics(campaign)
    return {"totals": {key: figures[key] for key in metrics.JOURNEY_METRICS},
            "steps": metrics.step_rows(campaign, figures["steps"]),
            "daily": metrics.daily_counts(campaign)}


@role_required("viewer")
@never_cache
def overview(request, pk):
    campaign = _campaign(request, pk)
    context = _overview(campaign)
    chart = {"days": [row["day"].isoformat() for row in context["daily"]],
             **{key: [row[key] for row in context["daily"]] for key in metrics.DAILY_METRICS}}
    return render(request, "campaigns/insights/overview.html", {
        "campaign": campaign, "tab": "overview", **context, "chart": chart,
        "journey_metrics": metrics.JOURNEY_METRICS, "step_metrics": metrics.STEP_METRICS,
        "delivery_states": metrics.DELIVERY_STATES,
        "daily_metrics": metrics.DAILY_METRICS})


@role_required("viewer")
def overview_csv(request, pk):
    """The overview's three tables, one after the other: totals, steps, days."""
    campaign = _campaign(request, pk)
    context = _overview(campaign)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}.csv"'
    writer = csv.writer(response)
    writer.writerow(["campaign", *metrics.JOURNEY_METRICS])
    totals = context["totals"]
    writer.writerow([_cell(campaign.name), *(totals[key] for key in metrics.JOURNEY_METRICS)])
    writer.writerow([])
    writer.writerow(["step_id", "step", "type", *metrics.STEP_METRICS])
    for row in context["steps"]:
        writer.writerow([row["id"], _cell(row["name"]), row["type"],
                         *(row["metrics"][key] for key in metrics.STEP_METRICS)])
    writer.writerow([])
    writer.writerow(["day", *metrics.DAILY_METRICS])
    for row in context["daily"]:
        writer.writerow([row["day"].isoformat(), *(row[key] for key in metrics.DAILY_METRICS)])
    return response


def _cell(text: str) -> str:
    """Keep a name a spreadsheet would read as a formula as text."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# --- journeys and the people at a step --------------------------------------------------


@role_required("viewer")
@never_cache
def journey_list(request, pk):
    campaign = _campaign(request, pk)
    state = request.GET.get("state", "")
    rows = Journey.objects.filter(campaign=campaign).select_related("person")
    if state in Journey.State.values:
        rows = rows.filter(state=state)
    else:
        state = ""
    journeys, before = keyset_page(rows, size=PAGE_SIZE, before=_before(request))
    names = _step_names(campaign)
    for journey in journeys:
        journey.step_name = names.get(journey.step_id, journey.step_id)
    context = {"campaign": campaign, "tab": "journeys", "journeys": journeys,
               "before": before, "state": state, "states": Journey.State.choices}
    if swaps_a_partial(request):
        return varies_with_htmx(render(
            request, "campaigns/insights/journey_list.html#journey-rows", context))
    return varies_with_htmx(render(request, "campaigns/insights/journey_list.html", context))


def _step_names(campaign: Campaign) -> dict[str, str]:
    return {row["id"]: row["name"] for row in metrics.step_rows(campaign, {})}


@role_required("viewer")
@never_cache
def step_people(request, pk, step_id):
    campaign = _campaign(request, pk)
    journeys, before = keyset_page(metrics.journeys_at_step(campaign, step_id),
                                   size=PAGE_SIZE, before=_before(request))
    context = {"campaign": campaign, "tab": "overview", "journeys": journeys,
               "before": before, "step_id": step_id,
               "step_name": _step_names(campaign).get(step_id, step_id)}
    if swaps_a_partial(request):
        return varies_with_htmx(render(
            request, "campaigns/insights/step_people.html#step-people-rows", context))
    return varies_with_htmx(render(request, "campaigns/insights/step_people.html", context))


@role_required("viewer")
def person_journeys(request, cio_id):
    """The journeys section of a person's page (loaded into it by HTMX)."""
    person = get_object_or_404(Person.objects.in_workspace(request.membership.workspace),
                               cio_id=cio_id)
    template = "campaigns/insights/person_journeys.html"
    if not swaps_a_partial(request):  # followed as a link: the section on a page of its own
        template = "campaigns/insights/person_journeys_page.html"
    return varies_with_htmx(render(request, template, {
        "person": person,
        "journeys": metrics.journeys_of_person(request.membership.workspace, person.pk)}))


@role_required("viewer")
@never_cache
def step_deliveries(request, pk, step_id):
    """A step's deliveries, newest first, optionally in one state (the overview's counts
    link here)."""
    campaign = _campaign(request, pk)
    state = request.GET.get("state", "")
    rows = Delivery.objects.filter(workspace_id=campaign.workspace_id, campaign=campaign,
                                   step_id=step_id).select_related("journey__person")
    if state in Delivery.State.values:
        rows = rows.filter(state=state)
    else:
        state = ""
    deliveries, before = keyset_page(rows, size=PAGE_SIZE, before=_before(request))
    context = {"campaign": campaign, "tab": "overview", "deliveries": deliveries,
               "before": before, "state": state, "states": Delivery.State.choices,
               "step_id": step_id, "step_name": _step_names(campaign).get(step_id, step_id)}
    if swaps_a_partial(request):
        return varies_with_htmx(render(
            request, "campaigns/insights/step_deliveries.html#delivery-rows", context))
    return varies_with_htmx(render(request, "campaigns/insights/step_deliveries.html",
                                   context))


# --- deliveries and drafts ---------------------------------------------------------------


def _delivery(campaign: Campaign, delivery_pk: int) -> Delivery:
    return get_object_or_404(
        Delivery.objects.filter(workspace_id=campaign.workspace_id, campaign=campaign)
        .select_related("journey__person", "campaign"), pk=delivery_pk)


def _message(delivery: Delivery) -> dict:
    """The content the delivery sends: its own message, else its step's."""
    if delivery.payload.get("message"):
        return delivery.payload["message"]
    return Workflow(delivery.campaign.definition["workflow"]["steps"]).get(
        delivery.step_id) or {}


def _person(delivery: Delivery) -> Person | None:
    if delivery.journey is not None and delivery.journey.person is not None:
        return delivery.journey.person
    if delivery.cio_id:
        return Person.objects.filter(workspace_id=delivery.workspace_id,
                                     cio_id=delivery.cio_id).first()
    return None


def preview(delivery: Delivery) -> dict:
    """Render the delivery's message for its person as it stands now."""
    person = _person(delivery)
    context = (delivery.journey.context if delivery.journey is not None
               else {"trigger": delivery.payload.get("trigger") or {}})
    variables = testmode.liquid_context(delivery.campaign, person, context=context)
    message = _message(delivery)
    if delivery.kind == Delivery.Kind.EMAIL:
        return {"email": testmode.render_email(message, variables), "person": person}
    return {"webhook": testmode.render_webhook(message, variables), "person": person}


@role_required("viewer")
@never_cache
def delivery_detail(request, pk, delivery_pk):
    campaign = _campaign(request, pk)
    delivery = _delivery(campaign, delivery_pk)
    response = delivery.payload.get("response")
    return render(request, "campaigns/insights/delivery_detail.html", {
        "campaign": campaign, "tab": "overview", "delivery": delivery, **preview(delivery),
        "rendered": delivery.payload.get("rendered"),
        "response": response,
        "response_headers": json.dumps((response or {}).get("headers") or {}, indent=2),
        "step_name": _step_names(campaign).get(delivery.step_id, delivery.step_id)})


@role_required("viewer")
@never_cache
def draft_list(request, pk):
    campaign = _campaign(request, pk)
    rows = drafts.drafts_of(campaign).select_related("journey__person", "campaign")
    page, before = keyset_page(rows, size=PAGE_SIZE, before=_before(request))
    names = _step_names(campaign)
    items = [{"delivery": delivery, "step_name": names.get(delivery.step_id, delivery.step_id),
              **preview(delivery)} for delivery in page]
    return render(request, "campaigns/insights/draft_list.html", {
        "campaign": campaign, "tab": "drafts", "items": items, "before": before})


@role_required("editor")
@require_POST
def draft_bulk(request, pk):
    """Send or discard the checked drafts; those that left the drafts meanwhile (a double
    submit, another editor) are left as they are."""
    campaign = _campaign(request, pk)
    ids = [int(value) for value in request.POST.getlist("delivery") if value.isdigit()]
    action = request.POST.get("action")
    for one in ("send", "discard"):  # a draft's own button acts on that draft alone
        if request.POST.get(f"{one}_one", "").isdigit():
            ids, action = [int(request.POST[f"{one}_one"])], one
    if action not in ("send", "discard"):
        messages.error(request, "Choose Send or Discard.")
    elif not ids:
        messages.error(request, "No drafts were checked.")
    else:
        change = drafts.send_drafts if action == "send" else drafts.discard_drafts
        changed = change(campaign, ids)
        verb = "Queued for sending" if action == "send" else "Discarded"
        if changed:
            messages.success(request, f"{verb}: {changed} {_drafts(changed)}.")
        if changed < len(ids):
            skipped = len(ids) - changed
            messages.info(request, f"{skipped} {_drafts(skipped)} had been sent or discarded "
                                   "already: left as they are.")
    return redirect("campaigns:draft-list", pk=campaign.pk)


def _drafts(count: int) -> str:
    return "draft" if count == 1 else "drafts"


class DraftForm(forms.Form):
    subject = forms.CharField(max_length=1000)
    body_html = forms.CharField(label="HTML body", required=False,
                                widget=forms.Textarea(attrs={"rows": 12}))
    body_text = forms.CharField(label="Text body", required=False,
                                widget=forms.Textarea(attrs={"rows": 4}))

    def clean(self):
        cleaned = super().clean()
        if not (cleaned.get("body_html") or "").strip() and not (
                cleaned.get("body_text") or "").strip():
            raise forms.ValidationError("The message needs an HTML or a text body.")
        return cleaned


@role_required("editor")
def draft_update(request, pk, delivery_pk):
    campaign = _campaign(request, pk)
    delivery = _delivery(campaign, delivery_pk)
    if delivery.state != Delivery.State.DRAFTED or delivery.kind != Delivery.Kind.EMAIL:
        messages.info(request, "That delivery is not a drafted email any more.")
        return redirect("campaigns:draft-list", pk=campaign.pk)
    if request.method == "POST":
        form = DraftForm(request.POST)
        if form.is_valid():
            try:
                drafts.edit_draft(delivery, **form.cleaned_data)
            except drafts.NotADraft:
                messages.info(request, "That draft was sent or discarded meanwhile.")
            else:
                messages.success(request, "Saved the draft.")
            return redirect("campaigns:draft-list", pk=campaign.pk)
    else:
        message = drafts.draft_message(delivery)
        form = DraftForm(initial={"subject": message.get("subject") or "",
                                  "body_html": message.get("body_html") or "",
                                  "body_text": message.get("body_text") or ""})
    return render(request, "campaigns/insights/draft_form.html", {
        "campaign": campaign, "tab": "drafts", "delivery": delivery, "form": form,
        **preview(delivery)}, status=400 if form.is_bound else 200)


# --- test mode ---------------------------------------------------------------------------


def _trigger_data(text: str) -> tuple[dict | None, str]:
    """Read the trigger data typed for a data campaign: (a JSON object or None, problem)."""
    if not text:
        return None, ""
    try:
        data = json.loads(text)
    except ValueError as error:
        return None, f"The trigger data is not JSON: {error}."
    if not isinstance(data, dict):
        return None, "The trigger data must be a JSON object."
    return data, ""


@role_required("viewer")
@never_cache
def test_mode(request, pk):
    """Run the workflow for a person found by email or id, or for a random sample, on a
    virtual clock: a read, so a GET (the form's fields are in the URL, to share)."""
    campaign = _campaign(request, pk)
    workspace = request.membership.workspace
    query = request.GET.get("person", "").strip()
    sample = request.GET.get("sample", "")
    data_campaign = campaign.trigger in DATA_TRIGGERS
    trigger_text = request.GET.get("trigger", "").strip()
    trigger, problem = _trigger_data(trigger_text) if data_campaign else (None, "")
    people = []
    if problem:
        pass  # nobody runs with trigger data that cannot be read
    elif query:
        person = testmode.find_person(workspace, query)
        if person is None:
            problem = f"Nobody in this workspace has the email, id or cio_id {query}."
        else:
            people = [person]
    elif sample.isdigit() and int(sample) > 0:
        people = testmode.sample_people(workspace, min(int(sample), SAMPLE_MAX))
        if not people:
            problem = "This workspace has no people yet."
    runs = [testmode.dry_run(campaign, person, trigger=trigger) for person in people]
    template = "campaigns/insights/test.html"
    if swaps_a_partial(request):
        template += "#test-results"
    return varies_with_htmx(render(request, template, {
        "campaign": campaign, "tab": "test", "query": query, "sample": sample,
        "sample_max": SAMPLE_MAX, "runs": runs, "problem": problem,
        "data_campaign": data_campaign, "trigger_text": trigger_text,
        "back": reverse("campaigns:test", args=[campaign.pk])}))
