"""App API reads of people: attributes, many attributes, and search by email."""

import pytest
from rest_framework.test import APIClient

from people import services
from tests.factories import make_person


def test_attributes_are_strings(app, workspace):
    person = make_person(workspace, "u1", email="ada@example.com", plan="pro", seats=3,
                         vip=True, company={"name": "Acme"}, created_at=1_700_000_000)
    services.add_device(workspace, services.Ref("id", "u1"), token="tok", platform="ios",
                        last_used=1_700_000_100)

    response = app.get("/v1/customers/u1/attributes")

    assert response.status_code == 200
    customer = response.json()["customer"]
    assert customer["id"] == "u1"
    assert customer["attributes"] == {
        "id": "u1", "cio_id": person.cio_id, "email": "ada@example.com", "plan": "pro",
        "seats": "3", "vip": "true", "company": '{"name":"Acme"}', "created_at": "1700000000",
    }
    assert customer["unsubscribed"] is False
    assert customer["devices"] == [{"id": "tok", "platform": "ios", "last_used": 1_700_000_100}]


@pytest.mark.parametrize("id_type, value", [("email", "ADA@example.com"), ("cio_id", None)])
def test_attributes_by_other_identifiers(app, workspace, id_type, value):
    person = make_person(workspace, "u1", email="ada@example.com")
    value = value or f"cio_{person.cio_id}"
    response = app.get(f"/v1/customers/{value}/attributes", {"id_type": id_type})
    assert response.json()["customer"]["attributes"]["cio_id"] == person.cio_id


def test_attributes_of_nobody_is_404(app, workspace, other_workspace):
    make_person(other_workspace, "u1")
    response = app.get("/v1/customers/u1/attributes")
    assert response.status_code == 404
    assert "error" in response.json()["meta"]


def test_unknown_id_type_is_400(app):
    response = app.get("/v1/customers/u1/attributes", {"id_type": "phone"})
    assert response.status_code == 400
    assert "phone" in response.json()["meta"]["error"]


def test_email_id_type_in_an_id_workspace_is_400(id_workspace):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {id_workspace.app_api_key}")
    response = client.get("/v1/customers/a@b.co/attributes", {"id_type": "email"})
    assert response.status_code == 400


def test_many_attributes_leave_out_unknown_ids(app, workspace):
    make_person(workspace, "u1", plan="pro")
    make_person(workspace, "u2", plan="free")

    response = app.post("/v1/customers/attributes", {"ids": ["u1", "u2", "nobody"]},
                        format="json")

    assert response.status_code == 200
    plans = sorted(c["customer"]["attributes"]["plan"] for c in response.json()["customers"])
    assert plans == ["free", "pro"]


@pytest.mark.parametrize("body", [{}, {"ids": []}, {"ids": [str(n) for n in range(101)]},
                                  {"ids": "u1"}])
def test_many_attributes_needs_1_to_100_ids(app, body):
    response = app.post("/v1/customers/attributes", body, format="json")
    assert response.status_code == 400


def test_search_by_email(app, workspace):
    person = make_person(workspace, "u1", email="ada@example.com")
    response = app.get("/v1/customers", {"email": "Ada@Example.com"})
    assert response.json() == {"results": [
        {"email": "ada@example.com", "id": "u1", "cio_id": person.cio_id}]}
    assert app.get("/v1/customers", {"email": "x@example.com"}).json() == {"results": []}


def test_bearer_key_of_another_workspace_sees_only_its_own(workspace, other_workspace):
    make_person(workspace, "u1")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {other_workspace.app_api_key}")
    assert client.get("/v1/customers/u1/attributes").status_code == 404


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic abc"])
def test_app_api_needs_the_app_key(workspace, auth):
    client = APIClient()
    if auth:
        client.credentials(HTTP_AUTHORIZATION=auth)
    assert client.get("/v1/customers", {"email": "a@b.co"}).status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {workspace.track_api_key}")
    assert client.get("/v1/customers", {"email": "a@b.co"}).status_code == 401


def test_app_api_is_throttled_per_key(app, workspace, settings):
    settings.ENGAGE_API_RATES = {**settings.ENGAGE_API_RATES, "app": "3/min"}
    statuses = [app.get("/v1/customers", {"email": "a@b.co"}).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert "error" in app.get("/v1/customers", {"email": "a@b.co"}).json()["meta"]


def test_app_api_default_rate_is_10_per_second(app):
    import time_machine

    with time_machine.travel(1_800_000_000, tick=False):
        statuses = [app.get("/v1/customers", {"email": "a@b.co"}).status_code for _ in range(11)]
    assert statuses == [200] * 10 + [429]
