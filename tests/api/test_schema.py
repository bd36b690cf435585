"""The OpenAPI schema and its docs page describe the APIs engage serves."""

import pytest


@pytest.fixture
def schema(client, db):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_schema_lists_every_endpoint_with_its_auth(schema):
    paths = schema["paths"]
    expected = {
        ("/api/v1/customers/{identifier}", "put"), ("/api/v1/customers/{identifier}", "delete"),
        ("/api/v1/customers/{identifier}/events", "post"), ("/api/v1/events", "post"),
        ("/api/v1/customers/{identifier}/devices", "put"),
        ("/api/v1/customers/{identifier}/devices/{token}", "delete"),
        ("/api/v1/customers/{identifier}/suppress", "post"),
        ("/api/v1/customers/{identifier}/unsuppress", "post"),
        ("/api/v1/merge_customers", "post"), ("/api/v1/accounts/region", "get"),
        ("/v1/customers", "get"), ("/v1/customers/attributes", "post"),
        ("/v1/customers/{customer_id}/attributes", "get"),
    }
    found = {(path, method) for path, operations in paths.items() for method in operations}
    assert expected <= found
    for path, method in expected:
        security = paths[path][method]["security"]
        scheme = "TrackBasicAuth" if path.startswith("/api/v1") else "AppBearerAuth"
        assert security == [{scheme: []}], (path, method)
    schemes = schema["components"]["securitySchemes"]
    assert schemes["TrackBasicAuth"]["scheme"] == "basic"
    assert schemes["AppBearerAuth"]["scheme"] == "bearer"


def test_schema_documents_error_shapes_and_bodies(schema):
    identify = schema["paths"]["/api/v1/customers/{identifier}"]["put"]
    assert set(identify["responses"]) >= {"200", "400", "401"}
    event = schema["paths"]["/api/v1/customers/{identifier}/events"]["post"]
    body = event["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body.endswith("/TrackEventRequest")
    assert "name" in schema["components"]["schemas"]["TrackEventRequest"]["required"]
    merge = schema["paths"]["/api/v1/merge_customers"]["post"]
    assert merge["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/SingleError")


def test_docs_page_serves_its_assets_itself(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/api/schema/" in page
    assert "cdn" not in page.lower() and "unpkg" not in page.lower()


def test_schema_documents_not_found_and_unauthorized(schema):
    paths = schema["paths"]
    for path, method in [
        ("/v1/segments/{segment_id}", "get"), ("/v1/segments/{segment_id}/membership", "get"),
        ("/v1/exports/{export_id}", "get"), ("/v1/exports/{export_id}/download", "get"),
        ("/api/v1/segments/{segment_id}/add_customers", "post"),
        ("/api/v1/segments/{segment_id}/remove_customers", "post"),
    ]:
        assert "404" in paths[path][method]["responses"], (path, method)
    assert "401" in paths["/api/v1/accounts/region"]["get"]["responses"]


@pytest.mark.parametrize("body", ["null", "[1]", "{not json", '{"primary": {"id": "a"}}'])
def test_merge_answers_a_bad_body_in_its_documented_shape(track, body):
    response = track.post("/api/v1/merge_customers", data=body,
                          content_type="application/json")
    assert response.status_code == 400
    assert set(response.json()) == {"meta"}
    assert isinstance(response.json()["meta"]["error"], str)


def test_schema_is_served_to_a_client_sending_its_track_credentials(track):
    response = track.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    assert "paths" in response.json()
