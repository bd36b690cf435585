"""Data campaigns: a secret URL per campaign, its JSON as {{trigger.*}}, steps naming people."""

import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.test import Client

from campaigns import engine, services, triggers
from campaigns.models import Campaign, Journey, JourneyStep
from people import services as people
from people.models import Person
from tests.factories import make_person

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def travel():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def data_campaign(workspace, steps=None) -> Campaign:
    return services.start_campaign(services.create_campaign(workspace, {
        "name": "Signups from the shop", "trigger": {"webhook": {}},
        "workflow": {"steps": steps or []}}))


def post(token, body, **headers):
    raw = body if isinstance(body, bytes) else json.dumps(body)
    return Client().post(f"/api/v1/webhooks/{token}", raw, content_type="application/json",
                         **headers)


def advance_all():
    while engine.advance_due():
        pass


def outcomes(campaign):
    return list(JourneyStep.objects.filter(journey__campaign=campaign).order_by("pk")
                .values_list("step_id", "outcome"))


@pytest.mark.django_db
def test_posted_json_starts_a_journey_carrying_it(workspace, travel):
    campaign = data_campaign(workspace)
    token = triggers.webhook_token(campaign)

    response = post(token, {"email": "ada@example.com", "plan": "pro"})

    assert response.status_code == 200
    assert response.json() == {}
    (journey,) = Journey.objects.filter(campaign=campaign)
    assert journey.person_id is None
    assert journey.context == {"trigger": {"email": "ada@example.com", "plan": "pro"}}


@pytest.mark.django_db
def test_steps_act_on_the_person_the_data_names(workspace, travel):
    campaign = data_campaign(workspace, [
        {"id": "upsert", "type": "update_attributes", "person": {"email": "{{trigger.email}}"},
         "set": {"plan": "{{trigger.plan}}"}},
        {"id": "note", "type": "create_event", "person": {"email": "{{trigger.email}}"},
         "name": "shop_signup", "data": {"plan": "{{trigger.plan}}"}},
        {"id": "other", "type": "update_attributes", "person": {"id": "{{trigger.referrer}}"},
         "set": {"referred": "yes"}}])
    bob = make_person(workspace, "bob")
    token = triggers.webhook_token(campaign)

    post(token, {"email": "ada@example.com", "plan": "pro", "referrer": "bob"})
    advance_all()

    ada = Person.objects.get(workspace=workspace, email="ada@example.com")
    assert ada.attributes["plan"] == "pro"
    assert list(ada.events.values_list("name", "data")) == [("shop_signup", {"plan": "pro"})]
    bob.refresh_from_db()
    assert bob.attributes["referred"] == "yes"
    assert "referred" not in ada.attributes
    assert Journey.objects.get(campaign=campaign).state == Journey.State.FINISHED


@pytest.mark.django_db
def test_a_step_naming_nobody_is_skipped_and_suppressed_people_are_not_created(
        workspace, travel):
    campaign = data_campaign(workspace, [
        {"id": "event", "type": "create_event", "person": {"id": "{{trigger.id}}"},
         "name": "ping"},
        {"id": "upsert", "type": "update_attributes", "person": {"email": "{{trigger.email}}"},
         "set": {"seen": "yes"}},
        {"id": "typo", "type": "update_attributes", "person": {"email": "{{trigger.mail}}"},
         "set": {"seen": "yes"}}])
    make_person(workspace, email="gone@example.com")
    people.suppress_identifier(workspace, people.Ref("email", "gone@example.com"))

    post(triggers.webhook_token(campaign), {"id": "nobody", "email": "gone@example.com"})
    advance_all()

    assert outcomes(campaign) == [("event", "skipped"), ("upsert", "skipped"),
                                  ("typo", "failed")]
    assert not Person.objects.filter(workspace=workspace).exists()


@pytest.mark.django_db
def test_a_resent_request_with_its_key_starts_one_journey(workspace, travel):
    campaign = data_campaign(workspace)
    token = triggers.webhook_token(campaign)

    for _ in range(2):
        post(token, [1, 2], HTTP_IDEMPOTENCY_KEY="req-1")
    post(token, [1, 2])

    assert Journey.objects.filter(campaign=campaign).count() == 2


@pytest.mark.django_db
def test_unknown_stopped_or_archived_campaigns_answer_404(workspace, travel):
    campaign = data_campaign(workspace)
    token = triggers.webhook_token(campaign)

    response = post("not-a-token", {})
    assert response.status_code == 404
    assert response.json()["meta"]["errors"]

    services.stop_campaign(campaign)
    assert post(token, {}).status_code == 404
    services.archive_campaign(campaign)
    assert post(token, {}).status_code == 404
    assert not Journey.objects.filter(campaign=campaign).exists()


@pytest.mark.django_db
def test_a_regenerated_url_replaces_the_old_one(workspace, travel):
    campaign = data_campaign(workspace)
    old = triggers.webhook_token(campaign)
    assert triggers.webhook_token(campaign) == old  # stable until regenerated

    new = triggers.regenerate_webhook_token(campaign)

    assert new != old
    assert post(old, {}).status_code == 404
    assert post(new, {}).status_code == 200


@pytest.mark.django_db
def test_bodies_over_32_kb_and_bad_json_are_refused(workspace, travel):
    campaign = data_campaign(workspace)
    token = triggers.webhook_token(campaign)

    assert post(token, {"blob": "x" * 33_000}).status_code == 413
    assert post(token, b"{not json").status_code == 400
    assert not Journey.objects.filter(campaign=campaign).exists()


@pytest.mark.django_db
def test_a_token_reaches_only_its_own_campaign(workspace, other_workspace, travel):
    ours = data_campaign(workspace)
    theirs = data_campaign(other_workspace)

    post(triggers.webhook_token(theirs), {"n": 1})

    assert not Journey.objects.filter(campaign=ours).exists()
    assert Journey.objects.filter(campaign=theirs).count() == 1
