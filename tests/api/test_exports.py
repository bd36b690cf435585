"""Exports of people over the App API: built in the background, downloaded by signed link."""

import csv
import io
import json

import pytest
import time_machine
from django.utils import timezone
from rest_framework.test import APIClient

from segments.models import Export
from tests.factories import make_person

PRO = {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}}


@pytest.fixture(autouse=True)
def export_dir(settings, tmp_path):
    settings.ENGAGE_EXPORT_DIR = str(tmp_path / "exports")


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def read_csv(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_export_is_built_after_commit_and_downloaded(app, workspace, monkeypatch,
                                                      django_capture_on_commit_callbacks):
    from segments import exports

    monkeypatch.setattr(exports, "BATCH", 3)  # several batches of a bounded size
    for number in range(7):
        make_person(workspace, f"u{number}", email=f"u{number}@example.com",
                    plan="pro" if number != 3 else "free", nested={"a": [1, 2]})
    with django_capture_on_commit_callbacks(execute=True):
        response = post(app, "/v1/exports/customers", {"filters": PRO})

    assert response.status_code == 200
    export_id = response.json()["export"]["id"]
    detail = app.get(f"/v1/exports/{export_id}").json()["export"]
    assert (detail["status"], detail["total"], detail["failed"]) == ("done", 6, False)
    assert [e["id"] for e in app.get("/v1/exports").json()["exports"]] == [export_id]

    link = app.get(f"/v1/exports/{export_id}/download").json()["url"]
    download = APIClient().get(link)  # the link itself is the credential
    assert download.status_code == 200
    rows = read_csv(download)
    assert [row["id"] for row in rows] == ["u0", "u1", "u2", "u4", "u5", "u6"]
    assert rows[0]["email"] == "u0@example.com"
    assert json.loads(rows[0]["attributes"])["nested"] == {"a": [1, 2]}
    assert Export.objects.get(pk=export_id).downloads == 1


def test_download_links_expire(app, workspace, django_capture_on_commit_callbacks):
    make_person(workspace, "u1", plan="pro")
    with django_capture_on_commit_callbacks(execute=True):
        export_id = post(app, "/v1/exports/customers", {"filters": PRO}).json()["export"]["id"]
    link = app.get(f"/v1/exports/{export_id}/download").json()["url"]

    with time_machine.travel(timezone.now() + timezone.timedelta(minutes=16)):
        assert APIClient().get(link).status_code == 404
    assert APIClient().get("/exports/forged:token/people.csv").status_code == 404


def test_an_export_not_yet_built_has_no_link(app, workspace):
    export_id = post(app, "/v1/exports/customers", {"filters": PRO}).json()["export"]["id"]
    assert app.get(f"/v1/exports/{export_id}").json()["export"]["status"] == "pending"
    assert app.get(f"/v1/exports/{export_id}/download").status_code == 404


def test_export_errors(app, workspace, other_workspace, django_capture_on_commit_callbacks):
    assert post(app, "/v1/exports/customers", {}).status_code == 400
    response = post(app, "/v1/exports/customers", {"filters": {"attribute": {"field": "a"}}})
    assert response.status_code == 400 and "operator" in response.json()["meta"]["error"]
    assert not Export.objects.exists()
    # Another workspace's export is not there.
    theirs = APIClient()
    theirs.credentials(HTTP_AUTHORIZATION=f"Bearer {other_workspace.app_api_key}")
    export_id = post(theirs, "/v1/exports/customers", {"filters": PRO}).json()["export"]["id"]
    assert app.get(f"/v1/exports/{export_id}").status_code == 404
