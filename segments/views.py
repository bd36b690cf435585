"""Segment pages: the list, a segment's members and actions (Delete Profiles, archive), and
adding the People page's selection to a manual segment or removing it from one."""

import json

from django.contrib import messages
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from engage.pages import (
    htmx_redirect,
    new_submit_token,
    remember_job,
    started_job,
    swaps_a_partial,
    varies_with_htmx,
)
from engage.workspaces import role_required
from people.confirmation import SelectionChanged, start_if_confirmed
from people.selection import DELETION_TOKENS, deletion_job_url, people_table, selected_people
from segments import operations
from segments.forms import DeleteProfilesForm, ManualSegmentChoiceForm
from segments.models import MembershipJob, Segment
from segments.services import set_archived

# One membership job per confirmed Add to / Remove from segment dialog (as DELETION_TOKENS
# keeps one deletion job per confirmed Delete Profiles dialog).
MEMBERSHIP_TOKENS = "membership_tokens"


def _segment(request, pk) -> Segment:
    return get_object_or_404(Segment.objects.in_workspace(request.membership.workspace), pk=pk)


@role_required("viewer")
def segment_list(request):
    segments = operations.with_member_counts(
        Segment.objects.in_workspace(request.membership.workspace)).order_by("archived", "name")
    return render(request, "segments/segment_list.html", {
        "segments": segments, "count_cap": operations.MEMBER_COUNT_CAP,
    })


def _page_context(segment: Segment, *, before: int | None = None) -> dict:
    """Return the segment page's context: the segment and a page of its members."""
    context = {
        "segment": segment,
        "member_of": segment,  # the People table's actions then apply to the members
        "jobs": segment.jobs.select_related("requested_by").order_by("-created_at")[:5],
        **people_table(operations.segment_members(segment), before=before,
                       key="segment_memberships__person_id",
                       counted=operations.memberships(segment)),
    }
    if segment.conditions is not None:
        context["conditions_json"] = json.dumps(segment.conditions, indent=2,
                                                ensure_ascii=False)
    return context


@role_required("viewer")
@never_cache
def segment_detail(request, pk):
    segment = _segment(request, pk)
    before = request.GET.get("before", "")
    context = _page_context(segment, before=int(before) if before.isdigit() else None)
    if swaps_a_partial(request):
        return varies_with_htmx(render(request, "people/person_list.html#people-table", context))
    return varies_with_htmx(render(request, "segments/segment_detail.html", context))


@role_required("editor")
def segment_delete_profiles(request, pk):
    """Ask for the segment's exact name, then start one deletion job for its members."""
    segment = _segment(request, pk)
    back = reverse("segments:detail", args=[segment.pk])
    changed = False
    if request.method == "POST":
        if (started := started_job(request, DELETION_TOKENS)) is not None:
            return htmx_redirect(request, deletion_job_url(started, back=back))
        form = DeleteProfilesForm(request.POST, segment=segment)
        if form.is_valid():
            try:
                job = start_if_confirmed(lambda: operations.delete_profiles(
                    segment, suppress=form.cleaned_data["suppress"], actor=request.user),
                    confirmed=request.POST.get("count"))
            except SelectionChanged:
                changed = True
            else:
                remember_job(request, DELETION_TOKENS, job.pk)
                return htmx_redirect(request, deletion_job_url(job.pk, back=back))
    else:
        form = DeleteProfilesForm(segment=segment)
    dialog = {"segment": segment, "delete_form": form, "token": new_submit_token(),
              "member_count": operations.memberships(segment).count(), "changed": changed}
    if request.htmx:
        return render(request, "segments/segment_detail.html#delete-profiles-dialog", dialog)
    # Without HTMX: the segment page, with the dialog open.
    context = {**_page_context(segment), **dialog}
    status = 409 if changed else 400 if form.is_bound else 200
    return render(request, "segments/segment_detail.html", context, status=status)


@role_required("editor")
@require_POST
def segment_archive(request, pk, *, archived: bool):
    segment = _segment(request, pk)
    set_archived(segment, archived)
    messages.success(request, f"Archived {segment.name}: its members no longer change."
                     if archived else f"Unarchived {segment.name}.")
    return htmx_redirect(request, reverse("segments:detail", args=[segment.pk]))


def _membership_context(request, form, *, add: bool) -> dict | None:
    people, _ = selected_people(request, request.membership.workspace)
    if people is None:
        return None
    return {
        "add": add,
        "form": form,
        "selected_count": people.count(),
        "token": request.POST.get("token") or new_submit_token(),
        "selection": [(key, value) for key in request.POST
                      if key not in ("csrfmiddlewaretoken", "target", "token")
                      for value in request.POST.getlist(key)],
    }


def _render_membership_dialog(request, context, status=200):
    template = "segments/membership_form.html"
    if request.htmx:
        template += "#membership-dialog"
    return render(request, template, context, status=status)


@role_required("editor")
@require_POST
def people_change_confirm(request, *, add: bool):
    """Show how many people are selected and ask which manual segment to change."""
    workspace = request.membership.workspace
    form = ManualSegmentChoiceForm(workspace=workspace,
                                   initial={"target": request.POST.get("segment")})
    context = _membership_context(request, form, add=add)
    if context is None:
        return HttpResponseBadRequest("the selection could not be read")
    return _render_membership_dialog(request, context)


@role_required("editor")
@require_POST
def people_change(request, *, add: bool):
    """Add the selected people to a manual segment, or remove them, as one membership job.

    A few people are changed at once; more go to a worker, and the browser follows the
    job's progress. A double submit of the same dialog starts one job.
    """
    workspace = request.membership.workspace
    if (started := started_job(request, MEMBERSHIP_TOKENS)) is not None:
        return htmx_redirect(request, reverse("segments:job", args=[started]))
    form = ManualSegmentChoiceForm(request.POST, workspace=workspace)
    if not form.is_valid():
        target = request.POST.get("target", "")
        if not target.isdigit() or not Segment.objects.in_workspace(workspace).filter(
                pk=int(target)).exists():
            raise Http404("no such segment in this workspace")
        # A segment of this workspace that is data-driven or archived: say why not.
        context = _membership_context(request, form, add=add)
        if context is None:
            return HttpResponseBadRequest("the selection could not be read")
        return _render_membership_dialog(request, context,
                                         status=200 if request.htmx else 400)
    people, description = selected_people(request, workspace)
    if people is None:
        return HttpResponseBadRequest("the selection could not be read")
    segment = form.cleaned_data["target"]
    job = operations.start_membership_job(segment, people, add=add, actor=request.user,
                                          description=description)
    remember_job(request, MEMBERSHIP_TOKENS, job.pk)
    if not job.is_finished:
        return htmx_redirect(request, reverse("segments:job", args=[job.pk]))
    messages.success(request, _outcome(job))
    return htmx_redirect(request, reverse("segments:detail", args=[segment.pk]))


def _outcome(job: MembershipJob) -> str:
    if job.adds:
        return f"Added {job.changed} {_people(job.changed)} to {job.segment.name}."
    return f"Removed {job.changed} {_people(job.changed)} from {job.segment.name}."


@role_required("viewer")
def membership_job_detail(request, pk):
    """A membership job's progress (polled while it runs) and outcome."""
    job = get_object_or_404(MembershipJob.objects.select_related("segment", "requested_by"),
                            pk=pk, workspace=request.membership.workspace)
    template = "segments/membershipjob_detail.html"
    if request.htmx:
        template += "#job-progress"
    return render(request, template, {"job": job, "outcome": _outcome(job)})


def _people(count: int) -> str:
    return "person" if count == 1 else "people"
