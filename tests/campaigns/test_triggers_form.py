"""Form-triggered campaigns: the Track API's form submission, over HTTP with Basic auth."""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from campaigns import services
from campaigns.models import Campaign, Journey
from people import services as people
from people.models import Person
from tests.api.conftest import basic
from tests.factories import make_person

URL = "/api/v1/forms/{}/submit"


@pytest.fixture
def track(workspace):
    cache.clear()  # the throttle's counts
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic(workspace.site_id, workspace.track_api_key))
    return client


def form_campaign(workspace, form_id="newsletter", **extra) -> Campaign:
    return services.start_campaign(services.create_campaign(workspace, {
        "name": f"Form {form_id}", "trigger": {"form": {"id": form_id}}, **extra}))


def submit(client, form_id, data, **headers):
    return client.post(URL.format(form_id), {"data": data}, format="json", **headers)


@pytest.mark.django_db
def test_a_submission_identifies_by_email_stores_the_fields_and_enters(workspace, track):
    campaign = form_campaign(workspace)
    other_form = form_campaign(workspace, "contact")

    response = submit(track, "newsletter", {"email": "ada@example.com", "first_name": "Ada"})

    assert response.status_code == 204
    ada = Person.objects.get(workspace=workspace, email="ada@example.com")
    assert ada.attributes["first_name"] == "Ada"
    (journey,) = Journey.objects.filter(campaign=campaign)
    assert journey.person_id == ada.pk
    assert journey.context == {"trigger": {"email": "ada@example.com", "first_name": "Ada"}}
    assert not Journey.objects.filter(campaign=other_form).exists()


@pytest.mark.django_db
def test_a_submission_by_id_updates_the_known_person(workspace, track):
    campaign = form_campaign(workspace)
    ada = make_person(workspace, "ada", plan="free")

    assert submit(track, "newsletter", {"id": "ada", "plan": "pro"}).status_code == 204

    ada.refresh_from_db()
    assert ada.attributes["plan"] == "pro"
    assert Journey.objects.get(campaign=campaign).person_id == ada.pk


@pytest.mark.django_db
def test_a_suppressed_submitter_is_accepted_and_ignored(workspace, track):
    campaign = form_campaign(workspace)
    make_person(workspace, email="ada@example.com")
    people.suppress_identifier(workspace, people.Ref("email", "ada@example.com"))

    response = submit(track, "newsletter", {"email": "ada@example.com", "first_name": "Ada"})

    assert response.status_code == 204
    assert not Person.objects.filter(workspace=workspace).exists()
    assert not Journey.objects.filter(campaign=campaign).exists()


@pytest.mark.django_db
def test_the_campaign_filters_are_checked_on_entry(workspace, track):
    campaign = form_campaign(workspace, filters={
        "attribute": {"field": "plan", "operator": "eq", "value": "pro"}})

    submit(track, "newsletter", {"id": "ada", "plan": "free"})
    assert not Journey.objects.filter(campaign=campaign).exists()

    submit(track, "newsletter", {"id": "ada", "plan": "pro"})
    assert Journey.objects.filter(campaign=campaign).count() == 1


@pytest.mark.django_db
def test_a_resent_submission_with_its_key_enters_once(workspace, track):
    campaign = form_campaign(workspace)

    for _ in range(2):
        submit(track, "newsletter", {"id": "ada"}, HTTP_IDEMPOTENCY_KEY="sub-1")
    submit(track, "newsletter", {"id": "ada"})

    assert Journey.objects.filter(campaign=campaign).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("body", [{"data": {"first_name": "Ada"}}, {"data": "x"}, {}])
def test_a_submission_without_an_identifier_is_refused(workspace, track, body):
    form_campaign(workspace)

    response = track.post(URL.format("newsletter"), body, format="json")

    assert response.status_code == 400
    assert response.json()["meta"]["errors"]
    assert not Person.objects.exists()


@pytest.mark.django_db
def test_an_email_is_no_identifier_in_an_id_workspace(id_workspace):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic(id_workspace.site_id,
                                                id_workspace.track_api_key))

    response = submit(client, "newsletter", {"email": "ada@example.com"})

    assert response.status_code == 400
    assert not Person.objects.exists()


@pytest.mark.django_db
def test_bad_credentials_answer_401(workspace):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic(workspace.site_id, "wrong"))

    assert submit(client, "newsletter", {"id": "ada"}).status_code == 401
    assert not Person.objects.exists()


@pytest.mark.django_db
def test_a_form_enters_only_its_own_workspaces_campaigns(workspace, other_workspace, track):
    ours = form_campaign(workspace)
    theirs = form_campaign(other_workspace)

    submit(track, "newsletter", {"id": "ada"})

    assert Journey.objects.filter(campaign=ours).count() == 1
    assert not Journey.objects.filter(campaign=theirs).exists()
    assert not Person.objects.filter(workspace=other_workspace).exists()
