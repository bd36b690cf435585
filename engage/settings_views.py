"""Workspace settings pages: email updates by id, API credentials, members.

The settings pages about people (the identifier mode, the suppression list) are the people
app's (``people.settings_views``), under the same URL namespace.
Members of every role see the settings overview; the rest is for admins.
"""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from engage import services
from engage.models import Membership
from engage.settings_forms import EmailUpdateForm, MemberAddForm, MemberRoleForm
from engage.workspaces import role_required

KEY_KINDS = {"track": "Track API", "app": "App API"}


@role_required("viewer")
def index(request):
    return render(request, "engage/settings/index.html")


# --- identifier mode: the page is people.settings_views.identifiers -------------------


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
