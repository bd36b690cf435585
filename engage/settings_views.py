"""Workspace settings pages: identifier mode, API credentials, suppressions, members.

Members of every role see the settings overview and the suppression list; the rest is
for admins.
"""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRefresh

from engage import services
from engage.models import IdentifierModeChange, Membership
from engage.settings_forms import (
    EmailUpdateForm,
    IdentifierModeForm,
    MemberAddForm,
    MemberRoleForm,
    SuppressionFilterForm,
)
from engage.workspaces import role_required
from people.models import Suppression

CONFLICTS_SHOWN = 50
SUPPRESSIONS_PAGE = 50
COUNT_CAP = 10_000
KEY_KINDS = {"track": "Track API", "app": "App API"}


@role_required("viewer")
def index(request):
    return render(request, "engage/settings/index.html")


# --- identifier mode -------------------------------------------------------------------


def _identifiers_page(request, *, conflicts=None, error="", status=200):
    workspace = request.membership.workspace
    change = services.running_mode_change(workspace)
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
            conflicts = services.identifier_conflicts(workspace, limit=CONFLICTS_SHOWN)
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
        change = services.set_identifier_mode(workspace, form.cleaned_data["mode"],
                                              actor=request.user)
    except services.IdentifierModeError as refusal:
        return _identifiers_page(request, conflicts=refusal.conflicts, error=str(refusal),
                                 status=409)
    if change is not None and not change.is_finished:
        messages.info(request, "The switch is under way, a batch of people at a time: "
                               "this page follows it.")
    else:
        messages.success(
            request, f"People are now identified by {workspace.get_identifier_mode_display()}.")
    return redirect("settings:identifiers")


@role_required("admin")
@require_POST
def email_update(request):
    form = EmailUpdateForm(request.POST)
    form.is_valid()  # a lone checkbox is always valid
    services.set_email_update_by_id(
        request.membership.workspace, allowed=form.cleaned_data["allow_email_update_by_id"])
    messages.success(request, "Saved.")
    return redirect("settings:identifiers")


# --- API credentials -------------------------------------------------------------------


@role_required("admin")
def credentials(request):
    return render(request, "engage/settings/credentials.html")


@never_cache
@role_required("admin")
def credentials_regenerate(request, kind):
    """Ask to confirm; on POST replace the key and show the new one, this once only."""
    if kind not in KEY_KINDS:
        raise Http404("no such key")
    context = {"kind": kind, "kind_label": KEY_KINDS[kind]}
    if request.method != "POST":
        return render(request, "engage/settings/credentials_regenerate.html", context)
    # The key goes into this response only: never into the session, a message or a log.
    context["new_key"] = services.regenerate_api_key(request.membership.workspace, kind=kind)
    return render(request, "engage/settings/credentials_regenerate.html", context)


# --- suppressions ----------------------------------------------------------------------


@role_required("viewer")
def suppression_list(request):
    workspace = request.membership.workspace
    form = SuppressionFilterForm(request.GET or None)
    context = {"form": form, "suppressions": [], "next_before": None, "count": 0,
               "more": False}
    if not form.is_bound or form.is_valid():
        matching = form.search(Suppression.objects.in_workspace(workspace))
        before = form.cleaned_data.get("before") if form.is_bound else None
        page = matching.filter(pk__lt=before) if before else matching
        rows = list(page.select_related("created_by").order_by("-pk")[:SUPPRESSIONS_PAGE + 1])
        context["suppressions"] = rows[:SUPPRESSIONS_PAGE]
        if len(rows) > SUPPRESSIONS_PAGE:
            context["next_before"] = rows[SUPPRESSIONS_PAGE - 1].pk
        count = matching.order_by()[:COUNT_CAP + 1].count()
        context["count"], context["more"] = min(count, COUNT_CAP), count > COUNT_CAP
    template = "engage/settings/suppression_list.html"
    if request.htmx and not request.htmx.boosted:
        template += "#suppression-table"
    return render(request, template, context)


# --- members ---------------------------------------------------------------------------


def _members_page(request, *, add_form=None, status=200):
    workspace = request.membership.workspace
    members = (Membership.objects.filter(workspace=workspace).select_related("user")
               .order_by("user__username"))
    return render(request, "engage/settings/member_list.html", {
        "members": members, "roles": Membership.Role.choices,
        "add_form": add_form or MemberAddForm(workspace=workspace),
    }, status=status)


@role_required("admin")
def member_list(request):
    return _members_page(request)


@role_required("admin")
@require_POST
def member_add(request):
    workspace = request.membership.workspace
    form = MemberAddForm(request.POST, workspace=workspace)
    if not form.is_valid():
        return _members_page(request, add_form=form, status=400)
    membership = services.set_membership(workspace, form.cleaned_data["user"],
                                         role=form.cleaned_data["role"])
    messages.success(request, f"{membership.user.get_username()} is now a "
                              f"{membership.get_role_display().lower()}.")
    return redirect("settings:member-list")


def _member(request, pk) -> Membership:
    return get_object_or_404(Membership.objects.select_related("user", "workspace"),
                             pk=pk, workspace=request.membership.workspace)


@role_required("admin")
@require_POST
def member_role(request, pk):
    membership = _member(request, pk)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role.")
        return redirect("settings:member-list")
    try:
        membership = services.change_member_role(membership, role=form.cleaned_data["role"])
    except services.LastAdminError as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, f"{membership.user.get_username()} is now a "
                                  f"{membership.get_role_display().lower()}.")
    if membership.user == request.user and not membership.is_admin:
        return redirect("settings:index")  # no longer allowed on the members page
    return redirect("settings:member-list")


@role_required("admin")
def member_remove(request, pk):
    membership = _member(request, pk)
    if request.method != "POST":
        return render(request, "engage/settings/member_confirm_delete.html",
                      {"member": membership})
    try:
        services.remove_member(membership)
    except services.LastAdminError as refusal:
        messages.error(request, str(refusal))
        return redirect("settings:member-list")
    messages.success(request, f"{membership.user.get_username()} was removed from the workspace.")
    if membership.user == request.user:
        return redirect("home")
    return redirect("settings:member-list")
