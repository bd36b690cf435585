"""Track API v1 contract: paths, bodies, success and error shapes."""

import json
from urllib.parse import quote

import pytest
from rest_framework.test import APIClient

from people.models import Device, Event, Person, Suppression
from tests.api.conftest import basic
from tests.factories import make_person


def customer_url(identifier: str, suffix: str = "") -> str:
    return f"/api/v1/customers/{quote(identifier, safe='')}{suffix}"


def put_json(client, url, body):
    return client.put(url, data=json.dumps(body), content_type="application/json")


def post_json(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_identify_creates_and_answers_an_empty_object(track, workspace):
    response = put_json(track, customer_url("u1"), {"email": "ada@example.com", "plan": "pro"})

    assert response.status_code == 200
    assert response.json() == {}
    person = Person.objects.get(workspace=workspace)
    assert (person.customer_id, person.email, person.attributes["plan"]) == (
        "u1", "ada@example.com", "pro")


@pytest.mark.parametrize("identifier", ["a/b", "with space", "plus+sign", "ünïcode", "x%y"])
def test_identifiers_with_special_characters(track, workspace, identifier):
    assert put_json(track, customer_url(identifier), {"plan": "pro"}).status_code == 200
    response = post_json(track, customer_url(identifier, "/events"), {"name": "login"})
    assert response.status_code == 200

    person = Person.objects.get(customer_id=identifier)
    assert person.events.count() == 1


def test_email_in_the_path_is_an_email(track, workspace):
    put_json(track, customer_url("Ada+news@Example.com"), {"plan": "pro"})
    person = Person.objects.get()
    assert person.customer_id is None and person.email_key == "ada+news@example.com"


def test_cio_id_in_the_path(track, workspace):
    person = make_person(workspace, "u1")
    put_json(track, customer_url(f"cio_{person.cio_id}"), {"id": "u2"})
    person.refresh_from_db()
    assert person.customer_id == "u2"


def test_bad_attribute_is_a_400_naming_field_and_limit(track, workspace):
    response = put_json(track, customer_url("u1"), {"bio": "x" * 1001})

    assert response.status_code == 400
    assert response.json() == {
        "meta": {"errors": ["value for attribute 'bio' cannot be longer than 1000 bytes"]}
    }
    assert not Person.objects.exists()


def test_bad_json_is_a_400(track):
    response = track.put(customer_url("u1"), data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in response.json()["meta"]["errors"][0]


def test_a_body_that_is_not_an_object_is_a_400(track):
    response = put_json(track, customer_url("u1"), ["a", "b"])
    assert response.status_code == 400
    assert response.json()["meta"]["errors"] == ["the request body must be a JSON object"]


def test_wrong_content_type_is_refused_in_json(track):
    response = track.put(customer_url("u1"), data="plan=pro",
                         content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert "meta" in response.json()
    assert not Person.objects.exists()


@pytest.mark.parametrize("auth", [None, "Basic bm9wZQ==", "Bearer x", "Basic !!!"])
def test_missing_or_wrong_credentials_are_401(workspace, auth):
    client = APIClient()
    if auth:
        client.credentials(HTTP_AUTHORIZATION=auth)
    response = put_json(client, customer_url("u1"), {})
    assert response.status_code == 401
    assert "meta" in response.json()
    assert not Person.objects.exists()


def test_another_workspaces_key_is_401(workspace, other_workspace):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic(workspace.site_id, other_workspace.track_api_key))
    assert put_json(client, customer_url("u1"), {}).status_code == 401


def test_the_app_key_does_not_open_the_track_api(workspace):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic(workspace.site_id, workspace.app_api_key))
    assert put_json(client, customer_url("u1"), {}).status_code == 401


def test_delete_customer(track, workspace):
    person = make_person(workspace, "u1")
    response = track.delete(customer_url("u1"), data="{}", content_type="application/json")
    assert (response.status_code, response.json()) == (200, {})
    assert not Person.objects.filter(pk=person.pk).exists()
    # Deleting nobody is not an error.
    assert track.delete(customer_url("nobody")).status_code == 200


def test_track_event(track, workspace):
    response = post_json(track, customer_url("u1", "/events"), {
        "name": "purchase", "data": {"amount": 5}, "timestamp": 1_700_000_000, "id": "01HZX",
    })
    assert (response.status_code, response.json()) == (200, {})
    post_json(track, customer_url("u1", "/events"), {"name": "purchase", "id": "01HZX"})
    event = Event.objects.get()
    assert event.data == {"amount": 5} and event.dedup_id == "01HZX"


def test_event_errors(track):
    response = post_json(track, customer_url("u1", "/events"), {"name": "e" * 101})
    assert response.status_code == 400
    assert response.json() == {"meta": {"errors": ["event name cannot be longer than 100 bytes"]}}
    response = post_json(track, customer_url("u1", "/events"), {"data": {}})
    assert response.json() == {"meta": {"errors": ["event name is required"]}}


def test_pageview(track, workspace):
    post_json(track, customer_url("u1", "/events"), {"type": "page", "name": "/pricing",
                                                     "data": {"referrer": "x"}})
    assert Event.objects.get().type == "page"


def test_anonymous_event(track, workspace):
    response = post_json(track, "/api/v1/events", {"name": "visit", "anonymous_id": "anon-1"})
    assert (response.status_code, response.json()) == (200, {})
    assert Event.objects.get().anonymous_id == "anon-1"


def test_devices(track, workspace):
    response = put_json(track, customer_url("u1", "/devices"), {
        "device": {"id": "tok/1", "platform": "ios", "last_used": 1_700_000_000,
                   "app_version": "1.0", "attributes": {"push_enabled": "true"}},
    })
    assert (response.status_code, response.json()) == (200, {})
    device = Device.objects.get()
    assert device.token == "tok/1"
    assert device.attributes == {"app_version": "1.0", "push_enabled": "true"}

    response = track.delete(customer_url("u1", "/devices/") + quote("tok/1", safe=""))
    assert response.status_code == 200
    assert not Device.objects.exists()


def test_device_errors(track):
    response = put_json(track, customer_url("u1", "/devices"), {"device": {"platform": "web"}})
    assert response.status_code == 400
    assert len(response.json()["meta"]["errors"]) == 2
    response = put_json(track, customer_url("u1", "/devices"), {})
    assert response.status_code == 400


def test_suppress_and_unsuppress(track, workspace):
    make_person(workspace, "u1", email="ada@example.com")

    assert post_json(track, customer_url("u1", "/suppress"), {}).json() == {}
    assert not Person.objects.exists()
    assert Suppression.objects.count() == 2
    # Calls that reference a suppressed identifier are accepted and change nothing.
    assert put_json(track, customer_url("ada@example.com"), {"plan": "x"}).status_code == 200
    assert post_json(track, customer_url("u1", "/events"), {"name": "x"}).status_code == 200
    assert not Person.objects.exists() and not Event.objects.exists()

    assert post_json(track, customer_url("u1", "/unsuppress"), {}).status_code == 200
    assert not Suppression.objects.exists()
    put_json(track, customer_url("u1"), {})
    assert Person.objects.count() == 1


def test_unsuppress_by_the_old_cio_id_frees_what_that_person_had(track, workspace):
    ada = make_person(workspace, "u1", email="ada@example.com")
    make_person(workspace, "u2", email="bob@example.com")
    for person in ("u1", "u2"):
        post_json(track, customer_url(person, "/suppress"), {})
    assert Suppression.objects.count() == 4

    response = post_json(track, customer_url(f"cio_{ada.cio_id}", "/unsuppress"), {})

    assert (response.status_code, response.json()) == (200, {})
    assert sorted(Suppression.objects.values_list("value", flat=True)) == [
        "bob@example.com", "u2"]
    assert put_json(track, customer_url("u1"), {}).status_code == 200
    assert Person.objects.get(customer_id="u1").cio_id != ada.cio_id  # no history comes back
    # An unknown cio_id is answered as any unknown identifier is, and frees nothing.
    assert post_json(track, customer_url("cio_nobody", "/unsuppress"), {}).json() == {}
    assert Suppression.objects.count() == 2


def test_merge_customers(track, workspace):
    primary = make_person(workspace, "p1")
    make_person(workspace, "s1", plan="pro")
    response = post_json(track, "/api/v1/merge_customers",
                         {"primary": {"id": "p1"}, "secondary": {"id": "s1"}})
    assert (response.status_code, response.json()) == (200, {})
    primary.refresh_from_db()
    assert primary.attributes["plan"] == "pro"
    assert Person.objects.count() == 1


@pytest.mark.parametrize("body", [
    {"primary": {"id": "p1", "email": "a@example.com"}, "secondary": {"id": "s1"}},
    {"primary": {"id": "p1"}},
    {"primary": {"phone": "+1"}, "secondary": {"id": "s1"}},
])
def test_merge_errors_use_the_single_error_shape(track, workspace, body):
    response = post_json(track, "/api/v1/merge_customers", body)
    assert response.status_code == 400
    assert set(response.json()["meta"]) == {"error"}


def test_region(track, workspace):
    response = track.get("/api/v1/accounts/region")
    assert response.status_code == 200
    assert response.json()["region"] == "us"
    assert response.json()["environment_id"] == workspace.pk


def test_answers_are_json_whatever_the_accept_header_asks(track):
    for accept in ("text/html", "application/xml", "text/html, */*;q=0.1"):
        response = track.get("/api/v1/accounts/region", HTTP_ACCEPT=accept)
        assert response.status_code == 200, accept
        assert response["Content-Type"] == "application/json"
        assert response.json()["region"] == "us"
    response = track.put(customer_url("u1"), data="{not json", content_type="application/json",
                         HTTP_ACCEPT="text/html")
    assert response.status_code == 400 and "errors" in response.json()["meta"]


def test_track_throttling_is_off_by_default_and_configurable(track, settings):
    from django.core.cache import cache

    cache.clear()
    for _ in range(5):
        assert put_json(track, customer_url("u1"), {}).status_code == 200
    settings.ENGAGE_API_RATES = {**settings.ENGAGE_API_RATES, "track": "2/min"}
    statuses = [put_json(track, customer_url("u1"), {}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    cache.clear()
