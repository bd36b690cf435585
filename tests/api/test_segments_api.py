"""Segments over the Track API (manual membership) and the App API."""

import json

import pytest

from segments import services
from segments.models import Membership, MembershipChange, Segment
from tests.factories import make_person

PRO = {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}}


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def member_ids(segment):
    return set(Membership.objects.filter(segment=segment)
               .values_list("person__customer_id", flat=True))


def test_add_and_remove_customers(track, workspace):
    segment = services.create_segment(workspace, name="Beta")
    make_person(workspace, "u1", email="u1@example.com")
    make_person(workspace, "u2")

    response = post(track, f"/api/v1/segments/{segment.pk}/add_customers",
                    {"ids": ["u1", "u2", "nobody"]})
    assert (response.status_code, response.json()) == (200, {})
    assert member_ids(segment) == {"u1", "u2"}

    post(track, f"/api/v1/segments/{segment.pk}/remove_customers?id_type=email",
         {"ids": ["U1@example.com"]})
    assert member_ids(segment) == {"u2"}
    assert MembershipChange.objects.filter(segment=segment).count() == 3


@pytest.mark.parametrize("body", [{}, {"ids": []}, {"ids": ["x"] * 1001}, {"ids": "u1"}])
def test_add_customers_needs_1_to_1000_ids(track, workspace, body):
    segment = services.create_segment(workspace, name="Beta")
    response = post(track, f"/api/v1/segments/{segment.pk}/add_customers", body)
    assert response.status_code == 400
    assert response.json()["meta"]["errors"]


def test_data_driven_segments_refuse_manual_changes(track, workspace):
    segment = services.create_segment(workspace, name="Pro", conditions_tree=PRO)
    make_person(workspace, "u1")
    response = post(track, f"/api/v1/segments/{segment.pk}/add_customers", {"ids": ["u1"]})
    assert response.status_code == 400
    assert "manual" in response.json()["meta"]["errors"][0]
    assert not Membership.objects.exists()


def test_another_workspaces_segment_is_404(track, other_workspace):
    theirs = services.create_segment(other_workspace, name="Theirs")
    response = post(track, f"/api/v1/segments/{theirs.pk}/add_customers", {"ids": ["u1"]})
    assert response.status_code == 404


def test_list_get_and_create_segments(app, workspace, django_capture_on_commit_callbacks):
    manual = post(app, "/v1/segments", {"segment": {"name": "Beta", "description": "testers"}})
    assert manual.status_code == 200
    assert manual.json()["segment"]["type"] == "manual"
    make_person(workspace, "u1", plan="pro")
    with django_capture_on_commit_callbacks(execute=True):
        dynamic = post(app, "/v1/segments", {"segment": {"name": "Pro", "conditions": PRO}})
    assert dynamic.json()["segment"]["type"] == "dynamic"
    segment = Segment.objects.get(name="Pro")
    assert member_ids(segment) == {"u1"}

    listing = app.get("/v1/segments").json()["segments"]
    assert [s["name"] for s in listing] == ["Beta", "Pro"]
    detail = app.get(f"/v1/segments/{segment.pk}").json()["segment"]
    assert detail["conditions"] == PRO and detail["state"] == "finished"


def test_create_segment_with_bad_conditions_is_400(app, workspace):
    response = post(app, "/v1/segments", {"segment": {"name": "Bad", "conditions": {
        "attribute": {"field": "plan", "operator": "like", "value": "x"}}}})
    assert response.status_code == 400
    assert "attribute.operator" in response.json()["meta"]["error"]
    assert not Segment.objects.exists()


def test_membership_pages(app, workspace):
    segment = services.create_segment(workspace, name="Beta")
    people = [make_person(workspace, f"u{n}", email=f"u{n}@example.com") for n in range(5)]
    services.add_to_segment(segment, [p.pk for p in people])

    first = app.get(f"/v1/segments/{segment.pk}/membership", {"limit": 2}).json()
    assert first["ids"] == ["u0", "u1"]
    assert first["identifiers"][0] == {"id": "u0", "email": "u0@example.com",
                                       "cio_id": people[0].cio_id}
    second = app.get(f"/v1/segments/{segment.pk}/membership",
                     {"limit": 2, "start": first["next"]}).json()
    third = app.get(f"/v1/segments/{segment.pk}/membership",
                    {"limit": 2, "start": second["next"]}).json()
    assert second["ids"] == ["u2", "u3"] and third["ids"] == ["u4"] and third["next"] == ""
    assert app.get(f"/v1/segments/{segment.pk}/membership",
                   {"limit": 30001}).status_code == 400
    assert app.get("/v1/segments/999999/membership").status_code == 404


def test_customer_segments(app, workspace):
    beta = services.create_segment(workspace, name="Beta")
    services.create_segment(workspace, name="Other")
    person = make_person(workspace, "u1")
    services.add_to_segment(beta, [person.pk])
    response = app.get("/v1/customers/u1/segments")
    assert [s["name"] for s in response.json()["segments"]] == ["Beta"]
    assert app.get("/v1/customers/nobody/segments").status_code == 404


def test_customer_search_with_the_filter_grammar(app, workspace):
    beta = services.create_segment(workspace, name="Beta")
    for n in range(4):
        person = make_person(workspace, f"u{n}", plan="pro" if n % 2 else "free")
        if n == 3:
            services.add_to_segment(beta, [person.pk])
    body = {"filter": {"and": [
        {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}},
        {"not": {"segment": {"id": beta.pk}}}]}}
    response = post(app, "/v1/customers", body)
    assert response.status_code == 200
    assert response.json()["ids"] == ["u1"]

    paged = post(app, "/v1/customers?limit=1", {"filter": {"attribute": {
        "field": "plan", "operator": "exists"}}}).json()
    assert paged["ids"] == ["u0"] and paged["next"]
    # GET on the same path still finds people by email.
    assert app.get("/v1/customers", {"email": "x@example.com"}).json() == {"results": []}


def test_customer_search_errors(app):
    assert post(app, "/v1/customers", {}).status_code == 400
    response = post(app, "/v1/customers", {"filter": {"attribute": {"field": "a"}}})
    assert response.status_code == 400
    assert "operator" in response.json()["meta"]["error"]
    response = post(app, "/v1/customers?start=%%%", {"filter": {"attribute": {
        "field": "a", "operator": "exists"}}})
    assert response.status_code == 400


def test_track_calls_move_people_in_and_out_of_segments(track, workspace,
                                                        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        segment = services.create_segment(workspace, name="Engaged pro", conditions_tree={
            "and": [PRO, {"event": {"name": "login", "count": {"operator": "gte", "value": 2}}}]})

    def call(method, url, body):
        with django_capture_on_commit_callbacks(execute=True):
            response = getattr(track, method)(url, data=json.dumps(body),
                                              content_type="application/json")
        assert response.status_code == 200

    call("put", "/api/v1/customers/u1", {"plan": "pro"})
    call("post", "/api/v1/customers/u1/events", {"name": "login"})
    assert member_ids(segment) == set()
    call("post", "/api/v2/batch", {"batch": [
        {"type": "person", "action": "event", "identifiers": {"id": "u1"}, "name": "login"}]})
    assert member_ids(segment) == {"u1"}
    call("put", "/api/v1/customers/u1", {"plan": "free"})
    assert member_ids(segment) == set()
    call("put", "/api/v1/customers/u1", {"plan": "pro"})
    call("delete", "/api/v1/customers/u1", {})
    assert [c.change for c in MembershipChange.objects.filter(segment=segment).order_by("pk")] == [
        "entered", "exited", "entered", "exited"]
