"""Campaigns over the App API: Customer.io's reads, campaigns as code, lifecycle, metrics."""

import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.core.cache import cache
from rest_framework.test import APIClient

from campaigns import engine, services
from campaigns.models import Campaign, Delivery, Journey
from segments.services import add_to_segment, create_segment
from tests.factories import make_person

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
MAIL = {"id": "mail", "type": "email", "name": "Hello", "from": "team@example.com",
        "subject": "Hi", "body_html": "<p>Hi</p>"}


def client_for(workspace) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {workspace.app_api_key}")
    return client


@pytest.fixture
def app(workspace):
    cache.clear()  # throttle counts
    yield client_for(workspace)
    cache.clear()


@pytest.fixture
def travel():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def vip(workspace):
    return create_segment(workspace, name="VIP")


def definition(segment, **extra) -> dict:
    return {"name": "Welcome", "tags": ["onboarding"],
            "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
            "workflow": {"steps": [MAIL, {"id": "wait", "type": "delay",
                                          "duration": {"days": 2}}]}, **extra}


def send(client, method, url, body=None, **headers):
    return getattr(client, method)(url, data=json.dumps(body) if body is not None else None,
                                   content_type="application/json", **headers)


# --- reads ------------------------------------------------------------------------------


def test_without_the_app_key_nothing_is_served(client, workspace, vip):
    services.create_campaign(workspace, definition(vip))
    response = client.get("/v1/campaigns")
    assert response.status_code == 401
    assert response.json()["meta"]["error"]


def test_list_and_read_campaigns_in_customer_ios_shape(app, workspace, vip, travel):
    blocked = create_segment(workspace, name="Blocked")
    pro = create_segment(workspace, name="Pro")
    campaign = services.create_campaign(workspace, definition(
        vip, trigger={"segments": {"match": "all", "segments": [
            {"id": vip.pk}, {"id": blocked.pk, "in": False}]}},
        filters={"segment": {"id": pro.pk}},
        workflow={"steps": [MAIL, {"id": "split", "type": "random_split", "paths": [
            {"key": "A", "weight": 50, "steps": [{"id": "tag", "type": "update_attributes",
                                                 "set": {"x": "1"}}]},
            {"key": "B", "weight": 50, "steps": []}]}]}))

    listing = app.get("/v1/campaigns")
    detail = app.get(f"/v1/campaigns/{campaign.pk}")

    assert listing.status_code == detail.status_code == 200
    stamp = int(START.timestamp())
    expected = {
        "id": campaign.pk, "deduplicate_id": f"{campaign.pk}:{stamp}", "name": "Welcome",
        "description": "", "state": "draft", "active": False, "trigger": "segments",
        "created": stamp, "updated": stamp, "first_started": None, "tags": ["onboarding"],
        "actions": [{"type": "email", "id": "mail"}, {"type": "random_split", "id": "split"},
                    {"type": "update_attributes", "id": "tag"}],
        "trigger_segment_ids": [vip.pk], "filter_segment_ids": sorted([blocked.pk, pro.pk]),
        "version": 1,
    }
    assert listing.json() == {"campaigns": [expected]}
    assert detail.json() == {"campaign": expected}


def test_an_unknown_campaign_is_404(app, workspace):
    response = app.get("/v1/campaigns/999999")
    assert response.status_code == 404
    assert "999999" in response.json()["meta"]["error"]


def test_actions_list_every_step_with_its_block(app, workspace, vip, travel):
    campaign = services.create_campaign(workspace, definition(vip, workflow={"steps": [
        MAIL, {"id": "b", "type": "branch",
               "condition": {"segment": {"id": vip.pk}},
               "paths": [{"key": "true", "steps": [{"id": "bye", "type": "exit"}]},
                         {"key": "false", "steps": []}]}]}))

    actions = app.get(f"/v1/campaigns/{campaign.pk}/actions").json()["actions"]

    assert [(a["id"], a["type"], a["parent_action_id"]) for a in actions] == [
        ("mail", "email", None), ("b", "branch", None), ("bye", "exit", "b")]
    mail = actions[0]
    assert mail["campaign_id"] == campaign.pk and mail["name"] == "Hello"
    assert mail["sending_state"] == "automatic"
    assert mail["settings"]["subject"] == "Hi" and mail["created"] == int(START.timestamp())
    assert "paths" not in actions[1]["settings"]


