"""Node kinds are registered: another app adds one without segments importing it.

The kind here stands in for the campaigns app's ``engagement`` (taken out meanwhile): its
rows live in a table of its own (made by the test), it is checked by the validator,
compiled in both forms, used by the real-time re-evaluation and the preview, and edited
in the builder, and it is refused again once unregistered.
"""

import re
from datetime import UTC, datetime

import pytest
import time_machine
from django import forms
from django.db import connection
from django.template import engines
from django.urls import reverse

from segments import conditions, services
from segments.builder_forms import Builder, RowKind
from segments.conditions import (
    Analysis,
    ConditionError,
    NodeKind,
    compile_tree,
    matching_people,
    validate,
)
from segments.models import Membership, Segment
from tests.factories import make_person
from tests.segments.test_builder import form_fields, problems_of, rows

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DAY = 86_400
METRICS = ("sent", "opened", "clicked")
REFUSED = conditions.UNAVAILABLE["engagement"]


def validate_engagement(validator, body, here):
    if not isinstance(body, dict) or body.get("metric") not in METRICS:
        validator.fail(f"{here}.metric", "metric must be one of " + ", ".join(METRICS))
    elif body.get("within_days") is not None and not isinstance(body["within_days"], int):
        validator.fail(f"{here}.within_days", "within_days must be a whole number")


def engagement_depends(body):
    return Analysis(time_relative=body.get("within_days") is not None)


def engagement_where(compiler, body) -> list[str]:
    where = [f"te.metric = {compiler.param(body['metric'])}"]
    if body.get("within_days") is not None:
        since = int(compiler.now.timestamp()) - body["within_days"] * DAY
        where.append(f"te.at >= {compiler.param(since)}")
    return where


def engagement_set_wide(compiler, body):
    """The people with such an engagement, as one set read once."""
    where = []  # parameters are taken in the order of the SQL
    if compiler.workspace_id is not None:
        where.append(f"te.workspace_id = {compiler.param(compiler.workspace_id)}")
    where += engagement_where(compiler, body)
    return (f"{compiler.person}.id IN (SELECT te.person_id FROM toy_engagement te "
            f"WHERE {' AND '.join(where)})")


def engagement_correlated(compiler, body):
    """This person's engagements, one lookup per person."""
    where = [f"te.person_id = {compiler.person}.id", *engagement_where(compiler, body)]
    return f"EXISTS (SELECT 1 FROM toy_engagement te WHERE {' AND '.join(where)})"


class EngagementRowForm(forms.Form):
    metric = forms.ChoiceField(choices=[(m, m) for m in METRICS], initial="opened",
                               required=False)
    within_days = forms.CharField(required=False)


def engagement_node(row, path):
    body = {"metric": row.values["metric"]}
    days = row.values["within_days"].strip()
    if days:
        body["within_days"] = int(days) if days.isdigit() else days
    return {"engagement": body}


def engagement_values(body):
    days = body.get("within_days")
    return {"metric": body["metric"], "within_days": "" if days is None else str(days)}, []


ENGAGEMENT = NodeKind(
    "engagement", validate_engagement, engagement_set_wide,
    correlated=engagement_correlated, depends=engagement_depends,
    row=RowKind(
        label="Engagement", form=EngagementRowForm,
        template=engines["django"].from_string(
            '<span class="cond-label">Was</span> {{ row.form.metric }} '
            "in the last {{ row.form.within_days }} days"),
        to_node=engagement_node, from_node=engagement_values,
    ),
)


@pytest.fixture(autouse=True)
def without_campaigns_engagement():
    """Stand in for the campaigns app's own ``engagement`` kind, and put it back after."""
    real = conditions.node_kind("engagement")
    conditions.unregister("engagement")
    try:
        yield
    finally:
        conditions.unregister("engagement")
        if real is not None:
            conditions.register(real)


