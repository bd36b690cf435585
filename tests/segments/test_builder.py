"""The segment builder: new, edit and preview views, and the tree's round trip through rows."""

import copy
import re
import types
from html.parser import HTMLParser

import pytest
from django.http import HttpResponse
from django.test import Client
from django.urls import path, reverse

from engage import urls as engage_urls
from engage.models import Membership
from segments import builder_urls, conditions, services
from segments.builder_forms import (
    ATTRIBUTE_OPERATOR_CHOICES,
    COUNT_OPERATOR_CHOICES,
    Builder,
)
from segments.models import Segment
from tests.factories import make_member, make_person

NEW = reverse("segments:new")
PREVIEW = reverse("segments:preview")


def edit_url(segment) -> str:
    return reverse("segments:edit", kwargs={"pk": segment.pk})


@pytest.fixture
def beta(workspace):
    return services.create_segment(workspace, name="Beta")


class FormFields(HTMLParser):
    """Read the fields a browser would post from the builder's form, in document order."""

    def __init__(self):
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type", "text") not in {
                "submit", "button", "checkbox", "radio"}:
            self.fields.append((name, attrs.get("value") or ""))
        elif tag == "input" and name and attrs.get("type") in {"checkbox", "radio"}:
            if "checked" in attrs:
                self.fields.append((name, attrs.get("value", "on")))
        elif tag == "select" and name:
            self._select, self._options = name, []
        elif tag == "option" and self._select:
            self._options.append((attrs.get("value", ""), "selected" in attrs))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, ""

    def handle_data(self, data):
        if self._textarea:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "select" and self._select:
            chosen = [value for value, selected in self._options if selected]
            self.fields.append((self._select, (chosen or [self._options[0][0]])[0]))
            self._select = None
        elif tag == "textarea" and self._textarea:
            self.fields.append((self._textarea, self._text.removeprefix("\n")))
            self._textarea = None


def form_fields(response) -> dict[str, str]:
    parser = FormFields()
    parser.feed(response.content.decode())
    return dict(parser.fields)


def problems_of(response, row_id: int) -> list[str]:
    match = re.search(rf'<ul class="problems errorlist" id="problems-{row_id}"[^>]*>(.*?)</ul>',
                      response.content.decode(), re.S)
    assert match, f"no problems slot for row {row_id}"
    return [re.sub(r"&#x27;", "'", item) for item in re.findall(r"<li>(.*?)</li>", match[1])]


def rows(*specs) -> dict[str, str]:
    """Build posted builder fields: specs are (id, kind, parent, {part: value})."""
    data = {}
    for row_id, kind, parent, parts in specs:
        data[f"n-{row_id}-kind"] = kind
        data[f"n-{row_id}-parent"] = "" if parent is None else str(parent)
        for part, value in parts.items():
            data[f"n-{row_id}-{part}"] = value
    return data


def attr(field, operator, value=None) -> dict:
    body = {"field": field, "operator": operator}
    if value is not None:
        body["value"] = value
    return {"attribute": body}


# --- the tree's round trip ---------------------------------------------------------------

