"""Which people a People page form selects, and the People table that shows them.

The People page and the segment pages share both: their tables are the same, and their
actions (Delete forever, Add to / Remove from segment) post the same selection: ticked
rows, or "all matching" the page's filters.

The filters are a form named by the ``PEOPLE_FILTER_FORM`` setting, a subclass of
``people.forms.PeopleSearchForm``: the segments app offers filters by segment and
attribute (its condition trees), which this app knows nothing of.
"""

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.http import QueryDict
from django.urls import reverse
from django.utils.module_loading import import_string

from engage.pages import capped_count, keyset_page, safe_back
from people.forms import PeopleSearchForm
from people.models import Event, Person

PAGE_SIZE = 50
# The session key of the deletion jobs that confirmed dialogs started, whichever page
# confirmed them (People, a segment's Delete Profiles): one job per confirmation.
DELETION_TOKENS = "deletion_tokens"


def filter_form(data=None, *, workspace) -> PeopleSearchForm:
    """Return the People page's filter form, bound to ``data`` when given."""
    return import_string(settings.PEOPLE_FILTER_FORM)(data, workspace=workspace)


def filtered_people(workspace, form: PeopleSearchForm):
    """Return the workspace's people that the People page's (valid) filters select."""
    return form.filter(Person.objects.in_workspace(workspace))


def selected_people(request, workspace):
    """Return the people a posted People table form names, and how to describe them.

    Either the ticked rows (``person``) or, with ``select_all``, all the people that the
    posted filters match; (None, "") when the selection cannot be read.
    """
    if request.POST.get("select_all") == "1":
        form = filter_form(request.POST, workspace=workspace)
        if not form.is_valid():
            return None, ""
        return filtered_people(workspace, form), "People page: all people matching the filters"
    try:
        ids = [int(value) for value in request.POST.getlist("person")]
    except ValueError:
        return None, ""
    return (Person.objects.in_workspace(workspace).filter(pk__in=ids),
            "People page: selected people")


def people_table(people, *, before: int | None = None, key: str = "pk",
                 counted=None) -> dict:
    """Return the People table's context for ``people``: one keyset page and a capped count.

    The segment page shows its members with the same table: its people are ordered by
    ``key``, the membership's person id (equal to pk, in the membership index's order),
    and counted through ``counted``, the memberships themselves.
    """
    last_seen = (Event.objects.filter(person=OuterRef("pk")).order_by("-timestamp")
                 .values("timestamp")[:1])
    rows, next_before = keyset_page(people.annotate(last_seen=Subquery(last_seen)),
                                    size=PAGE_SIZE, before=before, key=key)
    count, more = capped_count(people if counted is None else counted)
    return {"people": rows, "count": count, "more": more, "next_before": next_before}


def deletion_job_url(job_id: int, *, back: str | None) -> str:
    """Return a deletion job's page, linking back to ``back`` when that is a path here."""
    url = reverse("deletionjob-detail", args=[job_id])
    back = safe_back(back)
    if back:
        query = QueryDict(mutable=True)
        query["from"] = back
        url += "?" + query.urlencode()
    return url
