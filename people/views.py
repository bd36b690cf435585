"""The People page: search, filters, keyset pages, HTMX updates."""

from django.db.models import OuterRef, Subquery
from django.shortcuts import render

from engage.workspaces import role_required
from people.forms import PeopleFilterForm
from people.models import Event, Person

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


@role_required("viewer")
def person_list(request):
    workspace = request.membership.workspace
    form = PeopleFilterForm(request.GET or None, workspace=workspace)
    people = filtered_people(workspace, form) if form.is_valid() or not form.is_bound else None
    context = {"form": form, "people": [], "count": 0, "more": False, "next_before": None}
    if people is not None:
        last_seen = (Event.objects.filter(person=OuterRef("pk")).order_by("-timestamp")
                     .values("timestamp")[:1])
        page = people.order_by("-pk")
        before = form.cleaned_data.get("before") if form.is_bound else None
        if before:
            page = page.filter(pk__lt=before)
        rows = list(page.annotate(last_seen=Subquery(last_seen))[:PAGE_SIZE + 1])
        context["people"] = rows[:PAGE_SIZE]
        if len(rows) > PAGE_SIZE:
            context["next_before"] = rows[PAGE_SIZE - 1].pk
        context["count"], context["more"] = capped_count(people)
    template = "people/person_list.html"
    if request.htmx and not request.htmx.boosted:
        template += "#people-table"
    return render(request, template, context)
