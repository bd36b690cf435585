"""Bad input never reaches the database: every API answers a JSON 400 naming the field.

Customer.io's clients throw on a body that is not JSON, so neither hostile bodies nor
an unexpected failure may answer Django's HTML error pages.
"""

import json
from urllib.parse import quote

import pytest
from rest_framework.test import APIClient

from people.models import Device, Event, Person
from segments.models import Export, Segment
from segments.services import create_segment
from tests.api.conftest import basic
from tests.factories import make_person


def send(client, method, url, body):
    text = body if isinstance(body, str) else json.dumps(body)
    return getattr(client, method)(url, data=text, content_type="application/json")


def deep(depth: int, leaf="x") -> str:
    """Return JSON text of ``depth`` nested objects, each under the key ``o``."""
    return '{"o":' * depth + json.dumps(leaf) + "}" * depth


def v1_errors(response) -> list[str]:
    assert response["Content-Type"] == "application/json", response.content[:200]
    return response.json()["meta"]["errors"]


def v2_fields(response) -> list[str]:
    assert response["Content-Type"] == "application/json", response.content[:200]
    return [error["field"] for error in response.json()["errors"]]


def app_error(response) -> str:
    assert response["Content-Type"] == "application/json", response.content[:200]
    return response.json()["meta"]["error"]


# --- item 6: JSON nested 1,000 deep --------------------------------------------------------


def test_identify_nested_a_thousand_deep_is_a_400(track):
    response = send(track, "put", "/api/v1/customers/u1", '{"plan":"pro","o":' + deep(999) + "}")
    assert response.status_code == 400
    (message,) = v1_errors(response)
    assert "o" in message and "deep" in message
    assert not Person.objects.exists()


def test_event_data_nested_a_thousand_deep_is_a_400(track):
    body = '{"name":"login","data":' + deep(1000) + "}"
    response = send(track, "post", "/api/v1/customers/u1/events", body)
    assert response.status_code == 400
    assert "data" in v1_errors(response)[0]
    assert not Event.objects.exists()


def test_nesting_within_the_limit_is_kept(track):
    response = send(track, "put", "/api/v1/customers/u1", '{"o":' + deep(10) + "}")
    assert response.status_code == 200
    assert Person.objects.get().attributes["o"]["o"]["o"]


def test_v2_entity_nested_a_thousand_deep_names_the_field(track):
    body = ('{"type":"person","action":"identify","identifiers":{"id":"u1"},'
            '"attributes":' + deep(1000) + "}")
    response = send(track, "post", "/api/v2/entity", body)
    assert response.status_code == 400
    assert v2_fields(response) == ["attributes.o.o"]


def test_v2_batch_nested_a_thousand_deep_is_a_400(track):
    body = ('{"batch":[{"type":"person","action":"identify","identifiers":{"id":"u1"},'
            '"attributes":' + deep(1000) + "}]}")
    response = send(track, "post", "/api/v2/batch", body)
    assert response.status_code == 400
    assert v2_fields(response) == ["batch[0].attributes"]
    assert not Person.objects.exists()


# --- item 6: non-finite numbers, wrong types ----------------------------------------------


def test_non_finite_number_nested_in_attributes_is_a_400(track):
    response = send(track, "put", "/api/v1/customers/u1", '{"o":{"n":1e400}}')
    assert response.status_code == 400
    assert "o.n" in v1_errors(response)[0]
    assert not Person.objects.exists()


def test_non_finite_number_nested_in_event_data_is_a_400(track):
    response = send(track, "post", "/api/v1/customers/u1/events",
                    '{"name":"buy","data":{"o":{"n":-1e400}}}')
    assert response.status_code == 400
    assert "data.o.n" in v1_errors(response)[0]
    assert not Event.objects.exists()


def test_non_finite_number_in_v2_event_names_the_field(track):
    response = send(track, "post", "/api/v2/entity",
                    '{"type":"person","action":"event","identifiers":{"id":"u1"},'
                    '"name":"buy","attributes":{"items":[1e400]}}')
    assert response.status_code == 400
    assert v2_fields(response) == ["attributes.items[0]"]