ATTRIBUTE_CASES = [
    attr("plan", "eq", "premium"),
    attr("plan", "neq", "free"),
    attr("name", "contains", "ann"),
    attr("name", "not_contains", "bot"),
    attr("email", "starts_with", "ops@"),
    attr("plan", "in", ["pro", "team", "enterprise"]),
    attr("age", "gt", 30),
    attr("score", "gte", 2.5),
    attr("age", "lt", -3),
    attr("age", "lte", 0),
    attr("phone", "exists"),
    attr("phone", "not_exists"),
    attr("trial_end", "is_timestamp"),
    attr("trial_end", "timestamp_before", {"days_ago": 7}),
    attr("trial_end", "timestamp_after", {"days_from_now": 3}),
    attr("signed_up", "timestamp_after", 1_700_000_000),
    attr("signed_up", "timestamp_before", {"days_ago": 0.5}),
    attr("address.city", "eq", "Lyon"),
    attr("items[]", "eq", "book"),
    attr("items[0]", "starts_with", "b"),
    attr("items[].price", "gt", 20),
    attr("id", "eq", "ada"),
    attr("cio_id", "exists"),
    attr("unsubscribed", "eq", "true"),
]
EVENT_CASES = [
    {"event": {"name": "login"}},
    *[{"event": {"name": "login", "count": {"operator": op, "value": 3}}}
      for op, _ in COUNT_OPERATOR_CHOICES if op != "gte"],
    {"event": {"name": "login", "count": {"operator": "gte", "value": 5}}},
    {"event": {"name": "login", "count": {"operator": "eq", "value": 0}, "within_days": 30}},
    {"event": {"name": "purchase", "within_days": 1.5}},
    {"event": {"name": "purchase", "within_days": 7, "filters": [
        attr("plan", "eq", "pro")["attribute"],
        attr("items[].price", "gte", 10)["attribute"],
        attr("coupon", "not_exists")["attribute"],
        attr("tags", "in", ["a", "b"])["attribute"],
        attr("at", "timestamp_after", {"days_ago": 2})["attribute"],
    ]}},
]
SEGMENT_CASES = [{"segment": {"id": "BETA"}}, {"not": {"segment": {"id": "BETA"}}}]
TREES = [
    *[{"and": [case]} for case in ATTRIBUTE_CASES + EVENT_CASES + SEGMENT_CASES],
    {"or": [attr("plan", "eq", "pro"), {"event": {"name": "login"}}]},
    {"and": [{"not": attr("plan", "eq", "free")}]},
    {"and": [{"not": {"or": [attr("plan", "eq", "free"), attr("plan", "eq", "trial")]}}]},
    {"not": {"and": [attr("plan", "eq", "free"), {"segment": {"id": "BETA"}}]}},
    {"not": {"segment": {"id": "BETA"}}},
    {"and": [
        attr("country", "eq", "FR"),
        {"or": [
            {"event": {"name": "purchase", "count": {"operator": "gt", "value": 2}}},
            {"and": [attr("vip", "eq", "true"), {"not": {"segment": {"id": "BETA"}}}]},
        ]},
        {"not": {"event": {"name": "refund", "within_days": 90}}},
    ]},
]


def with_segment(tree, segment_id):
    text = repr(tree).replace("'BETA'", str(segment_id))
    return eval(text)  # noqa: S307 - our own literals


def test_every_operator_of_the_contract_is_offered():
    assert {op for op, _ in ATTRIBUTE_OPERATOR_CHOICES} == conditions.ATTRIBUTE_OPERATORS
    assert {op for op, _ in COUNT_OPERATOR_CHOICES} == conditions.COUNT_OPERATORS
    covered = {case["attribute"]["operator"] for case in ATTRIBUTE_CASES}
    assert covered == conditions.ATTRIBUTE_OPERATORS


@pytest.mark.parametrize("tree", TREES, ids=lambda tree: repr(tree)[:70])
def test_a_tree_round_trips_through_the_builder_form(client, editor, workspace, beta, tree):
    tree = with_segment(tree, beta.pk)
    conditions.validate(tree, workspace=workspace)
    segment = services.create_segment(workspace, name="Round trip", conditions_tree=tree)

    page = client.get(edit_url(segment))
    assert page.status_code == 200
    fields = form_fields(page)
    assert fields["name"] == "Round trip"
    response = client.post(edit_url(segment), {**fields, "op": "save", "name": "Renamed"})

    assert response.status_code == 302, response.content.decode()
    segment.refresh_from_db()
    assert segment.conditions == tree
    assert segment.name == "Renamed"
    # The same fields, posted as they are, build the same tree.
    assert Builder.from_post(fields).tree() == tree


def test_a_leaf_at_the_root_is_shown_in_a_group_and_matches_the_same(client, editor, workspace):
    make_person(workspace, "ada", plan="pro")
    make_person(workspace, "bob", plan="free")
    segment = services.create_segment(workspace, name="Pro",
                                      conditions_tree=attr("plan", "eq", "pro"))
    fields = form_fields(client.get(edit_url(segment)))
    client.post(edit_url(segment), {**fields, "op": "save"})
    segment.refresh_from_db()
    assert segment.conditions == {"and": [attr("plan", "eq", "pro")]}
    assert [p.customer_id for p in services.preview(workspace, segment.conditions).sample] == [
        "ada"]


