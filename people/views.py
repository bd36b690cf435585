"""The home page, the People page (search, filters, keyset pages, HTMX updates), a
person's page and deletion jobs."""

import json

from django.contrib import messages
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from engage.pages import (
    htmx_redirect,
    keyset_page,
    new_submit_token,
    remember_job,
    safe_back,
    started_job,
    swaps_a_partial,
    varies_with_htmx,
)
from engage.workspaces import role_required
from people import services
from people.confirmation import SelectionChanged, start_if_confirmed
from people.forms import AttributeForm
from people.models import Activity, DeletionJob, Person, Suppression
from people.selection import (
    DELETION_TOKENS,
    deletion_job_url,
    filter_form,
    filtered_people,
    people_table,
    selected_people,
)
from people.services import start_deletion_job


@role_required("viewer")
def home(request):
    """The marketer's home page: profiles, deletions this month, recent deletion jobs."""
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


@role_required("viewer")
@never_cache
def person_list(request):
    workspace = request.membership.workspace
    form = filter_form(request.GET or None, workspace=workspace)
    people = filtered_people(workspace, form) if form.is_valid() or not form.is_bound else None
    context = {"form": form, "people": [], "count": 0, "more": False, "next_before": None,
               "token": new_submit_token()}
    if people is not None:
        before = form.cleaned_data.get("before") if form.is_bound else None
        context.update(people_table(people, before=before))
    template = "people/person_list.html"
    if swaps_a_partial(request):
        template += "#people-table"
    return varies_with_htmx(render(request, template, context))


@role_required("editor")
@require_POST
def person_bulk_delete(request):
    """Start a deletion job for the confirmed set (a double submit starts only one)."""
    workspace = request.membership.workspace
    if (started := started_job(request, DELETION_TOKENS)) is not None:
        return _to_job(request, started)
    people, description = selected_people(request, workspace)
    if people is None:
        return HttpResponseBadRequest("the selection could not be read")
    suppress = request.POST.get("suppress") == "1"
    if request.POST.get("select_all") == "1":  # name the filters on the job's page
        description = ("People page: all people "
                       + filter_form(request.POST, workspace=workspace).describe())
    try:
        job = start_if_confirmed(lambda: start_deletion_job(
            workspace, people, suppress=suppress, actor=request.user, description=description,
            source=Suppression.Source.UI), confirmed=request.POST.get("count"))
    except SelectionChanged as changed:
        return delete_dialog(request, changed.count, changed=True)
    remember_job(request, DELETION_TOKENS, job.pk)
    return _to_job(request, job.pk)


def _to_job(request, job_id):
    return htmx_redirect(request, deletion_job_url(job_id, back=request.POST.get("from")))


@role_required("viewer")
@never_cache
def deletion_job_detail(request, pk):
    job = get_object_or_404(DeletionJob.objects.select_related("requested_by"),
                            pk=pk, workspace=request.membership.workspace)
    template = "people/deletionjob_detail.html"
    if swaps_a_partial(request):
        template += "#job-progress"
    return varies_with_htmx(render(request, template, {
        "job": job, "back_url": safe_back(request.GET.get("from"))}))


@role_required("viewer")
def deletion_job_list(request):
    jobs = (DeletionJob.objects.filter(workspace=request.membership.workspace)
            .select_related("requested_by").order_by("-created_at")[:100])
    return render(request, "people/deletionjob_list.html", {"jobs": jobs})


@role_required("editor")
@require_POST
def person_bulk_delete_confirm(request):
    """Render the confirmation dialog for a selection, with its exact count."""
    workspace = request.membership.workspace
    people, _ = selected_people(request, workspace)
    if people is None:
        return HttpResponseBadRequest("the selection could not be read")
    return delete_dialog(request, people.count())


EVENTS_PAGE = 20


def _person_or_gone(request, cio_id):
    workspace = request.membership.workspace
    person = Person.objects.in_workspace(workspace).filter(cio_id=cio_id).first()
    if person is not None:
        return person, None
    deleted = Activity.objects.filter(workspace=workspace, cio_id=cio_id,
                                      kind=Activity.Kind.DELETED).first()
    status = 410 if deleted else 404
    return None, render(request, "people/person_gone.html",
                        {"cio_id": cio_id, "deleted": deleted}, status=status)


@role_required("viewer")
def person_detail(request, cio_id):
    person, gone = _person_or_gone(request, cio_id)
    if gone:
        return gone
    before = request.GET.get("events_before", "")
    events, events_before = keyset_page(person.events.all(), size=EVENTS_PAGE,
                                        before=int(before) if before.isdigit() else None)
    context = {
        "person": person,
        "attributes_json": json.dumps(person.attributes, indent=2, sort_keys=True,
                                      ensure_ascii=False),
        "events": events,
        "events_before": events_before,
        # Through the relation the segments app declares on people: this app imports none.
        "segments": [membership.segment for membership in person.segment_memberships
                     .select_related("segment").order_by("segment__name")],
        "devices": person.devices.order_by("-last_used"),
        "activity": Activity.objects.filter(workspace=person.workspace, cio_id=person.cio_id)
        .order_by("-created_at")[:50],
        "attribute_form": AttributeForm(),
    }
    template = "people/person_detail.html"
    if request.htmx and request.GET.get("events_before"):
        template += "#person-events"
    return render(request, template, context)


@role_required("editor")
@require_POST
def person_set_attribute(request, cio_id):
    person, gone = _person_or_gone(request, cio_id)
    if gone:
        return gone
    form = AttributeForm(request.POST)
    if form.is_valid():
        try:
            services.identify_person(person.workspace, services.Ref("cio_id", person.cio_id),
                                     {form.cleaned_data["name"]: form.parsed_value()})
        except services.InvalidInput as error:
            messages.error(request, str(error))
        else:
            messages.success(request, f"Set {form.cleaned_data['name']}.")
    else:
        messages.error(request, "; ".join(e for errors in form.errors.values() for e in errors))
    return redirect("person-detail", cio_id=person.cio_id)


@role_required("editor")
@require_POST
def person_delete(request, cio_id):
    person, gone = _person_or_gone(request, cio_id)
    if gone:
        return gone
    suppress = request.POST.get("suppress") == "1"
    services.delete_people(person.workspace, [person], suppress=suppress, actor=request.user,
                           source=Suppression.Source.UI)
    if suppress:
        # Their page is forgotten with them: say so where the marketer can go on.
        messages.success(request, "The person was deleted and their identifiers suppressed: "
                                  "they can never be added again.")
        return redirect("person-list")
    messages.success(request, "Deleted.")
    return redirect("person-detail", cio_id=cio_id)


def delete_dialog(request, selected_count: int, *, changed: bool = False):
    """Render the deletion dialog for the posted selection, counted ``selected_count``.

    HTMX gets the dialog; a plain request gets it as a page of its own, whose Cancel goes
    back to the page the selection was made on.
    """
    context = {
        "selected_count": selected_count, "changed": changed, "token": new_submit_token(),
        "selection": [(key, value) for key in request.POST
                      if key not in ("csrfmiddlewaretoken", "token", "count", "suppress")
                      for value in request.POST.getlist(key)],
        "back_url": safe_back(request.POST.get("from")) or reverse("person-list"),
    }
    if swaps_a_partial(request):
        return render(request, "people/person_list.html#delete-dialog", context)
    return render(request, "people/person_confirm_delete.html", context,
                  status=409 if changed else 200)
