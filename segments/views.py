"""Segment pages: the list, a segment's members and actions (Delete Profiles, archive), and
adding the People page's selection to a manual segment or removing it from one."""

import json
import uuid

from django.contrib import messages
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from engage.workspaces import role_required
from people.views import people_table, selected_people
from segments import operations
from segments.forms import DeleteProfilesForm, ManualSegmentChoiceForm
from segments.models import Segment
from segments.services import set_archived

# The session key person_bulk_delete uses: one deletion job per confirmation, whichever
# page confirmed it.
DELETION_TOKENS = "deletion_tokens"


def _segment(request, pk) -> Segment:
    return get_object_or_404(Segment.objects.in_workspace(request.membership.workspace), pk=pk)


def _go(request, url):
    """Redirect, the HTMX way when HTMX asked."""
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


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
        **people_table(operations.segment_members(segment), before=before,
                       key="segment_memberships__person_id",
                       counted=operations.memberships(segment)),
    }
    if segment.conditions is not None:
        context["conditions_json"] = json.dumps(segment.conditions, indent=2,
                                                ensure_ascii=False)
    return context


@role_required("viewer")
def segment_detail(request, pk):
    segment = _segment(request, pk)
    before = request.GET.get("before", "")
    context = _page_context(segment, before=int(before) if before.isdigit() else None)
    if request.htmx and not request.htmx.boosted:
        return render(request, "people/person_list.html#people-table", context)
    return render(request, "segments/segment_detail.html", context)


@role_required("editor")
def segment_delete_profiles(request, pk):
    """Ask for the segment's exact name, then start one deletion job for its members."""
    segment = _segment(request, pk)
    if request.method == "POST":
        token = request.POST.get("token", "")
        started = request.session.get(DELETION_TOKENS, {})
        if token and token in started:
            return _go(request, reverse("deletionjob-detail", args=[started[token]]))
        form = DeleteProfilesForm(request.POST, segment=segment)
        if form.is_valid():
            job = operations.delete_profiles(segment, suppress=form.cleaned_data["suppress"],
                                             actor=request.user)
            if token:
                request.session[DELETION_TOKENS] = {**started, token: job.pk}
            return _go(request, reverse("deletionjob-detail", args=[job.pk]))
    else:
        form = DeleteProfilesForm(segment=segment)
    dialog = {"segment": segment, "delete_form": form, "token": uuid.uuid4().hex,
              "member_count": operations.memberships(segment).count()}
    if request.htmx:
        return render(request, "segments/segment_detail.html#delete-profiles-dialog", dialog)
    # Without HTMX: the segment page, with the dialog open.
    context = {**_page_context(segment), **dialog}
    status = 400 if form.is_bound else 200
    return render(request, "segments/segment_detail.html", context, status=status)


@role_required("editor")
@require_POST
def segment_archive(request, pk, *, archived: bool):
    segment = _segment(request, pk)
    set_archived(segment, archived)
    messages.success(request, f"Archived {segment.name}: its members no longer change."
                     if archived else f"Unarchived {segment.name}.")
    return _go(request, reverse("segments:detail", args=[segment.pk]))


def _membership_context(request, form, *, add: bool) -> dict | None:
    people, _ = selected_people(request, request.membership.workspace)
    if people is None:
        return None
    return {
        "add": add,
        "form": form,
        "selected_count": people.count(),
        "selection": [(key, value) for key in request.POST
                      if key not in ("csrfmiddlewaretoken", "target")
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
    """Add the selected people to a manual segment, or remove them, in batches."""
    workspace = request.membership.workspace
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
    people, _ = selected_people(request, workspace)
    if people is None:
        return HttpResponseBadRequest("the selection could not be read")
    segment = form.cleaned_data["target"]
    if add:
        changed = operations.add_people(segment, people)
        note = f"Added {changed} {_people(changed)} to {segment.name}."
    else:
        changed = operations.remove_people(segment, people)
        note = f"Removed {changed} {_people(changed)} from {segment.name}."
    messages.success(request, note)
    return _go(request, reverse("segments:detail", args=[segment.pk]))


def _people(count: int) -> str:
    return "person" if count == 1 else "people"