@pytest.mark.parametrize(("parts", "value"), [
    ({"operator": "eq", "value": "42"}, "42"),
    ({"operator": "gt", "value": " 42 "}, 42),
    ({"operator": "gte", "value": "1.25"}, 1.25),
    ({"operator": "lt", "value": "many"}, "many"),
    ({"operator": "in", "value": "pro\n\n team \r\nfree"}, ["pro", "team", "free"]),
    ({"operator": "exists", "value": "ignored"}, None),
    ({"operator": "timestamp_before", "value": "7", "unit": "days_ago"}, {"days_ago": 7}),
    ({"operator": "timestamp_after", "value": "2", "unit": "days_from_now"},
     {"days_from_now": 2}),
    ({"operator": "timestamp_after", "value": "1700000000", "unit": "unix"}, 1_700_000_000),
])
def test_values_are_read_by_operator(parts, value):
    data = rows((0, "and", None, {}), (1, "attribute", 0, {"field": " plan ", **parts}))
    ((node,),) = Builder.from_post(data).tree().values()
    assert node["attribute"]["field"] == "plan"
    assert node["attribute"].get("value") == value


def test_rows_that_do_not_fit_are_dropped():
    data = rows(
        (0, "or", None, {}),
        (1, "attribute", 0, {"field": "a", "operator": "exists"}),
        (2, "filter", 0, {"field": "x", "operator": "exists"}),  # a filter outside an event
        (3, "attribute", 1, {"field": "y", "operator": "exists"}),  # under a leaf
        (4, "attribute", 99, {"field": "z", "operator": "exists"}),  # unknown parent
        (5, "bogus", 0, {}),
        (6, "event", 0, {"name": "login"}),
        (7, "filter", 6, {"field": "plan", "operator": "eq", "value": "pro"}),
    )
    assert Builder.from_post(data).tree() == {"or": [
        attr("a", "exists"),
        {"event": {"name": "login", "filters": [attr("plan", "eq", "pro")["attribute"]]}},
    ]}


def test_problems_are_placed_on_the_row_their_place_names():
    builder = Builder.from_post(rows(
        (0, "and", None, {}),
        *[(n, "attribute", 0, {"field": f"f{n}", "operator": "exists"}) for n in range(1, 12)],
    ))
    builder.tree()
    builder.place([("and[1].attribute.value", "one"), ("and[10].attribute.field", "ten"),
                   ("(root)", "root")])
    assert builder.find(2).problems == ["one"]
    assert builder.find(11).problems == ["ten"]
    assert builder.root.problems == ["root"]


# --- pages, roles, workspaces ------------------------------------------------------------


def test_builder_pages_need_a_login(client, db):
    response = client.get(NEW)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("role", [Membership.Role.VIEWER])
def test_viewers_can_neither_build_nor_preview(client, workspace, role):
    segment = services.create_segment(workspace, name="Pro",
                                      conditions_tree=attr("plan", "eq", "pro"))
    client.force_login(make_member(workspace, role))
    data = {"name": "x", "kind": "data_driven", "op": "save",
            **rows((0, "and", None, {}), (1, "attribute", 0, {"field": "plan",
                                                              "operator": "exists"}))}
    assert client.get(NEW).status_code == 403
    assert client.post(NEW, data).status_code == 403
    assert client.get(edit_url(segment)).status_code == 403
    assert client.post(edit_url(segment), data).status_code == 403
    assert client.post(PREVIEW, data).status_code == 403
    assert Segment.objects.count() == 1
    segment.refresh_from_db()
    assert segment.name == "Pro"


@pytest.mark.parametrize("role", [Membership.Role.EDITOR, Membership.Role.ADMIN])
def test_editors_and_admins_build(client, workspace, role):
    client.force_login(make_member(workspace, role))
    page = client.get(NEW)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="builder"' in html and 'id="preview-empty"' in html
    assert 'value="manual"' in html and 'value="data_driven"' in html


