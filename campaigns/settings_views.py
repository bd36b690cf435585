"""Settings > Email > Suppression list: the addresses the workspace sends no email to.

Members of every role see and search it; editors and admins add and remove addresses.
"""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from campaigns import bounces
from campaigns.models import EmailSuppression
from campaigns.settings_forms import EmailSuppressionAddForm, EmailSuppressionFilterForm
from engage.pages import capped_count, keyset_page, swaps_a_partial
from engage.workspaces import role_required

PAGE_SIZE = 50
TEMPLATE = "campaigns/settings/emailsuppression_list.html"


def _list_page(request, *, add_form=None, status=200):
    workspace = request.membership.workspace
    form = EmailSuppressionFilterForm(request.GET or None)
    context = {"form": form, "suppressions": [], "next_before": None, "count": 0,
               "more": False, "add_form": add_form or EmailSuppressionAddForm()}
    if not form.is_bound or form.is_valid():
        matching = form.search(EmailSuppression.objects.in_workspace(workspace))
        before = form.cleaned_data.get("before") if form.is_bound else None
        context["suppressions"], context["next_before"] = keyset_page(
            matching.select_related("created_by"), size=PAGE_SIZE, before=before)
        context["count"], context["more"] = capped_count(matching)
    template = TEMPLATE
    if swaps_a_partial(request) and request.method == "GET":
        template += "#emailsuppression-table"
    return render(request, template, context, status=status)


@role_required("viewer")
def email_suppression_list(request):
    return _list_page(request)


@role_required("editor")
@require_POST
def email_suppression_create(request):
    form = EmailSuppressionAddForm(request.POST)
    if not form.is_valid():
        return _list_page(request, add_form=form, status=400)
    suppression, created = bounces.suppress_address(
        request.membership.workspace, form.cleaned_data["address"],
        reason=EmailSuppression.Reason.MANUAL, created_by=request.user)
    if created:
        messages.success(request, f"{suppression.address} is suppressed: no email goes to it.")
    else:
        messages.info(request, f"{suppression.address} was suppressed already.")
    return redirect("settings:emailsuppression-list")


@role_required("editor")
@require_POST
def email_suppression_delete(request, pk):
    suppression = get_object_or_404(EmailSuppression, pk=pk,
                                    workspace=request.membership.workspace)
    bounces.unsuppress_address(suppression)
    messages.success(request, f"{suppression.address} may receive email again.")
    return redirect("settings:emailsuppression-list")
