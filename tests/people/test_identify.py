"""Customer.io's identify resolution rules, as people.services.identify_person applies them."""

import pytest
import time_machine
from django.utils import timezone

from people import services
from people.models import Activity, Event, Person
from people.services import Outcome, Ref
from tests.factories import make_person, make_workspace


def identify(workspace, kind, value, **body):
    return services.identify_person(workspace, Ref(kind, value), body)


def test_unknown_identifiers_create_a_person_with_a_cio_id(workspace):
    result = identify(workspace, "id", "u1", email="Ada@Example.com", plan="pro")

    assert result.outcome == Outcome.CREATED
    person = Person.objects.get(workspace=workspace)
    assert person.customer_id == "u1"
    assert person.email == "Ada@Example.com"
    assert person.email_key == "ada@example.com"
    assert person.attributes == {"email": "Ada@Example.com", "plan": "pro"}
    assert len(person.cio_id) == 12 and person.cio_id.isalnum()
    assert Activity.objects.filter(cio_id=person.cio_id, kind=Activity.Kind.CREATED).exists()


def test_cio_ids_are_unique_and_unguessable(workspace):
    cio_ids = {make_person(workspace, f"u{n}").cio_id for n in range(50)}
    assert len(cio_ids) == 50
    assert not any(cio_id.startswith("0000") for cio_id in cio_ids)


def test_known_path_identifier_updates_that_person(workspace):
    person = make_person(workspace, "u1", plan="free")

    result = identify(workspace, "id", "u1", plan="pro", seats=3)

    assert result.outcome == Outcome.UPDATED
    person.refresh_from_db()
    assert person.attributes == {"plan": "pro", "seats": 3}
    assert Person.objects.count() == 1
    change = Activity.objects.get(cio_id=person.cio_id, kind=Activity.Kind.ATTRIBUTES_CHANGED)
    assert change.data == {"changed": {"plan": "pro", "seats": 3}}


def test_the_same_attributes_again_change_nothing(workspace):
    make_person(workspace, "u1", plan="free")
    assert identify(workspace, "id", "u1", plan="free").outcome == Outcome.UNCHANGED
    assert Activity.objects.filter(kind=Activity.Kind.ATTRIBUTES_CHANGED).count() == 0


def test_ids_are_case_sensitive_and_emails_are_not(workspace):
    make_person(workspace, "User1", email="ada@example.com")

    identify(workspace, "id", "user1")
    identify(workspace, "email", "ADA@EXAMPLE.COM", plan="pro")

    assert Person.objects.count() == 2
    assert Person.objects.get(customer_id="User1").attributes["plan"] == "pro"


def test_unknown_path_id_with_known_body_email_gives_that_person_the_id(workspace):
    person = make_person(workspace, email="ada@example.com")
    assert person.customer_id is None

    result = identify(workspace, "id", "u1", email="ada@example.com", plan="pro")

    assert result.outcome == Outcome.UPDATED
    person.refresh_from_db()
    assert person.customer_id == "u1"
    assert person.attributes["plan"] == "pro"
    assert Person.objects.count() == 1


def test_unknown_path_email_with_known_body_id_gives_that_person_the_email(workspace):
    person = make_person(workspace, "u1")

    identify(workspace, "email", "ada@example.com", id="u1")

    person.refresh_from_db()
    assert person.email == "ada@example.com"
    assert Person.objects.count() == 1


def test_identifiers_of_two_people_are_a_conflict_and_change_nothing(workspace):
    first = make_person(workspace, "u1", plan="free")
    make_person(workspace, "u2", email="ada@example.com")

    result = identify(workspace, "id", "u1", email="ada@example.com", plan="pro")

    assert result.outcome == Outcome.CONFLICT
    first.refresh_from_db()
    assert first.email is None and first.attributes == {"plan": "free"}
    assert Activity.objects.filter(cio_id=first.cio_id, kind=Activity.Kind.UPDATE_FAILED).exists()