def test_another_workspaces_segment_is_not_found(client, editor, other_workspace):
    theirs = services.create_segment(other_workspace, name="Theirs",
                                     conditions_tree=attr("plan", "exists"))
    assert client.get(edit_url(theirs)).status_code == 404
    assert client.post(edit_url(theirs), {"name": "Mine now", "op": "save"}).status_code == 404
    data = {"segment": str(theirs.pk), **rows((0, "and", None, {}))}
    assert client.post(PREVIEW, data).status_code == 404
    theirs.refresh_from_db()
    assert theirs.name == "Theirs"


def test_builder_posts_need_the_csrf_token(workspace):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_member(workspace, Membership.Role.EDITOR))
    data = {"name": "x", "kind": "data_driven", "op": "save",
            **rows((0, "and", None, {}), (1, "attribute", 0, {"field": "plan",
                                                              "operator": "exists"}))}
    assert client.post(NEW, data).status_code == 403
    assert client.post(PREVIEW, data).status_code == 403
    assert not Segment.objects.exists()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"',
                      client.get(NEW).content.decode())[1]
    assert client.post(NEW, {**data, "csrfmiddlewaretoken": token}).status_code == 302
    assert Segment.objects.count() == 1


def test_only_get_and_post(client, editor):
    assert client.put(NEW).status_code == 405
    assert client.get(PREVIEW).status_code == 405


# --- creating and editing ----------------------------------------------------------------


def test_creating_a_data_driven_segment(client, editor, workspace,
                                        django_capture_on_commit_callbacks):
    ada = make_person(workspace, "ada", plan="pro")
    make_person(workspace, "bob", plan="free")
    data = {"name": " Pro customers ", "description": "paying", "kind": "data_driven",
            "op": "save", **rows((0, "and", None, {}),
                                 (1, "attribute", 0, {"field": "plan", "operator": "eq",
                                                      "value": "pro"}))}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(NEW, data)

    segment = Segment.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse_saved(segment)
    assert (segment.name, segment.description, segment.kind) == (
        "Pro customers", "paying", Segment.Kind.DATA_DRIVEN)
    assert segment.conditions == {"and": [attr("plan", "eq", "pro")]}
    assert list(segment.memberships.values_list("person_id", flat=True)) == [ada.pk]


def reverse_saved(segment):
    from segments.builder import saved_url

    return saved_url(segment)


def test_creating_a_manual_segment_ignores_the_builder(client, editor):
    data = {"name": "VIPs", "kind": "manual", "op": "save",
            **rows((0, "and", None, {}), (1, "attribute", 0, {"field": ""}))}
    assert client.post(NEW, data).status_code == 302
    segment = Segment.objects.get()
    assert segment.kind == Segment.Kind.MANUAL and segment.conditions is None


def test_an_invalid_tree_is_never_saved_and_each_message_sits_by_its_row(client, editor,
                                                                           workspace):
    data = {"name": "Broken", "kind": "data_driven", "op": "save", **rows(
        (0, "and", None, {}),
        (1, "attribute", 0, {"field": "plan", "operator": "eq", "value": "pro"}),
        (2, "or", 0, {}),
        (3, "attribute", 2, {"field": "age", "operator": "gt", "value": "old"}),
        (4, "event", 2, {"name": "", "count_operator": "gte", "count_value": "1"}),
        (5, "filter", 4, {"field": "items[", "operator": "exists"}),
        (6, "not", 0, {}),
    )}
    response = client.post(NEW, data)

    assert response.status_code == 200
    assert not Segment.objects.exists()
    assert problems_of(response, 1) == []
    assert problems_of(response, 2) == []
    assert problems_of(response, 3) == ["'gt' needs a number"]
    assert problems_of(response, 4) == ["event name must be a string of 1 to 100 bytes"]
    assert problems_of(response, 5) == ["'items[' is not a valid field path"]
    assert problems_of(response, 6) == ["Add a condition to this group."]
    html = response.content.decode()
    assert 'id="preview-problems"' in html and "Fix the 4 problems" in html
    # What was typed is kept.
    fields = form_fields(response)
    assert fields["name"] == "Broken" and fields["n-3-value"] == "old"


