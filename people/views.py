"""The home page, the People page (search, filters, keyset pages, HTMX updates), a
person's page and deletion jobs."""

import json
import uuid

from django.contrib import messages
from django.db.models import OuterRef, Subquery
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from engage.workspaces import role_required
from people import services
from people.forms import AttributeForm, PeopleFilterForm
from people.models import Activity, DeletionJob, Event, Person, Suppression
from people.services import start_deletion_job
from segments.models import Segment

PAGE_SIZE = 50
COUNT_CAP = 10_000


def filtered_people(workspace, form: PeopleFilterForm):
    """Return the workspace's people that the People page's filters select."""
    people = Person.objects.in_workspace(workspace)
    tree = form.condition_tree()
    if tree is not None:
        from segments.conditions import matching_people

        people = matching_people(workspace, tree)
    return form.search(people)


def capped_count(people) -> tuple[int, bool]:
    """Count up to COUNT_CAP people; tell whether there are more (no full COUNT(*))."""
    count = people.order_by()[:COUNT_CAP + 1].count()
    return min(count, COUNT_CAP), count > COUNT_CAP


def people_table(people, *, before: int | None = None, key: str = "pk",
                 counted=None) -> dict:
    """Return the People table's context for ``people``: one keyset page and a capped count.

    The segment page shows its members with the same table: its people are ordered by
    ``key``, the membership's person id (equal to pk, in the membership index's order),
    and counted through ``counted``, the memberships themselves.
    """
    last_seen = (Event.objects.filter(person=OuterRef("pk")).order_by("-timestamp")
                 .values("timestamp")[:1])
    page = people.order_by(f"-{key}")
    if before:
        page = page.filter(pk__lt=before)  # ``key`` equals pk, in the order it names
    rows = list(page.annotate(last_seen=Subquery(last_seen))[:PAGE_SIZE + 1])
    count, more = capped_count(people if counted is None else counted)
    return {"people": rows[:PAGE_SIZE], "count": count, "more": more,
            "next_before": rows[PAGE_SIZE - 1].pk if len(rows) > PAGE_SIZE else None}


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
def person_list(request):
    workspace = request.membership.workspace
    form = PeopleFilterForm(request.GET or None, workspace=workspace)
    people = filtered_people(workspace, form) if form.is_valid() or not form.is_bound else None
    context = {"form": form, "people": [], "count": 0, "more": False, "next_before": None,
               "token": uuid.uuid4().hex}
    if people is not None:
        before = form.cleaned_data.get("before") if form.is_bound else None
        context.update(people_table(people, before=before))
    template = "people/person_list.html"
    if request.htmx and not request.htmx.boosted:
        template += "#people-table"
    return render(request, template, context)


def selected_people(request, workspace):
    """Return the people a deletion form names: ticked rows, or all that match the filters."""
    if request.POST.get("select_all") == "1":
        form = PeopleFilterForm(request.POST, workspace=workspace)
        if not form.is_valid():
            return None, ""
        return filtered_people(workspace, form), "People page: all people matching the filters"
    try:
        ids = [int(value) for value in request.POST.getlist("person")]
    except ValueError:
        return None, ""
    return (Person.objects.in_workspace(workspace).filter(pk__in=ids),
            "People page: selected people")


@role_required("editor")
@require_POST
def person_bulk_delete(request):
    """Start a deletion job for the confirmed set (a double submit starts only one)."""
    workspace = request.membership.workspace
    token = request.POST.get("token", "")
    started = request.session.get("deletion_tokens", {})
    if token and token in started:
        return _to_job(request, started[token])
    people, description = selected_people(request, workspace)
    if people is None:
        return HttpResponseBadRequest("the selection could not be read")
    suppress = request.POST.get("suppress") == "1"
    job = start_deletion_job(workspace, people, suppress=suppress, actor=request.user,
                             description=description, source=Suppression.Source.UI)
    if token:
        request.session["deletion_tokens"] = {**started, token: job.pk}
    return _to_job(request, job.pk)


def _to_job(request, job_id):
    url = reverse("deletionjob-detail", args=[job_id])
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


@role_required("viewer")
def deletion_job_detail(request, pk):
    job = get_object_or_404(DeletionJob.objects.select_related("requested_by"),
                            pk=pk, workspace=request.membership.workspace)
    template = "people/deletionjob_detail.html"
    if request.htmx:
        template += "#job-progress"
    return render(request, template, {"job": job})


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
    selection = [(key, value) for key in request.POST if key not in ("csrfmiddlewaretoken",)
                 for value in request.POST.getlist(key)]
    return render(request, "people/person_list.html#delete-dialog", {
        "selected_count": people.count(), "selection": selection, "token": uuid.uuid4().hex,
    })


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
    events = person.events.order_by("-pk")
    before = request.GET.get("events_before", "")
    if before.isdigit():
        events = events.filter(pk__lt=int(before))
    events = list(events[:EVENTS_PAGE + 1])
    context = {
        "person": person,
        "attributes_json": json.dumps(person.attributes, indent=2, sort_keys=True,
                                      ensure_ascii=False),
        "events": events[:EVENTS_PAGE],
        "events_before": events[EVENTS_PAGE - 1].pk if len(events) > EVENTS_PAGE else None,
        "segments": Segment.objects.filter(memberships__person=person).order_by("name"),
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
    messages.success(request, "Deleted and suppressed." if suppress else "Deleted.")
    return redirect("person-detail", cio_id=cio_id)
