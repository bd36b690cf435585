"""Workspace switching."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from engage.workspaces import switch_workspace


@login_required
@require_POST
def switch(request):
    try:
        workspace_id = int(request.POST.get("workspace", ""))
    except ValueError:
        workspace_id = 0
    if not switch_workspace(request, workspace_id):
        messages.error(request, "You are not a member of that workspace.")
    return redirect("home")
