"""API-triggered broadcasts over HTTP: ``POST /v1/campaigns/{id}/triggers`` and its status.

The official Python client has no broadcast method (only the Node client does), so these
calls go through ``requests`` against a live server.
"""

import pytest
import requests
from django.core.cache import cache

from campaigns import services
from campaigns.models import BroadcastTrigger, Journey
from tests.factories import make_person, make_workspace

MAIL = {"id": "news", "type": "email", "name": "News", "from": "news@example.com",
        "subject": "{{trigger.headline}}", "body_html": "<p>News</p>"}


def make_broadcast(workspace, *, start=True):
    campaign = services.create_campaign(workspace, {
        "name": "Breaking news", "trigger": {"api": {}}, "workflow": {"steps": [MAIL]}})
    return services.start_campaign(campaign) if start else campaign


@pytest.fixture
def api(live_server, transactional_db, workspace):
    """Call the App API with the workspace's key; return the response."""
    cache.clear()

    def call(method, path, body=None, *, key=workspace.app_api_key):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return requests.request(method, f"{live_server.url}{path}", json=body,
                                headers=headers, timeout=10)

    yield call
    cache.clear()


@pytest.fixture
def broadcast(workspace):
    make_person(workspace, "u1", email="u1@example.com", plan="pro")
    make_person(workspace, "u2", email="u2@example.com", plan="free")
    return make_broadcast(workspace)


def test_a_trigger_answers_its_id_and_its_status_shows_the_progress(api, broadcast):
    response = api("POST", f"/v1/campaigns/{broadcast.pk}/triggers", {
        "recipients": {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}},
        "data": {"headline": "Hello"}})

    assert response.status_code == 200, response.text
    trigger_id = response.json()["id"]
    assert response.json() == {"id": trigger_id}
    status = api("GET", f"/v1/campaigns/{broadcast.pk}/triggers/{trigger_id}")
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["id"] == trigger_id and body["broadcast_id"] == broadcast.pk
    assert (body["state"], body["total"], body["done"], body["progress"]) == ("done", 1, 1, 100)
    assert (body["recipients_count"], body["errors"]) == (1, [])
    assert body["recipients_filter"] == {"attribute": {"field": "plan", "operator": "eq",
                                                       "value": "pro"}}
    assert body["workflow_action_ids"] == ["news"]
    assert isinstance(body["created_at"], int) and isinstance(body["processed_at"], int)
    journey = Journey.objects.get(campaign=broadcast)
    assert journey.person.customer_id == "u1"
    assert journey.context == {"trigger": {"headline": "Hello"}}


def test_missing_ids_show_in_the_status(api, broadcast):
    response = api("POST", f"/v1/campaigns/{broadcast.pk}/triggers", {"ids": ["u1", "ghost"]})

    assert response.status_code == 200, response.text
    status = api("GET", f"/v1/campaigns/{broadcast.pk}/triggers/{response.json()['id']}").json()
    assert (status["state"], status["recipients_count"]) == ("failed", 0)
    assert status["errors"] == [{"reason": "id_not_found", "id": "ghost"}]
    assert not Journey.objects.exists()


def test_without_the_app_key_nothing_is_triggered(api, broadcast):
    for key in (None, "wrong"):
        response = api("POST", f"/v1/campaigns/{broadcast.pk}/triggers", {}, key=key)
        assert response.status_code == 401
        assert response.json()["meta"]["error"]
    assert not BroadcastTrigger.objects.exists()


def test_another_workspaces_broadcast_and_triggers_are_not_found(api, broadcast):
    other = make_workspace("Other")
    theirs = make_broadcast(other)
    mine = api("POST", f"/v1/campaigns/{broadcast.pk}/triggers", {})
    their_trigger = api("POST", f"/v1/campaigns/{theirs.pk}/triggers", {},
                        key=other.app_api_key)
    assert (mine.status_code, their_trigger.status_code) == (200, 200)

    answers = [
        api("POST", f"/v1/campaigns/{theirs.pk}/triggers", {}),
        api("GET", f"/v1/campaigns/{theirs.pk}/triggers/{their_trigger.json()['id']}"),
        api("GET", f"/v1/campaigns/{broadcast.pk}/triggers/{their_trigger.json()['id']}"),
        api("GET", f"/v1/campaigns/{broadcast.pk}/triggers/999999"),
        api("POST", "/v1/campaigns/999999/triggers", {}),
    ]

    assert [answer.status_code for answer in answers] == [404] * 5
    assert all(set(answer.json()) == {"meta"} for answer in answers)
    assert BroadcastTrigger.objects.filter(campaign=theirs).count() == 1


def test_a_bad_body_answers_422_pointing_at_the_field(api, broadcast):
    response = api("POST", f"/v1/campaigns/{broadcast.pk}/triggers", {
        "per_user_data": [{"id": "u1", "data": {}}, {"id": "u2", "data": "x"}]})

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["errors"] == [{"detail": "per_user_data[1].data must be an object",
                               "source": {"pointer": "/data/attributes/per_user_data/1/data"},
                               "status": "422"}]
    assert "per_user_data[1].data" in body["meta"]["error"]
    assert not BroadcastTrigger.objects.exists()


def test_a_second_trigger_within_ten_seconds_answers_429(api, broadcast):
    first = api("POST", f"/v1/campaigns/{broadcast.pk}/triggers", {})
    second = api("POST", f"/v1/campaigns/{broadcast.pk}/triggers", {})

    assert first.status_code == 200
    assert second.status_code == 429
    assert "10 seconds" in second.json()["meta"]["error"]
    assert second.headers["Retry-After"] == "10"
    assert BroadcastTrigger.objects.count() == 1


def test_a_campaign_that_is_not_running_answers_409(api, workspace):
    draft = make_broadcast(workspace, start=False)

    response = api("POST", f"/v1/campaigns/{draft.pk}/triggers", {})

    assert response.status_code == 409
    assert "not running" in response.json()["meta"]["error"]


def test_the_schema_documents_both_endpoints(api, live_server):
    schema = requests.get(f"{live_server.url}/api/schema/", params={"format": "json"},
                          timeout=10).json()
    paths = schema["paths"]
    send = paths["/v1/send/email"]["post"]
    trigger = paths["/v1/campaigns/{campaign_id}/triggers"]["post"]
    status = paths["/v1/campaigns/{campaign_id}/triggers/{trigger_id}"]["get"]
    for operation in (send, trigger, status):
        assert operation["security"] == [{"AppBearerAuth": []}]
        assert {"200", "401", "404"} <= set(operation["responses"])
    assert {"400", "429"} <= set(send["responses"])
    assert {"409", "422", "429"} <= set(trigger["responses"])
    assert any(parameter["name"] == "Idempotency-Key" for parameter in send["parameters"])
    components = schema["components"]["schemas"]
    assert {"identifiers", "transactional_message_id", "message_data", "send_at"} <= set(
        components["SendEmailRequest"]["properties"])
    assert {"recipients", "ids", "emails", "per_user_data", "data"} <= set(
        components["BroadcastTriggerRequest"]["properties"])