@pytest.fixture
def engagement(workspace):
    """Register the kind, with its table; unregister it afterwards."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE toy_engagement (workspace_id bigint, person_id bigint, "
                       "metric varchar(20), at bigint)")
    conditions.register(ENGAGEMENT)
    try:
        yield ENGAGEMENT
    finally:
        conditions.unregister("engagement")


def engage(person, metric: str, days_ago: int):
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO toy_engagement VALUES (%s, %s, %s, %s)",
                       [person.workspace_id, person.pk, metric,
                        int(NOW.timestamp()) - days_ago * DAY])


@pytest.fixture
def people(workspace, other_workspace, engagement):
    ada = make_person(workspace, "ada", plan="pro")
    bob = make_person(workspace, "bob", plan="free")
    make_person(workspace, "cy", plan="pro")
    engage(ada, "opened", 3)
    engage(bob, "opened", 40)
    engage(bob, "clicked", 1)
    # Another workspace's engagement never counts.
    engage(make_person(other_workspace, "cy"), "opened", 1)
    return workspace


def found(workspace, tree, *, correlated):
    people = matching_people(workspace, tree, now=NOW, correlated=correlated)
    return set(people.values_list("customer_id", flat=True))


def test_engagement_is_refused_until_registered_and_again_after(workspace):
    tree = {"and": [{"engagement": {"metric": "opened"}}]}
    with pytest.raises(ConditionError) as error:
        validate(tree, workspace=workspace)
    assert error.value.problems == [("and[0].engagement", REFUSED)]
    conditions.register(ENGAGEMENT)
    try:
        validate(tree, workspace=workspace)
    finally:
        conditions.unregister("engagement")
    with pytest.raises(ConditionError) as error:
        validate(tree, workspace=workspace)
    assert error.value.problems == [("and[0].engagement", REFUSED)]


def test_a_kind_key_cannot_be_taken_twice(engagement):
    conditions.register(ENGAGEMENT)  # the same kind again changes nothing
    with pytest.raises(ValueError, match="registered already"):
        conditions.register(NodeKind("engagement", validate_engagement, engagement_set_wide))
    with pytest.raises(ValueError, match="registered already"):
        conditions.register(NodeKind("event", validate_engagement, engagement_set_wide))


def test_the_validator_checks_the_registered_kind(workspace, engagement):
    analysis = validate({"not": {"engagement": {"metric": "opened", "within_days": 30}}},
                        workspace=workspace)
    assert analysis.time_relative
    assert not validate({"engagement": {"metric": "sent"}}, workspace=workspace).time_relative
    with pytest.raises(ConditionError) as error:
        validate({"or": [{"engagement": {"metric": "read"}},
                         {"engagement": {"metric": "sent", "within_days": "x"}}]},
                 workspace=workspace)
    assert error.value.problems == [
        ("or[0].engagement.metric", "metric must be one of sent, opened, clicked"),
        ("or[1].engagement.within_days", "within_days must be a whole number"),
    ]


def test_each_form_compiles_with_the_kinds_own_sql(engagement):
    tree = {"engagement": {"metric": "opened", "within_days": 7}}
    set_wide = compile_tree(tree, now=NOW, workspace_id=1)
    correlated = compile_tree(tree, now=NOW, correlated=True, workspace_id=1)
    assert set_wide.sql.startswith("people_person.id IN (SELECT te.person_id")
    assert set_wide.params == [1, "opened", int(NOW.timestamp()) - 7 * DAY]
    assert correlated.sql.startswith("EXISTS (SELECT 1 FROM toy_engagement te "
                                     "WHERE te.person_id = people_person.id")
    assert correlated.params == ["opened", int(NOW.timestamp()) - 7 * DAY]


@pytest.mark.parametrize("correlated", [False, True], ids=["set-wide", "correlated"])
@pytest.mark.parametrize("tree, expected", [
    ({"engagement": {"metric": "opened"}}, {"ada", "bob"}),
    ({"engagement": {"metric": "opened", "within_days": 30}}, {"ada"}),
    ({"not": {"engagement": {"metric": "opened", "within_days": 30}}}, {"bob", "cy"}),
    ({"and": [{"attribute": {"field": "plan", "operator": "eq", "value": "free"}},
              {"engagement": {"metric": "clicked", "within_days": 7}}]}, {"bob"}),
])
def test_both_forms_select_the_same_people(people, tree, expected, correlated):
    validate(tree, workspace=people)
    assert found(people, tree, correlated=correlated) == expected


def test_real_time_evaluation_and_preview_use_the_kind(workspace, people,
                                                       django_capture_on_commit_callbacks):
    tree = {"engagement": {"metric": "clicked", "within_days": 7}}
    with time_machine.travel(NOW, tick=False):
        assert services.preview(workspace, tree).count == 1
        with django_capture_on_commit_callbacks(execute=True):
            segment = services.create_segment(workspace, name="Clicked", conditions_tree=tree)
        segment.refresh_from_db()
        assert segment.time_relative
        members = Membership.objects.filter(segment=segment)
        assert set(members.values_list("person__customer_id", flat=True)) == {"bob"}
        ada = workspace.people.get(customer_id="ada")
        engage(ada, "clicked", 0)
        changes = services.evaluate_people(workspace, [ada.pk])
    assert (changes.entered, changes.exited) == (1, 0)
    assert set(members.values_list("person__customer_id", flat=True)) == {"ada", "bob"}


def test_the_builder_offers_edits_and_saves_the_kind(client, editor, workspace, people):
    new = reverse("segments:new")
    html = client.get(new).content.decode()
    assert 'value="add:engagement:0"' in html and "+ Engagement" in html
    assert "disabled title=" not in html  # no longer "not available yet"

    added = client.post(new, {"op": "add:engagement:0", "name": "Engaged",
                              **rows((0, "and", None, {}))}, HTTP_HX_REQUEST="true")
    fields = form_fields(added)
    assert (fields["n-1-kind"], fields["n-1-metric"]) == ("engagement", "opened")

    data = rows((0, "and", None, {}),
                (1, "engagement", 0, {"metric": "opened", "within_days": "30"}))
    with time_machine.travel(NOW, tick=False):
        preview = client.post(reverse("segments:preview"), data).content.decode()
    assert re.search(r'id="preview-count" data-count="1"', preview)

    bad = rows((0, "and", None, {}), (1, "engagement", 0, {"metric": "opened",
                                                            "within_days": "soon"}))
    assert problems_of(client.post(reverse("segments:preview"), bad), 1) == [
        "within_days must be a whole number"]

    client.post(new, {"name": "Engaged", "kind": "data_driven", **data})
    segment = Segment.objects.get(name="Engaged")
    assert segment.conditions == {"and": [{"engagement": {"metric": "opened",
                                                          "within_days": 30}}]}
    edit = form_fields(client.get(reverse("segments:edit", kwargs={"pk": segment.pk})))
    assert (edit["n-1-metric"], edit["n-1-within_days"]) == ("opened", "30")
    assert Builder.from_tree(segment.conditions).tree() == segment.conditions


def test_the_builder_stops_offering_the_kind_once_unregistered(client, editor, engagement):
    assert 'value="add:engagement:0"' in client.get(reverse("segments:new")).content.decode()
    conditions.unregister("engagement")
    html = client.get(reverse("segments:new")).content.decode()
    assert 'value="add:engagement:0"' not in html
    assert "disabled title=" in html
    # A posted row of a kind no longer registered is dropped, not guessed at.
    data = rows((0, "and", None, {}), (1, "engagement", 0, {"metric": "opened"}))
    assert Builder.from_post(data).tree() is None


# --- a registered kind's segment references ------------------------------------------------


def validate_in_any(validator, body, here):
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids):
        validator.fail(f"{here}.ids", "ids must be a list of segment ids")


def compile_in_any(compiler, body):
    ids = ", ".join(compiler.param(segment_id) for segment_id in body["ids"])
    return (f"EXISTS (SELECT 1 FROM segments_membership sm WHERE sm.segment_id IN ({ids}) "
            f"AND sm.person_id = {compiler.person}.id)")


IN_ANY = NodeKind("in_any", validate_in_any, compile_in_any,
                  depends=lambda body: Analysis(segment_ids=set(body["ids"])))


@pytest.fixture
def in_any(db):
    conditions.register(IN_ANY)
    try:
        yield IN_ANY
    finally:
        conditions.unregister("in_any")


def test_a_kinds_segment_references_are_checked_and_ordered(workspace, in_any):
    pro = services.create_segment(workspace, name="Pro", conditions_tree={
        "attribute": {"field": "plan", "operator": "eq", "value": "pro"}})
    either = services.create_segment(workspace, name="Either", conditions_tree={
        "in_any": {"ids": [pro.pk]}})
    assert set(either.depends_on.all()) == {pro}
    with pytest.raises(ConditionError) as error:
        validate({"and": [{"in_any": {"ids": [pro.pk, 999999]}}]}, workspace=workspace)
    assert error.value.problems == [("and[0].in_any", "there is no segment 999999 in this "
                                                      "workspace")]
    with pytest.raises(ConditionError, match="cannot reference themselves"):
        validate({"in_any": {"ids": [either.pk]}}, workspace=workspace, segment_id=pro.pk)
    # Re-evaluating a person evaluates "Pro" first, then "Either" with its new members.
    ada = make_person(workspace, "ada", plan="pro")
    changes = services.evaluate_people(workspace, [ada.pk])
    assert (changes.entered, changes.exited) == (2, 0)
    assert set(Membership.objects.filter(person=ada).values_list("segment", flat=True)) == {
        pro.pk, either.pk}