def test_changing_an_email_by_id_is_refused_unless_the_workspace_allows_it(workspace):
    person = make_person(workspace, "u1", email="old@example.com")

    assert identify(workspace, "id", "u1", email="new@example.com").outcome == Outcome.CONFLICT
    person.refresh_from_db()
    assert person.email == "old@example.com"

    workspace.allow_email_update_by_id = True
    workspace.save()
    assert identify(workspace, "id", "u1", email="new@example.com").outcome == Outcome.UPDATED
    person.refresh_from_db()
    assert (person.email, person.email_key) == ("new@example.com", "new@example.com")


def test_changing_the_id_requires_the_cio_id_path(workspace):
    person = make_person(workspace, "u1", email="ada@example.com")

    assert identify(workspace, "email", "ada@example.com", id="u2").outcome == Outcome.CONFLICT
    assert identify(workspace, "id", "u1", id="u2").outcome == Outcome.CONFLICT
    person.refresh_from_db()
    assert person.customer_id == "u1"

    result = identify(workspace, "cio_id", person.cio_id, id="u2", email="grace@example.com")

    assert result.outcome == Outcome.UPDATED
    person.refresh_from_db()
    assert (person.customer_id, person.email) == ("u2", "grace@example.com")
    assert Activity.objects.filter(kind=Activity.Kind.IDENTIFIERS_CHANGED).exists()


def test_cio_id_path_cannot_take_another_persons_identifier(workspace):
    person = make_person(workspace, "u1")
    make_person(workspace, "u2")

    result = identify(workspace, "cio_id", person.cio_id, id="u2")

    assert result.outcome == Outcome.CONFLICT
    person.refresh_from_db()
    assert person.customer_id == "u1"


def test_unknown_cio_id_is_dropped(workspace):
    result = identify(workspace, "cio_id", "doesnotexist", plan="pro")
    assert result.outcome == Outcome.NOT_FOUND
    assert not Person.objects.exists()


def test_update_only_never_creates(workspace):
    result = identify(workspace, "id", "u1", _update=True, plan="pro")

    assert result.outcome == Outcome.NOT_FOUND
    assert not Person.objects.exists()
    assert Activity.objects.filter(kind=Activity.Kind.UPDATE_FAILED).exists()

    make_person(workspace, "u1")
    assert identify(workspace, "id", "u1", _update=True, plan="pro").outcome == Outcome.UPDATED


def test_created_at_is_unix_seconds(workspace):
    person = make_person(workspace, "u1", created_at=1_700_000_000)
    assert int(person.created_at.timestamp()) == 1_700_000_000
    assert person.attributes["created_at"] == 1_700_000_000

    identify(workspace, "id", "u1", created_at="1600000000")
    person.refresh_from_db()
    assert int(person.created_at.timestamp()) == 1_600_000_000


@pytest.mark.parametrize("value", ["2024-01-01T00:00:00Z", 1_700_000_000_000, True, "soon"])
def test_created_at_that_is_not_unix_seconds_is_refused(workspace, value):
    with pytest.raises(services.InvalidInput) as error:
        identify(workspace, "id", "u1", created_at=value)
    assert error.value.problems[0].field == "created_at"
    assert not Person.objects.exists()


@pytest.mark.parametrize(
    "value, expected",
    [(True, True), ("true", True), ("TRUE", True), ("True", True), (1, True), ("1", True),
     (False, False), ("yes", False), (0, False), ("0", False), (None, False), ("false", False)],
)
def test_unsubscribed_truthiness(workspace, value, expected):
    person = make_person(workspace, "u1", unsubscribed=value)
    assert person.unsubscribed is expected
    assert "unsubscribed" not in person.attributes


def test_unsubscribing_is_logged(workspace):
    person = make_person(workspace, "u1")
    identify(workspace, "id", "u1", unsubscribed=True)
    assert Activity.objects.filter(cio_id=person.cio_id, kind=Activity.Kind.UNSUBSCRIBED).exists()


def test_empty_or_null_values_remove_attributes(workspace):
    person = make_person(workspace, "u1", plan="pro", nickname="ada", seats=3)

    identify(workspace, "id", "u1", plan="", nickname=None)

    person.refresh_from_db()
    assert person.attributes == {"seats": 3}


def test_nested_json_attributes_are_kept(workspace):
    person = make_person(workspace, "u1", company={"name": "Acme", "tags": ["a", "b"]})
    assert person.attributes["company"] == {"name": "Acme", "tags": ["a", "b"]}