def test_metrics_per_campaign_and_step(app, workspace, vip, travel):
    campaign = services.start_campaign(services.create_campaign(
        workspace, definition(vip, exit="never")), audience="future_only")
    ada = make_person(workspace, "ada", email="ada@example.com")
    engine.enter(campaign, [engine.Entry("k1", ada.pk, ada.cio_id)])
    while engine.advance_due():
        pass
    Delivery.objects.filter(campaign=campaign).update(state=Delivery.State.SENT)

    response = app.get(f"/v1/campaigns/{campaign.pk}/metrics")

    assert response.status_code == 200
    found = response.json()["metrics"]
    assert (found["entered"], found["active"], found["finished"]) == (1, 1, 0)
    assert list(found["steps"]) == ["mail", "wait"]
    assert found["steps"]["mail"]["sent"] == 1 and found["steps"]["wait"]["waiting"] == 1
    assert set(found["steps"]["mail"]) == {
        "entered", "waiting", "sent", "drafted", "failed", "unknown", "skipped", "opened",
        "clicked", "bounced", "unsubscribed", "converted"}


# --- campaigns as code ----------------------------------------------------------------


def test_create_a_campaign_from_a_definition(app, workspace, vip):
    response = send(app, "post", "/v1/campaigns", definition(vip))

    assert response.status_code == 200
    campaign = Campaign.objects.get(workspace=workspace)
    assert response.json()["campaign"]["id"] == campaign.pk
    assert response["ETag"] == '"1"'
    assert (campaign.state, campaign.name, campaign.version) == ("draft", "Welcome", 1)


def test_a_bad_definition_is_400_naming_each_place(app, workspace, vip):
    bad = definition(vip, workflow={"steps": [MAIL, {"type": "delay", "duration": "soon"}]})
    bad["trigger"] = {"segments": {"segments": [{"id": 999999}]}}

    response = send(app, "post", "/v1/campaigns", bad)

    assert response.status_code == 400
    body = response.json()
    places = {error["field"] for error in body["errors"]}
    assert {"workflow.steps[1].duration"} <= places
    assert any(place.startswith("trigger") for place in places)
    assert all(error["reason"] and error["message"] for error in body["errors"])
    assert "workflow.steps[1].duration" in body["meta"]["error"]
    assert not Campaign.objects.exists()


@pytest.mark.parametrize("body", [[1, 2], "a campaign"])
def test_a_definition_must_be_a_json_object(app, workspace, body):
    response = send(app, "post", "/v1/campaigns", body)
    assert response.status_code == 400
    assert not Campaign.objects.exists()


def test_definition_round_trips_through_get_and_put(app, workspace, vip):
    campaign = services.create_campaign(workspace, definition(vip))

    got = app.get(f"/v1/campaigns/{campaign.pk}/definition")
    assert got.status_code == 200 and got["ETag"] == '"1"'
    document = got.json()
    assert document == campaign.definition
    document["name"] = "Welcome aboard"

    put = send(app, "put", f"/v1/campaigns/{campaign.pk}", document, HTTP_IF_MATCH='"1"')

    assert put.status_code == 200 and put["ETag"] == '"2"'
    assert put.json()["campaign"]["name"] == "Welcome aboard"
    assert put.json()["campaign"]["version"] == 2
    campaign.refresh_from_db()
    assert (campaign.name, campaign.version) == ("Welcome aboard", 2)


def test_a_stale_put_is_409_with_the_current_version(app, workspace, vip):
    campaign = services.create_campaign(workspace, definition(vip))
    services.update_campaign(campaign, definition(vip, name="Someone else's"), version=1)

    by_header = send(app, "put", f"/v1/campaigns/{campaign.pk}", definition(vip, name="Mine"),
                     HTTP_IF_MATCH='"1"')
    by_field = send(app, "put", f"/v1/campaigns/{campaign.pk}",
                    {**definition(vip, name="Mine"), "version": 1})

    for response in (by_header, by_field):
        assert response.status_code == 409
        assert response.json()["version"] == 2
        assert "version 2" in response.json()["meta"]["error"]
    campaign.refresh_from_db()
    assert campaign.name == "Someone else's"


def test_put_takes_the_version_as_a_field_and_without_one_overwrites(app, workspace, vip):
    campaign = services.create_campaign(workspace, definition(vip))

    with_field = send(app, "put", f"/v1/campaigns/{campaign.pk}",
                      {**definition(vip, name="Two"), "version": 1})
    without = send(app, "put", f"/v1/campaigns/{campaign.pk}", definition(vip, name="Three"))

    assert (with_field.status_code, without.status_code) == (200, 200)
    campaign.refresh_from_db()
    assert (campaign.name, campaign.version) == ("Three", 3)


