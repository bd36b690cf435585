"""people.services.update_people: identify bodies for many people, with set-based writes."""

import pytest

from people import services
from people.models import Activity
from people.services import Outcome
from segments.models import PendingEvaluation
from segments.services import create_segment
from tests.factories import make_person

pytestmark = pytest.mark.django_db


def test_many_people_change_at_once_as_identify_would_change_each(workspace):
    create_segment(workspace, name="Pro", conditions_tree={
        "attribute": {"field": "plan", "operator": "eq", "value": "pro"}})
    ada = make_person(workspace, "ada", plan="free", old="x")
    bob = make_person(workspace, "bob", plan="pro")
    cy = make_person(workspace, "cy", plan="free")
    PendingEvaluation.objects.all().delete()

    results = services.update_people(workspace, [
        (ada.pk, {"plan": "pro", "old": None}),
        (bob.pk, {"plan": "pro"}),  # already so
        (cy.pk, {"plan": {"too": "deep" * 100_000}}),  # refused: too large
        (ada.pk, {"seen": 1}),  # the same person again, after the first
        (10**9, {"plan": "pro"}),  # nobody
    ])

    assert [getattr(result, "outcome", "invalid") for result in results] == [
        Outcome.UPDATED, Outcome.UNCHANGED, "invalid", Outcome.UPDATED, Outcome.NOT_FOUND]
    assert isinstance(results[2], services.InvalidInput)
    for person in (ada, bob, cy):
        person.refresh_from_db()
    assert ada.attributes == {"plan": "pro", "seen": 1}
    assert (bob.attributes, cy.attributes) == ({"plan": "pro"}, {"plan": "free"})
    changes = list(Activity.objects.filter(cio_id=ada.cio_id,
                                           kind=Activity.Kind.ATTRIBUTES_CHANGED)
                   .order_by("pk").values_list("data", flat=True))
    assert changes[-2:] == [{"changed": {"plan": "pro", "old": None}},
                            {"changed": {"seen": 1}}]
    # Segments are owed a look at whoever changed, and only them.
    assert list(PendingEvaluation.objects.values_list("person_id", flat=True)) == [ada.pk]


def test_a_body_with_identifiers_takes_the_exact_path(workspace):
    ada = make_person(workspace, "ada", email="ada@example.com")
    make_person(workspace, "bob", email="bob@example.com")

    given, taken = services.update_people(workspace, [
        (ada.pk, {"email": "ada@new.example.com", "plan": "pro"}),
        (ada.pk, {"id": "bob"}),  # another person's id: a conflict, as identify says
    ])

    assert given.outcome == Outcome.UPDATED
    assert taken.outcome == Outcome.CONFLICT
    ada.refresh_from_db()
    assert (ada.email_key, ada.customer_id, ada.attributes["plan"]) == (
        "ada@new.example.com", "ada", "pro")


def test_one_body_for_many_people_is_read_once_and_applied_to_each(workspace, monkeypatch):
    from people.services import identify

    crowd = [make_person(workspace, name, plan="free") for name in ("ada", "bob", "cy")]
    reads = []
    original = identify.read_identify_body
    monkeypatch.setattr(identify, "read_identify_body",
                        lambda workspace, body: reads.append(body) or original(workspace, body))
    shared, refused = {"plan": "pro"}, {"plan": {"too": "deep" * 100_000}}

    results = services.update_people(workspace, [
        *((person.pk, shared) for person in crowd), (crowd[0].pk, refused),
        (crowd[1].pk, refused)])

    assert reads == [shared, refused]
    assert [getattr(result, "outcome", "invalid") for result in results] == [
        Outcome.UPDATED, Outcome.UPDATED, Outcome.UPDATED, "invalid", "invalid"]
    for person in crowd:
        person.refresh_from_db()
        assert person.attributes == {"plan": "pro"}
    assert Activity.objects.filter(kind=Activity.Kind.ATTRIBUTES_CHANGED,
                                   data={"changed": {"plan": "pro"}}).count() == 3


def test_a_shared_plain_body_changes_people_as_identify_would_without_loading_them(
        workspace):
    """``keep_people=False``: on PostgreSQL one statement applies the body to everyone
    (``update_attributes_in_sql``); the outcomes, attributes, activity and owed
    evaluations are those of the usual path (which SQLite takes)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from people.validation import MAX_ATTRIBUTES

    create_segment(workspace, name="Pro", conditions_tree={
        "attribute": {"field": "plan", "operator": "eq", "value": "pro"}})
    ada = make_person(workspace, "ada", plan="free", old="x")
    bob = make_person(workspace, "bob", plan="pro")
    full = make_person(workspace, "full", **{f"a{n}": n for n in range(MAX_ATTRIBUTES)})
    PendingEvaluation.objects.all().delete()
    body = {"plan": "pro", "old": None}

    with CaptureQueriesContext(connection) as queries:
        results = services.update_people(workspace, [
            (ada.pk, body), (bob.pk, body), (full.pk, body), (10**9, body)],
            keep_people=False)

    assert [getattr(result, "outcome", "invalid") for result in results] == [
        Outcome.UPDATED, Outcome.UNCHANGED, "invalid", Outcome.NOT_FOUND]
    assert "more than 300 attributes" in str(results[2])
    for person in (ada, bob, full):
        person.refresh_from_db()
    assert (ada.attributes, bob.attributes) == ({"plan": "pro"}, {"plan": "pro"})
    assert len(full.attributes) == MAX_ATTRIBUTES and "plan" not in full.attributes
    assert ada.updated_at > bob.updated_at
    assert list(Activity.objects.filter(kind=Activity.Kind.ATTRIBUTES_CHANGED)
                .values_list("cio_id", "data")) == [
        (ada.cio_id, {"changed": {"plan": "pro", "old": None}})]
    assert list(PendingEvaluation.objects.values_list("person_id", flat=True)) == [ada.pk]
    if connection.vendor == "postgresql":  # nobody was read into Python
        assert all(result.person is None for result in results if hasattr(result, "person"))
        assert not [q for q in queries.captured_queries
                    if q["sql"].startswith('SELECT "people_person"')]


def test_other_bodies_take_the_usual_path_even_without_people_kept(workspace):
    ada = make_person(workspace, "ada", email="ada@example.com", plan="free")
    bob = make_person(workspace, "bob", plan="free")
    shared = {"plan": "pro"}

    # An email is an identifier to resolve; different bodies are applied one by one.
    (given,) = services.update_people(workspace, [(ada.pk, {"email": "ada@new.example.com"})],
                                      keep_people=False)
    first, second = services.update_people(workspace, [(bob.pk, shared), (bob.pk, shared)],
                                           keep_people=False)

    assert given.outcome == Outcome.UPDATED and given.person is not None
    assert (first.outcome, second.outcome) == (Outcome.UPDATED, Outcome.UNCHANGED)
    ada.refresh_from_db()
    bob.refresh_from_db()
    assert (ada.email, bob.attributes) == ("ada@new.example.com", {"plan": "pro"})