def test_subscription_preference_dot_notation_updates_one_topic(workspace):
    make_person(workspace, "u1", cio_subscription_preferences={"topics": {"topic_1": True,
                                                                          "topic_3": True}})

    identify(workspace, "id", "u1", **{"cio_subscription_preferences.topics.topic_3": False})

    person = Person.objects.get()
    assert person.attributes["cio_subscription_preferences"] == {
        "topics": {"topic_1": True, "topic_3": False}
    }


def test_older_timestamp_does_not_overwrite_newer_update(workspace):
    make_person(workspace, "u1", plan="pro", _timestamp=2_000)

    assert identify(workspace, "id", "u1", plan="free", _timestamp=1_000).outcome == Outcome.STALE
    assert Person.objects.get().attributes["plan"] == "pro"
    assert identify(workspace, "id", "u1", plan="team", _timestamp=3_000).outcome == Outcome.UPDATED
    assert Person.objects.get().attributes["plan"] == "team"


def test_anonymous_id_links_recent_anonymous_events(workspace):
    now = timezone.now()
    with time_machine.travel(now - timezone.timedelta(days=40), tick=False):
        services.track_anonymous_event(workspace, anonymous_id="anon-1", name="old_visit")
    services.track_anonymous_event(workspace, anonymous_id="anon-1", name="visit")
    services.track_anonymous_event(workspace, anonymous_id="anon-2", name="someone_else")

    person = make_person(workspace, "u1", anonymous_id="anon-1")

    assert list(person.events.values_list("name", flat=True)) == ["visit"]
    assert Event.objects.get(name="old_visit").person is None
    assert Event.objects.get(name="someone_else").person is None
    assert "anonymous_id" not in person.attributes
    # An anonymous id, once linked, keeps pointing at its person.
    services.track_anonymous_event(workspace, anonymous_id="anon-1", name="later")
    assert Event.objects.get(name="later").person == person


def test_email_is_an_ordinary_attribute_in_an_id_workspace(id_workspace):
    first = make_person(id_workspace, "u1", email="same@example.com")
    second = make_person(id_workspace, "u2", email="same@example.com")

    assert first.email == second.email == "same@example.com"
    assert first.email_key is None
    with pytest.raises(services.InvalidInput):
        identify(id_workspace, "email", "same@example.com", plan="pro")
    # An email-shaped path value is an id there.
    assert services.parse_identifier(id_workspace, "a@b.c") == Ref("id", "a@b.c")


def test_email_attribute_can_be_cleared_in_an_id_workspace(id_workspace):
    person = make_person(id_workspace, "u1", email="ada@example.com")
    identify(id_workspace, "id", "u1", email="")
    person.refresh_from_db()
    assert person.email is None and "email" not in person.attributes


@pytest.mark.parametrize(
    "raw, expected",
    [("cio_abc123", Ref("cio_id", "abc123")), ("ada@example.com", Ref("email", "ada@example.com")),
     ("42", Ref("id", "42")), ("a/b c+d", Ref("id", "a/b c+d"))],
)
def test_path_identifier_is_read_by_its_shape(workspace, raw, expected):
    assert services.parse_identifier(workspace, raw) == expected


def test_workspaces_do_not_see_each_others_people(workspace, other_workspace):
    mine = make_person(workspace, "u1", email="ada@example.com", plan="pro")

    result = identify(other_workspace, "id", "u1", email="ada@example.com", plan="free")

    assert result.outcome == Outcome.CREATED
    assert result.person.pk != mine.pk
    mine.refresh_from_db()
    assert mine.attributes["plan"] == "pro"
    assert identify(other_workspace, "cio_id", mine.cio_id, plan="x").outcome == Outcome.NOT_FOUND


def test_two_workspaces_modes_are_independent(db):
    classic = make_workspace("Classic", mode="id")
    modern = make_workspace("Modern")
    make_person(classic, "u1", email="ada@example.com")
    make_person(modern, "u1", email="ada@example.com")
    assert Person.objects.filter(email_key="ada@example.com").count() == 1