def test_another_workspaces_segment_cannot_be_named(client, editor, workspace, other_workspace):
    theirs = services.create_segment(other_workspace, name="Theirs")
    data = {"name": "Sneaky", "kind": "data_driven", "op": "save", **rows(
        (0, "and", None, {}),
        (1, "attribute", 0, {"field": "plan", "operator": "exists"}),
        (2, "segment", 0, {"segment": str(theirs.pk), "membership": "not_in"}),
    )}
    response = client.post(NEW, data)
    assert response.status_code == 200
    assert not Segment.objects.filter(workspace=workspace).exists()
    message = f"there is no segment {theirs.pk} in this workspace"
    assert problems_of(response, 2) == [message] and problems_of(response, 1) == []
    # Their segment's name is not shown: the row names only its id.
    html = response.content.decode()
    assert "Theirs" not in html
    assert f'<option value="{theirs.pk}" selected>segment {theirs.pk} (not in this' in html


def test_saving_an_empty_builder_asks_for_a_condition(client, editor):
    response = client.post(NEW, {"name": "Nobody", "kind": "data_driven", "op": "save",
                                 **rows((0, "and", None, {}))})
    assert response.status_code == 200 and not Segment.objects.exists()
    assert problems_of(response, 0) == ["Add at least one condition."]


def test_a_name_is_needed(client, editor):
    response = client.post(NEW, {"name": "  ", "kind": "data_driven", "op": "save", **rows(
        (0, "and", None, {}), (1, "attribute", 0, {"field": "plan", "operator": "exists"}))})
    assert response.status_code == 200 and not Segment.objects.exists()
    assert "This field is required." in response.content.decode()


def test_editing_conditions_name_and_description(client, editor, workspace,
                                                 django_capture_on_commit_callbacks):
    make_person(workspace, "ada", plan="pro")
    bob = make_person(workspace, "bob", plan="free")
    segment = services.create_segment(workspace, name="Pro", description="old",
                                      conditions_tree=attr("plan", "eq", "pro"))
    page = client.get(edit_url(segment))
    fields = form_fields(page)
    assert fields["n-1-field"] == "plan" and fields["n-1-value"] == "pro"
    assert 'data-count="1"' in page.content.decode()  # the saved tree's preview

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(edit_url(segment), {**fields, "n-1-value": "free",
                                                    "name": "Free", "description": "new",
                                                    "op": "save"})
    assert response.status_code == 302
    segment.refresh_from_db()
    assert (segment.name, segment.description) == ("Free", "new")
    assert segment.conditions == {"and": [attr("plan", "eq", "free")]}
    assert list(segment.memberships.values_list("person_id", flat=True)) == [bob.pk]


def test_an_invalid_edit_leaves_the_segment_as_it_was(client, editor, workspace):
    tree = {"and": [attr("plan", "eq", "pro")]}
    segment = services.create_segment(workspace, name="Pro", conditions_tree=tree)
    fields = form_fields(client.get(edit_url(segment)))
    response = client.post(edit_url(segment), {**fields, "name": "Changed", "op": "save",
                                                "n-1-operator": "lt", "n-1-value": "x"})
    assert response.status_code == 200
    assert problems_of(response, 1) == ["'lt' needs a number"]
    segment.refresh_from_db()
    assert (segment.name, segment.conditions) == ("Pro", tree)


def test_a_segment_cannot_come_to_reference_itself(client, editor, workspace):
    first = services.create_segment(workspace, name="First", conditions_tree=attr("a", "exists"))
    second = services.create_segment(workspace, name="Second",
                                     conditions_tree={"segment": {"id": first.pk}})
    third = services.create_segment(workspace, name="Third")
    fields = form_fields(client.get(edit_url(first)))
    added = client.post(edit_url(first), {**fields, "op": "add:segment:0"},
                        HTTP_HX_REQUEST="true").content.decode()
    assert f'<option value="{second.pk}">Second</option>' in added
    assert f'<option value="{first.pk}">' not in added  # not itself
    data = {**fields, **rows((2, "segment", 0, {"segment": str(second.pk)}),
                             (3, "segment", 0, {"segment": str(third.pk)}))}

    preview = client.post(PREVIEW, data)
    assert problems_of(preview, 2) == [
        "segments cannot reference themselves, directly or through others"]
    assert problems_of(preview, 3) == [] and problems_of(preview, 0) == []
    response = client.post(edit_url(first), {**data, "op": "save"})
    assert problems_of(response, 2) == [
        "segments cannot reference themselves, directly or through others"]
    assert problems_of(response, 3) == []
    first.refresh_from_db()
    assert first.conditions == attr("a", "exists")


