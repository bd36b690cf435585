"""The marketer's home page and workspace switching."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from engage.workspaces import role_required, switch_workspace
from people.models import Activity, DeletionJob, Person


@role_required("viewer")
def home(request):
    workspace = request.membership.workspace
    month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    this_month = Activity.objects.filter(workspace=workspace, created_at__gte=month_start)
    return render(request, "engage/home.html", {
        "profile_count": Person.objects.in_workspace(workspace).count(),
        "deleted_this_month": this_month.filter(kind=Activity.Kind.DELETED).count(),
        "suppressed_this_month": this_month.filter(kind=Activity.Kind.SUPPRESSED).count(),
        "recent_jobs": DeletionJob.objects.filter(workspace=workspace)
        .select_related("requested_by").order_by("-created_at")[:5],
    })


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
