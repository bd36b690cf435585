"""The workspace settings pages about people: the identifier mode and the suppression list.

They sit under Settings, in its URL namespace (``settings:identifiers``); members of every
role see the suppression list, admins switch the identifier mode.
"""

from django.contrib import messages
from django.shortcuts import redirect, render
from django_htmx.http import HttpResponseClientRefresh

from engage.models import IdentifierModeChange
from engage.pages import capped_count, keyset_page
from engage.settings_forms import EmailUpdateForm
from engage.workspaces import role_required
from people import identifier_mode
from people.forms import IdentifierModeForm, SuppressionFilterForm
from people.models import Suppression

CONFLICTS_SHOWN = 50
SUPPRESSIONS_PAGE = 50


def _identifiers_page(request, *, conflicts=None, error="", status=200):
    workspace = request.membership.workspace
    change = identifier_mode.running_mode_change(workspace)
    if request.htmx and request.GET.get("progress"):
        if change is None:  # done (or failed): the whole page says what became of it
            return HttpResponseClientRefresh()
        return render(request, "engage/settings/identifiers.html#mode-change",
                      {"change": change})
    last = None
    if change is None:
        last = IdentifierModeChange.objects.filter(workspace=workspace).order_by(
            "-created_at").first()
        if conflicts is None and not workspace.email_is_identifier:
            conflicts = identifier_mode.identifier_conflicts(workspace, limit=CONFLICTS_SHOWN)
    return render(request, "engage/settings/identifiers.html", {
        "conflicts": conflicts, "error": error, "change": change,
        "failed": last if last is not None and last.state == last.State.FAILED else None,
        "email_update_form": EmailUpdateForm(
            initial={"allow_email_update_by_id": workspace.allow_email_update_by_id}),
    }, status=status)


@role_required("admin")
def identifiers(request):
    if request.method != "POST":
        return _identifiers_page(request)
    form = IdentifierModeForm(request.POST)
    if not form.is_valid():
        return _identifiers_page(request, error="Choose an identifier mode.", status=400)
    workspace = request.membership.workspace
    try:
        change = identifier_mode.set_identifier_mode(workspace, form.cleaned_data["mode"],
                                              actor=request.user)
    except identifier_mode.IdentifierModeError as refusal:
        return _identifiers_page(request, conflicts=refusal.conflicts, error=str(refusal),
                                 status=409)
    if change is not None and not change.is_finished:
        messages.info(request, "The switch is under way, a batch of people at a time: "
                               "this page follows it.")
    else:
        messages.success(
            request, f"People are now identified by {workspace.get_identifier_mode_display()}.")
    return redirect("settings:identifiers")


@role_required("viewer")
def suppression_list(request):
    workspace = request.membership.workspace
    form = SuppressionFilterForm(request.GET or None)
    context = {"form": form, "suppressions": [], "next_before": None, "count": 0,
               "more": False}
    if not form.is_bound or form.is_valid():
        matching = form.search(Suppression.objects.in_workspace(workspace))
        before = form.cleaned_data.get("before") if form.is_bound else None
        context["suppressions"], context["next_before"] = keyset_page(
            matching.select_related("created_by"), size=SUPPRESSIONS_PAGE, before=before)
        context["count"], context["more"] = capped_count(matching)
    template = "engage/settings/suppression_list.html"
    if request.htmx and not request.htmx.boosted:
        template += "#suppression-table"
    return render(request, template, context)