@pytest.mark.parametrize("kind", [["page"], {"a": 1}])
def test_event_type_that_is_not_text_is_a_400(track, kind):
    response = send(track, "post", "/api/v1/customers/u1/events", {"name": "x", "type": kind})
    assert response.status_code == 400
    assert "type" in v1_errors(response)[0]
    response = send(track, "post", "/api/v1/events",
                    {"name": "x", "type": kind, "anonymous_id": "a1"})
    assert response.status_code == 400
    assert not Event.objects.exists()


def test_v2_action_that_is_an_object_is_a_400(track):
    response = send(track, "post", "/api/v2/entity",
                    {"type": "person", "action": {"a": 1}, "identifiers": {"id": "u1"}})
    assert response.status_code == 400
    assert v2_fields(response) == ["action"]
    response = send(track, "post", "/api/v2/batch", {"batch": [
        {"type": ["person"], "action": "identify", "identifiers": {"id": "u1"}}]})
    assert response.status_code == 207
    assert v2_fields(response) == ["type"]


def test_subscription_preferences_as_text_beside_a_dotted_topic_is_a_400(track):
    response = send(track, "put", "/api/v1/customers/u1", {
        "cio_subscription_preferences": "all", "cio_subscription_preferences.topics.topic_1": True,
    })
    assert response.status_code == 400
    assert "cio_subscription_preferences" in v1_errors(response)[0]
    assert not Person.objects.exists()


# --- item 6: NUL characters --------------------------------------------------------------------


def test_nul_in_a_device_token_is_a_400(track, workspace):
    make_person(workspace, "u1")
    response = send(track, "put", "/api/v1/customers/u1/devices",
                    {"device": {"id": "tok\x00en", "platform": "ios"}})
    assert response.status_code == 400
    assert "device.id" in v1_errors(response)[0]
    response = track.delete("/api/v1/customers/u1/devices/" + quote("tok\x00en"))
    assert response.status_code == 400
    assert "token" in v1_errors(response)[0]
    response = send(track, "post", "/api/v2/entity", {
        "type": "person", "action": "delete_device", "identifiers": {"id": "u1"},
        "device": {"token": "a\x00b"}})
    assert response.status_code == 400
    assert v2_fields(response) == ["device.token"]


def test_nul_in_manual_segment_ids_is_a_400(track, workspace):
    segment = create_segment(workspace, name="VIP", conditions_tree=None)
    for action in ("add_customers", "remove_customers"):
        response = send(track, "post", f"/api/v1/segments/{segment.pk}/{action}",
                        {"ids": ["u1", "u\x002"]})
        assert response.status_code == 400
        assert "ids[1]" in v1_errors(response)[0]


def test_nul_in_app_api_email_lookup_is_a_400(app):
    response = app.get("/v1/customers", {"email": "a\x00@example.com"})
    assert response.status_code == 400
    assert "email" in app_error(response)


def test_nul_in_a_filter_or_export_value_is_a_400(app):
    tree = {"attribute": {"field": "plan", "operator": "eq", "value": "p\x00ro"}}
    response = send(app, "post", "/v1/customers", {"filter": tree})
    assert response.status_code == 400
    assert "filter" in app_error(response)
    response = send(app, "post", "/v1/exports/customers", {"filters": tree})
    assert response.status_code == 400
    assert "filters" in app_error(response)
    assert not Export.objects.exists()


def test_nul_in_a_segment_name_is_a_400(app):
    response = send(app, "post", "/v1/segments", {"segment": {"name": "V\x00IP"}})
    assert response.status_code == 400
    assert "segment.name" in app_error(response)
    assert not Segment.objects.exists()


def test_nul_in_a_people_page_url_is_a_400_page(client, viewer):
    response = client.get("/people/cio_ab%00cd/")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


def test_absurd_within_days_is_a_400(app):
    tree = {"event": {"name": "login", "within_days": 10**12}}
    response = send(app, "post", "/v1/customers", {"filter": tree})
    assert response.status_code == 400
    assert "within_days" in app_error(response)


# --- item 6: the unexpected ------------------------------------------------------------------