def test_a_manual_segment_edits_only_its_name_and_description(client, editor, workspace):
    segment = services.create_segment(workspace, name="VIPs")
    page = client.get(edit_url(segment))
    assert page.status_code == 200 and 'id="builder"' not in page.content.decode()
    response = client.post(edit_url(segment), {"name": "Top VIPs", "description": "d",
                                                "op": "save"})
    assert response.status_code == 302
    segment.refresh_from_db()
    assert (segment.name, segment.kind, segment.conditions) == ("Top VIPs", "manual", None)


def _urlconf(with_detail: bool):
    def detail(request, pk):
        return HttpResponse("detail")

    patterns = list(builder_urls.urlpatterns)
    if with_detail:
        patterns.append(path("<int:pk>/", detail, name="detail"))
    others = [p for p in engage_urls.urlpatterns if getattr(p, "namespace", None) != "segments"]
    urlconf = types.ModuleType("builder_test_urls")
    urlconf.urlpatterns = [path("segments/", _included(patterns)), *others]
    return urlconf


def _included(patterns):
    from django.urls import include

    return include((patterns, "segments"))


@pytest.mark.parametrize(("with_detail", "target"), [(True, "/segments/{pk}/"),
                                                      (False, "/segments/{pk}/edit/")])
def test_saving_goes_to_the_segment_page_when_there_is_one(client, editor, settings,
                                                           with_detail, target):
    settings.ROOT_URLCONF = _urlconf(with_detail)
    response = client.post("/segments/new/", {"name": "VIPs", "kind": "manual", "op": "save"})
    segment = Segment.objects.get()
    assert response.status_code == 302
    assert response["Location"] == target.format(pk=segment.pk)


# --- adding and removing rows ------------------------------------------------------------