def test_if_match_any_saves_whatever_the_version(app, workspace, vip):
    campaign = services.create_campaign(workspace, definition(vip))
    services.update_campaign(campaign, definition(vip, name="Two"))
    response = send(app, "put", f"/v1/campaigns/{campaign.pk}", definition(vip, name="Mine"),
                    HTTP_IF_MATCH="*")
    assert response.status_code == 200 and response.json()["campaign"]["version"] == 3


def test_listing_campaigns_is_one_query_however_many(app, workspace, vip,
                                                     django_assert_max_num_queries):
    for n in range(5):
        services.create_campaign(workspace, definition(vip, name=f"C{n}"))
    # The clock stands still: on a busy machine the throttle's row (one second long)
    # could expire between the two requests, and reading it would then delete it too.
    with time_machine.travel(datetime.now(UTC), tick=False):
        app.get("/v1/campaigns")  # warm the throttle's cache row
        # The key (1) and the throttle's database cache (6), then one for the campaigns.
        with django_assert_max_num_queries(8):
            assert len(app.get("/v1/campaigns").json()["campaigns"]) == 5


@pytest.mark.parametrize("headers, body_version", [
    ({"HTTP_IF_MATCH": '"two"'}, None), ({}, "2"), ({}, True)])
def test_a_malformed_version_is_400(app, workspace, vip, headers, body_version):
    campaign = services.create_campaign(workspace, definition(vip))
    body = definition(vip) if body_version is None else {**definition(vip),
                                                         "version": body_version}
    response = send(app, "put", f"/v1/campaigns/{campaign.pk}", body, **headers)
    assert response.status_code == 400
    assert "version" in response.json()["meta"]["error"]


def test_a_bad_put_is_400_and_changes_nothing(app, workspace, vip):
    campaign = services.create_campaign(workspace, definition(vip))
    response = send(app, "put", f"/v1/campaigns/{campaign.pk}", {**definition(vip), "name": ""})
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["name"]
    campaign.refresh_from_db()
    assert campaign.version == 1


def test_delete_removes_the_campaign(app, workspace, vip):
    campaign = services.create_campaign(workspace, definition(vip))
    response = app.delete(f"/v1/campaigns/{campaign.pk}")
    assert (response.status_code, response.json()) == (200, {})
    assert not Campaign.objects.exists()
    assert app.delete(f"/v1/campaigns/{campaign.pk}").status_code == 404


# --- lifecycle -----------------------------------------------------------------------


def test_start_with_current_people_enters_the_segments_members(app, workspace, vip, travel):
    add_to_segment(vip, [make_person(workspace, f"p{n}").pk for n in range(3)])
    campaign = services.create_campaign(workspace, definition(vip))

    response = send(app, "post", f"/v1/campaigns/{campaign.pk}/start",
                    {"audience": "current_and_future"})

    assert response.status_code == 200
    body = response.json()["campaign"]
    assert (body["state"], body["active"]) == ("running", True)
    assert body["first_started"] == int(START.timestamp())
    assert Journey.objects.filter(campaign=campaign).count() == 3


def test_start_with_future_only_enters_nobody_now(app, workspace, vip):
    add_to_segment(vip, [make_person(workspace, "p1").pk])
    campaign = services.create_campaign(workspace, definition(vip))
    response = send(app, "post", f"/v1/campaigns/{campaign.pk}/start",
                    {"audience": "future_only"})
    assert response.status_code == 200
    assert not Journey.objects.exists()


def test_start_without_a_body_takes_current_and_future(app, workspace, vip):
    add_to_segment(vip, [make_person(workspace, "p1").pk])
    campaign = services.create_campaign(workspace, definition(vip))
    assert app.post(f"/v1/campaigns/{campaign.pk}/start").status_code == 200
    assert Journey.objects.filter(campaign=campaign).count() == 1


def test_start_refuses_an_unknown_audience(app, workspace, vip):
    campaign = services.create_campaign(workspace, definition(vip))
    response = send(app, "post", f"/v1/campaigns/{campaign.pk}/start", {"audience": "all"})
    assert response.status_code == 400
    assert "audience" in response.json()["meta"]["error"]
    campaign.refresh_from_db()
    assert campaign.state == "draft"


