"""Bad input gets a clear error naming the field and the limit, and writes nothing."""

import pytest

from people import services
from people.errors import InvalidInput
from people.models import Activity, Device, Event, Person
from people.services import Ref
from tests.factories import make_person


def problems_of(call):
    with pytest.raises(InvalidInput) as error:
        call()
    return error.value.problems


def assert_nothing_written():
    assert not Person.objects.exists()
    assert not Event.objects.exists()
    assert not Activity.objects.exists()


def test_identifier_over_150_bytes(workspace):
    problems = problems_of(lambda: services.identify_person(workspace, Ref("id", "é" * 76), {}))
    assert problems[0].field == "identifier"
    assert "150 bytes" in problems[0].message
    assert_nothing_written()
    # 150 bytes exactly is fine.
    assert services.identify_person(workspace, Ref("id", "é" * 75), {}).person


def test_body_id_over_150_bytes(workspace):
    problems = problems_of(
        lambda: services.identify_person(
            workspace, Ref("email", "a@example.com"), {"id": "x" * 151})
    )
    assert problems[0].field == "id"
    assert_nothing_written()


def test_attribute_name_over_150_bytes(workspace):
    problems = problems_of(
        lambda: services.identify_person(workspace, Ref("id", "u1"), {"n" * 151: 1})
    )
    assert "150 bytes" in problems[0].message
    assert_nothing_written()


def test_attribute_value_over_1000_bytes(workspace):
    problems = problems_of(
        lambda: services.identify_person(workspace, Ref("id", "u1"), {"bio": "ü" * 501})
    )
    assert problems[0].field == "bio"
    assert problems[0].message == "value for attribute 'bio' cannot be longer than 1000 bytes"
    assert_nothing_written()


def test_nested_attribute_value_is_measured_as_json(workspace):
    problems = problems_of(
        lambda: services.identify_person(workspace, Ref("id", "u1"), {"doc": {"a": "x" * 1000}})
    )
    assert problems[0].field == "doc"


def test_more_than_300_attributes_in_one_call(workspace):
    body = {f"a{n}": n for n in range(301)}
    problems = problems_of(lambda: services.identify_person(workspace, Ref("id", "u1"), body))
    assert problems[0].reason == "too_many_attributes"
    assert "300" in problems[0].message
    assert_nothing_written()


def test_more_than_300_attributes_on_a_person(workspace):
    person = make_person(workspace, "u1", **{f"a{n}": n for n in range(200)})
    problems = problems_of(lambda: services.identify_person(
        workspace, Ref("id", "u1"), {f"b{n}": n for n in range(150)}
    ))
    assert problems[0].reason == "too_many_attributes"
    person.refresh_from_db()
    assert len(person.attributes) == 200


def test_every_problem_is_reported_at_once(workspace):
    problems = problems_of(lambda: services.identify_person(
        workspace, Ref("id", "u1"), {"bio": "x" * 1001, "email": "not-an-email", "created_at": "x"}
    ))
    assert {p.field for p in problems} == {"bio", "email", "created_at"}


@pytest.mark.parametrize("email", ["not-an-email", "a@", "@b.com", "a b@c.com"])
def test_malformed_email_where_email_is_an_identifier(workspace, email):
    problems = problems_of(
        lambda: services.identify_person(workspace, Ref("id", "u1"), {"email": email})
    )
    assert problems[0].reason == "invalid_email"
    problems = problems_of(lambda: services.identify_person(workspace, Ref("email", email), {}))
    assert problems[0].field == "identifier"
    assert_nothing_written()


def test_malformed_email_is_fine_where_email_is_only_an_attribute(id_workspace):
    person = make_person(id_workspace, "u1", email="not-an-email")
    assert person.email == "not-an-email"


def test_unknown_identifier_type(workspace):
    problems = problems_of(lambda: services.identify_person(workspace, Ref("phone", "+1"), {}))
    assert problems[0].reason == "unknown_identifier_type"
    problems = problems_of(lambda: services.make_ref(workspace, "phone", "+1"))
    assert "unknown identifier type 'phone'" in problems[0].message


def test_event_name_over_100_bytes(workspace):
    problems = problems_of(
        lambda: services.track_event(workspace, Ref("id", "u1"), name="e" * 101)
    )
    assert problems[0].field == "name"
    assert "100 bytes" in problems[0].message
    assert_nothing_written()


def test_event_without_name(workspace):
    problems = problems_of(lambda: services.track_event(workspace, Ref("id", "u1"), name="  "))
    assert problems[0].reason == "required"


def test_event_data_over_100_kb(workspace):
    problems = problems_of(lambda: services.track_event(
        workspace, Ref("id", "u1"), name="big", data={"blob": "x" * 100_000}
    ))
    assert problems[0].field == "data"
    assert "100000 bytes" in problems[0].message
    assert_nothing_written()


def test_event_type_and_timestamp_are_checked(workspace):
    problems = problems_of(lambda: services.track_event(
        workspace, Ref("id", "u1"), name="x", type="click", timestamp="yesterday"
    ))
    assert {p.field for p in problems} == {"type", "timestamp"}


def test_anonymous_event_limits(workspace):
    problems = problems_of(lambda: services.track_anonymous_event(
        workspace, anonymous_id="a" * 151, name="visit"
    ))
    assert problems[0].field == "anonymous_id"
    assert_nothing_written()


def test_device_needs_a_token_and_a_known_platform(workspace):
    problems = problems_of(lambda: services.add_device(
        workspace, Ref("id", "u1"), token="", platform="windows"
    ))
    assert {p.field for p in problems} == {"device.id", "device.platform"}
    assert not Device.objects.exists()
    assert_nothing_written()


def test_nul_characters_are_refused_everywhere(workspace):
    for call in [
        lambda: services.identify_person(workspace, Ref("id", "a\x00b"), {}),
        lambda: services.identify_person(workspace, Ref("id", "u1"), {"na\x00me": 1}),
        lambda: services.identify_person(workspace, Ref("id", "u1"), {"doc": {"k": ["\x00"]}}),
        lambda: services.track_event(workspace, Ref("id", "u1"), name="lo\x00gin"),
        lambda: services.track_event(workspace, Ref("id", "u1"), name="x", data={"a": "\x00"}),
        lambda: services.track_event(workspace, Ref("id", "u1"), name="x", dedup_id="ab\x00c"),
    ]:
        assert problems_of(call)[0].reason == "invalid_value"
    assert_nothing_written()


def test_unpaired_surrogates_are_refused(workspace):
    problems = problems_of(
        lambda: services.identify_person(workspace, Ref("id", "u1"), {"name": "a\ud800b"}))
    assert problems[0].reason == "invalid_value"
    assert_nothing_written()