@pytest.fixture
def failing_services(monkeypatch):
    """Make the people services fail as a bug or a lost database would."""
    from people import services

    def fail(*args, **kwargs):
        raise RuntimeError("the database went away")

    for name in ("identify_person", "merge_people", "track_event"):
        monkeypatch.setattr(services, name, fail)


def quiet(client: APIClient) -> APIClient:
    client.raise_request_exception = False
    return client


def test_unexpected_errors_answer_json_in_each_apis_shape(track, failing_services):
    track = quiet(track)
    response = send(track, "put", "/api/v1/customers/u1", {"plan": "pro"})
    assert response.status_code == 500
    assert v1_errors(response) == ["internal server error"]

    response = send(track, "post", "/api/v1/merge_customers",
                    {"primary": {"id": "a"}, "secondary": {"id": "b"}})
    assert response.status_code == 500
    assert app_error(response) == "internal server error"

    response = send(track, "post", "/api/v2/entity", {
        "type": "person", "action": "event", "identifiers": {"id": "u1"}, "name": "x"})
    assert response.status_code == 500
    assert response.json() == {"errors": [
        {"reason": "internal", "field": "", "message": "internal server error"}]}


def test_errors_outside_the_views_answer_json(db, workspace, settings):
    client = quiet(APIClient())
    client.credentials(HTTP_AUTHORIZATION=basic(workspace.site_id, workspace.track_api_key))
    response = client.get("/api/v1/no/such/endpoint")
    assert response.status_code == 404
    assert v1_errors(response)
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert app_error(response)
    response = client.get("/api/v2/nothing")
    assert response.status_code == 404
    assert response.json()["errors"][0]["reason"] == "not_found"


def test_an_error_before_any_view_answers_json(db, workspace, settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.api.test_bad_input.Explode"]
    client = quiet(APIClient())
    response = client.get("/v1/segments")
    assert response.status_code == 500
    assert app_error(response) == "internal server error"
    response = client.get("/api/v1/accounts/region")
    assert response.status_code == 500
    assert v1_errors(response) == ["internal server error"]
    page = quiet(APIClient()).get("/login/")
    assert page.status_code == 500 and "json" not in page["Content-Type"]


class Explode:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        raise RuntimeError("a broken middleware")


# --- item 8: invalid input that answered 2xx ----------------------------------------------


def test_identify_with_a_null_body_is_a_400(track):
    response = send(track, "put", "/api/v1/customers/u1", "null")
    assert response.status_code == 400
    assert v1_errors(response) == ["the request body must be a JSON object"]
    assert not Person.objects.exists()


def test_an_empty_body_is_still_an_empty_object(track):
    response = track.put("/api/v1/customers/u1")
    assert response.status_code == 200
    assert Person.objects.get().customer_id == "u1"


def test_device_with_null_attributes_is_a_400(track, workspace):
    make_person(workspace, "u1")
    response = send(track, "put", "/api/v1/customers/u1/devices",
                    {"device": {"id": "tok", "platform": "ios", "attributes": None}})
    assert response.status_code == 400
    assert "device.attributes" in v1_errors(response)[0]
    response = send(track, "post", "/api/v2/entity", {
        "type": "person", "action": "add_device", "identifiers": {"id": "u1"},
        "device": {"token": "tok", "platform": "ios", "attributes": None}})
    assert response.status_code == 400
    assert v2_fields(response) == ["device.attributes"]
    assert not Device.objects.exists()


def test_event_type_of_an_empty_object_is_a_400(track):
    response = send(track, "post", "/api/v1/customers/u1/events", {"name": "x", "type": {}})
    assert response.status_code == 400
    assert "type" in v1_errors(response)[0]
    assert not Event.objects.exists()


@pytest.mark.parametrize("item", [None, [], "identify", 7])
def test_batch_item_that_is_not_an_object_is_a_207_entry(track, item):
    ok = {"type": "person", "action": "identify", "identifiers": {"id": "u1"}}
    response = send(track, "post", "/api/v2/batch", {"batch": [ok, item]})
    assert response.status_code == 207
    assert response.json()["errors"][0]["batch_index"] == 1
    assert Person.objects.get().customer_id == "u1"