def test_start_with_unconfigured_steps_is_400_naming_them(app, workspace, vip):
    campaign = services.create_campaign(workspace, definition(
        vip, workflow={"steps": [{"id": "mail", "type": "email"}]}))

    response = send(app, "post", f"/v1/campaigns/{campaign.pk}/start", {})

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {"field": "workflow.steps[0].subject", "reason": "unconfigured"}.items() <= next(
        e for e in errors if e["field"] == "workflow.steps[0].subject").items()
    campaign.refresh_from_db()
    assert campaign.state == "draft"


def test_lifecycle_errors_are_409_with_a_message(app, workspace, vip):
    campaign = services.create_campaign(workspace, definition(vip))
    stop = send(app, "post", f"/v1/campaigns/{campaign.pk}/stop", {})
    unarchive = app.post(f"/v1/campaigns/{campaign.pk}/unarchive")
    services.start_campaign(campaign, audience="future_only")
    again = app.post(f"/v1/campaigns/{campaign.pk}/start")

    for response in (stop, unarchive, again):
        assert response.status_code == 409
        assert response.json()["meta"]["error"]
    assert "not running" in stop.json()["meta"]["error"]


def test_stop_exits_everyone_or_lets_them_finish(app, workspace, vip):
    add_to_segment(vip, [make_person(workspace, "p1").pk])
    exiting = services.start_campaign(services.create_campaign(workspace, definition(vip)))
    finishing = services.start_campaign(services.create_campaign(workspace, definition(vip)))

    first = send(app, "post", f"/v1/campaigns/{exiting.pk}/stop", {"journeys": "exit"})
    second = send(app, "post", f"/v1/campaigns/{finishing.pk}/stop", {"journeys": "finish"})

    assert first.json()["campaign"]["state"] == "stopped"
    assert second.json()["campaign"]["state"] == "stopping"
    assert second.json()["campaign"]["active"] is True
    assert Journey.objects.get(campaign=exiting).state == "exited"
    assert Journey.objects.get(campaign=finishing).state == "active"


def test_stop_refuses_an_unknown_journeys_choice(app, workspace, vip):
    campaign = services.start_campaign(services.create_campaign(workspace, definition(vip)))
    response = send(app, "post", f"/v1/campaigns/{campaign.pk}/stop", {"journeys": "drop"})
    assert response.status_code == 400
    campaign.refresh_from_db()
    assert campaign.state == "running"


def test_archive_and_unarchive(app, workspace, vip):
    campaign = services.start_campaign(services.create_campaign(workspace, definition(vip)))

    archived = app.post(f"/v1/campaigns/{campaign.pk}/archive")
    edit = send(app, "put", f"/v1/campaigns/{campaign.pk}", definition(vip))
    unarchived = app.post(f"/v1/campaigns/{campaign.pk}/unarchive")

    assert archived.json()["campaign"]["state"] == "archived"
    assert edit.status_code == 409 and "archived" in edit.json()["meta"]["error"]
    assert unarchived.json()["campaign"]["state"] == "stopped"


# --- a person's journeys -------------------------------------------------------------


def test_a_persons_journeys(app, workspace, vip, travel):
    ada = make_person(workspace, "ada", email="ada@example.com")
    bob = make_person(workspace, "bob")
    campaign = services.start_campaign(services.create_campaign(
        workspace, definition(vip, exit="never")), audience="future_only")
    engine.enter(campaign, [engine.Entry("k1", ada.pk, ada.cio_id),
                            engine.Entry("k2", bob.pk, bob.cio_id)])
    while engine.advance_due():
        pass

    by_id = app.get("/v1/customers/ada/journeys")
    by_email = app.get("/v1/customers/ada@example.com/journeys?id_type=email")
    by_cio_id = app.get(f"/v1/customers/cio_{ada.cio_id}/journeys?id_type=cio_id")

    assert by_id.status_code == 200
    assert by_id.json() == by_email.json() == by_cio_id.json()
    (journey,) = by_id.json()["journeys"]
    assert journey == {
        "id": Journey.objects.get(person=ada).pk,
        "campaign": {"id": campaign.pk, "name": "Welcome"}, "state": "active",
        "exit_reason": "", "step": "wait", "entered": int(START.timestamp()), "ended": None,
        "converted": None}
    assert by_id.json()["next"] == ""