@pytest.mark.parametrize(("op", "added"), [
    ("add:attribute:0", 'name="n-2-field"'),
    ("add:event:0", 'name="n-2-name"'),
    ("add:segment:0", 'name="n-2-segment"'),
    ("add:and:0", 'name="n-3-field"'),  # a group comes with a row to fill in
    ("add:filter:1", None),  # not under an attribute
])
def test_adding_rows_renders_the_builder(client, editor, op, added):
    data = {"name": "", "kind": "data_driven", "op": op, **rows(
        (0, "and", None, {}), (1, "attribute", 0, {"field": "plan", "operator": "exists"}))}
    response = client.post(NEW, data, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="builder"')  # the partial, not the page
    assert 'name="n-1-field" value="plan"' in html
    if added:
        assert added in html and "autofocus" in html
        assert 'id="preview-incomplete"' in html  # the blank row is not called a mistake
    else:
        assert 'name="n-2-' not in html
    assert not Segment.objects.exists()


def test_adding_a_filter_to_an_event_and_removing_rows(client, editor):
    data = {"op": "add:filter:1", **rows((0, "and", None, {}), (1, "event", 0, {"name": "login"}),
                                         (2, "attribute", 0, {"field": "a"}))}
    html = client.post(NEW, data, HTTP_HX_REQUEST="true").content.decode()
    # Renumbered in the order shown: the filter follows its event.
    assert 'name="n-2-kind" value="filter"' in html and 'name="n-3-field" value="a"' in html

    data = {"op": "remove:1", **rows((0, "and", None, {}), (1, "event", 0, {"name": "login"}),
                                     (2, "filter", 1, {"field": "x"}),
                                     (3, "attribute", 0, {"field": "a", "operator": "exists"}))}
    response = client.post(NEW, data)  # without htmx: the whole page
    html = response.content.decode()
    assert "<html" in html
    assert 'name="n-1-field" value="a"' in html and 'name="n-2-kind"' not in html
    assert 'data-count="0"' in html


@pytest.mark.parametrize(("operator", "shown", "hidden"), [
    ("in", "<textarea", 'name="n-1-unit"'),
    ("timestamp_before", 'name="n-1-unit"', "<textarea"),
    ("gt", 'type="number" step="any" name="n-1-value"', "<textarea"),
    ("exists", None, 'name="n-1-value"'),
])
def test_changing_the_operator_changes_the_value_input(client, editor, operator, shown, hidden):
    data = {"op": "refresh", **rows((0, "and", None, {}),
                                    (1, "attribute", 0, {"field": "plan", "operator": operator}))}
    html = client.post(NEW, data, HTTP_HX_REQUEST="true").content.decode()
    if shown:
        assert shown in html
    assert hidden not in html


def test_engagement_is_offered_once_the_campaigns_app_registers_it(client, editor, workspace):
    html = client.get(NEW).content.decode()
    assert 'value="add:engagement:0"' in html and "+ Engagement" in html
    assert "disabled title=" not in html


# --- live preview ------------------------------------------------------------------------


def test_preview_counts_and_samples_the_matching_people(client, editor, workspace,
                                                        other_workspace):
    people = [make_person(workspace, f"p{n:02d}", plan="pro", age=n) for n in range(12)]
    make_person(workspace, "free", plan="free")
    make_person(other_workspace, "elsewhere", plan="pro")
    data = rows((0, "and", None, {}),
                (1, "attribute", 0, {"field": "plan", "operator": "eq", "value": "pro"}))
    response = client.post(PREVIEW, data)

    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-count="12"' in html and "12</strong>" in html
    links = re.findall(r'<a href="/people/([^/]+)/">', html)
    assert links == [person.cio_id for person in reversed(people)][:10]
    assert problems_of(response, 0) == [] and problems_of(response, 1) == []
    assert 'hx-swap-oob="true"' in html

    data["n-1-operator"], data["n-1-field"], data["n-1-value"] = "lt", "age", "3"
    assert 'data-count="3"' in client.post(PREVIEW, data).content.decode()


def test_preview_shows_the_validators_messages_out_of_band(client, editor):
    data = rows((0, "or", None, {}),
                (1, "attribute", 0, {"field": "plan", "operator": "eq", "value": "pro"}),
                (2, "not", 0, {}),
                (3, "attribute", 2, {"field": "", "operator": "in", "value": ""}))
    response = client.post(PREVIEW, data)
    html = response.content.decode()
    assert 'id="preview-problems"' in html and 'data-count' not in html
    assert problems_of(response, 1) == []
    assert problems_of(response, 3) == ["field must be a non-empty string",
                                        "'in' needs a list of 1 to 1000 values"]
    assert re.search(r'id="problems-3" hx-swap-oob="true"', html)


def test_preview_of_an_empty_builder(client, editor):
    html = client.post(PREVIEW, rows((0, "and", None, {}))).content.decode()
    assert 'id="preview-empty"' in html


def test_previewing_takes_no_write(client, editor, workspace, django_assert_max_num_queries):
    make_person(workspace, "ada", plan="pro")
    data = rows((0, "and", None, {}),
                (1, "event", 0, {"name": "login", "count_operator": "eq", "count_value": "0"}))
    before = copy.deepcopy(list(Segment.objects.values()))
    with django_assert_max_num_queries(12):
        html = client.post(PREVIEW, data).content.decode()
    assert 'data-count="1"' in html
    assert list(Segment.objects.values()) == before


def test_a_tree_refused_by_the_service_at_save_time_is_shown_not_saved(client, editor,
                                                                        workspace, monkeypatch):
    """A segment referenced between the check and the save still gets a clear answer."""
    tree = {"and": [attr("plan", "eq", "pro")]}
    segment = services.create_segment(workspace, name="Pro", conditions_tree=tree)
    fields = form_fields(client.get(edit_url(segment)))

    def refuse(segment, **changes):
        segment.name = changes["name"]
        raise conditions.ConditionError([("and[0].attribute", "changed meanwhile")])

    monkeypatch.setattr(services, "update_segment", refuse)
    response = client.post(edit_url(segment), {**fields, "name": "Renamed", "op": "save"})
    assert response.status_code == 200
    assert problems_of(response, 1) == ["changed meanwhile"]
    assert "Edit “Pro”" in response.content.decode()
    segment.refresh_from_db()
    assert (segment.name, segment.conditions) == ("Pro", tree)