def test_a_persons_journeys_come_a_page_at_a_time(app, workspace, vip):
    ada = make_person(workspace, "ada")
    campaign = services.start_campaign(services.create_campaign(
        workspace, definition(vip, exit="never")), audience="future_only")
    engine.enter(campaign, [engine.Entry(f"k{n}", ada.pk, ada.cio_id) for n in range(3)])

    first = app.get("/v1/customers/ada/journeys?limit=2").json()
    second = app.get(f"/v1/customers/ada/journeys?limit=2&start={first['next']}").json()

    assert len(first["journeys"]) == 2 and len(second["journeys"]) == 1
    assert second["next"] == ""
    ids = [j["id"] for j in first["journeys"] + second["journeys"]]
    assert ids == sorted(Journey.objects.values_list("pk", flat=True))


def test_an_unknown_person_has_no_journeys_to_show(app, workspace):
    assert app.get("/v1/customers/nobody/journeys").status_code == 404


# --- workspaces ----------------------------------------------------------------------


@pytest.mark.parametrize("method, suffix", [
    ("get", ""), ("put", ""), ("delete", ""), ("get", "/definition"), ("get", "/metrics"),
    ("get", "/actions"), ("post", "/start"), ("post", "/stop"), ("post", "/archive"),
    ("post", "/unarchive")])
def test_another_workspaces_campaign_is_404(app, workspace, other_workspace, method, suffix):
    theirs = services.create_campaign(other_workspace, definition(
        create_segment(other_workspace, name="Theirs")))
    if suffix in ("/stop", "/unarchive"):
        Campaign.objects.filter(pk=theirs.pk).update(
            state="running" if suffix == "/stop" else "archived")

    url = f"/v1/campaigns/{theirs.pk}{suffix}"
    response = (send(app, method, url, theirs.definition if method == "put" else {})
                if method in ("put", "post") else getattr(app, method)(url))

    assert response.status_code == 404
    after = Campaign.objects.get(pk=theirs.pk)
    assert (after.version, after.state) == (1, "running" if suffix == "/stop" else
                                            "archived" if suffix == "/unarchive" else "draft")


def test_lists_and_journeys_are_the_workspaces_own(app, workspace, other_workspace):
    theirs = services.start_campaign(services.create_campaign(other_workspace, definition(
        create_segment(other_workspace, name="Theirs"), exit="never")), audience="future_only")
    someone = make_person(other_workspace, "ada")
    engine.enter(theirs, [engine.Entry("k", someone.pk, someone.cio_id)])

    assert app.get("/v1/campaigns").json() == {"campaigns": []}
    assert app.get("/v1/customers/ada/journeys").status_code == 404
    make_person(workspace, "ada")
    assert app.get("/v1/customers/ada/journeys").json()["journeys"] == []


# --- the schema ----------------------------------------------------------------------


def test_the_schema_documents_every_campaign_endpoint(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()
    expected = {
        ("/v1/campaigns", "get"), ("/v1/campaigns", "post"),
        ("/v1/campaigns/{campaign_id}", "get"), ("/v1/campaigns/{campaign_id}", "put"),
        ("/v1/campaigns/{campaign_id}", "delete"),
        ("/v1/campaigns/{campaign_id}/definition", "get"),
        ("/v1/campaigns/{campaign_id}/metrics", "get"),
        ("/v1/campaigns/{campaign_id}/actions", "get"),
        ("/v1/campaigns/{campaign_id}/start", "post"),
        ("/v1/campaigns/{campaign_id}/stop", "post"),
        ("/v1/campaigns/{campaign_id}/archive", "post"),
        ("/v1/campaigns/{campaign_id}/unarchive", "post"),
        ("/v1/customers/{customer_id}/journeys", "get"),
    }
    paths = schema["paths"]
    found = {(path, method) for path, operations in paths.items() for method in operations}
    assert expected <= found
    for path, method in expected:
        assert paths[path][method]["security"] == [{"AppBearerAuth": []}], (path, method)
    put = paths["/v1/campaigns/{campaign_id}"]["put"]
    assert {"200", "400", "404", "409"} <= set(put["responses"])
    assert any(p["name"] == "If-Match" for p in put["parameters"])
    start = paths["/v1/campaigns/{campaign_id}/start"]["post"]
    assert {"400", "409"} <= set(start["responses"])
    ids = [op["operationId"] for operations in paths.values() for op in operations.values()]
    assert len(ids) == len(set(ids))
