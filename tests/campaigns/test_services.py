"""Campaign services: saving definitions by version, and journeys following people."""

import pytest
from django.db import connection
from django.utils import timezone

from campaigns import services
from campaigns.definition import DefinitionError
from campaigns.models import Campaign, Delivery, Journey
from people import services as people
from people.services import Ref
from segments.services import create_segment
from tests.factories import make_person

pytestmark = pytest.mark.django_db


@pytest.fixture
def segment(workspace):
    return create_segment(workspace, name="VIP")


def welcome(segment, **extra):
    return {"name": "Welcome", "tags": ["onboarding"],
            "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
            "workflow": {"steps": [{"id": "wait", "type": "delay", "duration": {"days": 1}}]},
            **extra}


def test_create_campaign_saves_a_normalised_draft(workspace, segment):
    campaign = services.create_campaign(workspace, welcome(segment))

    campaign.refresh_from_db()
    assert (campaign.state, campaign.trigger, campaign.version) == ("draft", "segments", 1)
    assert campaign.name == "Welcome" and campaign.tags == ["onboarding"]
    assert campaign.definition["frequency"] == {"mode": "once"}


def test_an_event_campaign_is_found_by_its_event(workspace):
    campaign = services.create_campaign(
        workspace, {"name": "Receipt", "trigger": {"event": {"name": "purchase"}}})
    assert Campaign.objects.get(workspace=workspace, trigger_event="purchase") == campaign


def test_a_bad_definition_saves_nothing(workspace):
    with pytest.raises(DefinitionError):
        services.create_campaign(workspace, {"name": "", "trigger": {"segments": {}}})
    assert not Campaign.objects.exists()


def test_an_edit_against_an_older_version_is_refused(workspace, segment):
    campaign = services.create_campaign(workspace, welcome(segment))
    first_tab = services.update_campaign(campaign, welcome(segment, name="Hello"), version=1)
    assert first_tab.version == 2

    with pytest.raises(services.StaleEdit) as stale:
        services.update_campaign(campaign, welcome(segment, name="Bonjour"), version=1)

    assert stale.value.campaign.version == 2
    campaign.refresh_from_db()
    assert campaign.name == "Hello"


def test_archived_and_running_campaigns_guard_their_edits(workspace, segment):
    campaign = services.create_campaign(workspace, welcome(segment))
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)

    with pytest.raises(DefinitionError):  # a running campaign keeps every step configured
        services.update_campaign(campaign, welcome(segment, workflow={"steps": [
            {"type": "email"}]}))
    with pytest.raises(services.CampaignStateError):
        services.update_campaign(campaign, {"name": "x", "trigger": {"api": {}}})
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.ARCHIVED)
    with pytest.raises(services.CampaignStateError):
        services.update_campaign(campaign, welcome(segment))


def journey(campaign, person, key="k", **fields):
    now = timezone.now()
    return Journey.objects.create(workspace=campaign.workspace, campaign=campaign, person=person,
                                  cio_id=person.cio_id, entry_key=key, entered_at=now,
                                  next_run_at=now, context={"event": {"plan": "pro"}}, **fields)


def delivery(journey, state=Delivery.State.QUEUED, seq=1):
    return Delivery.objects.create(
        workspace=journey.workspace, campaign=journey.campaign, journey=journey, journey_seq=seq,
        step_id="mail", kind=Delivery.Kind.EMAIL, state=state, cio_id=journey.cio_id,
        recipient="ada@example.com", created_at=timezone.now())


@pytest.mark.parametrize("suppress", [False, True])
def test_deleting_a_person_ends_their_journeys_in_the_same_transaction(workspace, segment,
                                                                       suppress):
    campaign = services.create_campaign(workspace, welcome(segment))
    ada = make_person(workspace, "ada", email="ada@example.com")
    travelling = journey(campaign, ada)
    queued = delivery(travelling)
    sent = delivery(travelling, Delivery.State.SENT, seq=2)

    if suppress:
        people.suppress_identifier(workspace, Ref("id", "ada"))
    else:
        people.delete_person(workspace, Ref("id", "ada"))
    connection.check_constraints()  # no journey is left pointing at the deleted person

    travelling.refresh_from_db()
    assert (travelling.state, travelling.exit_reason) == ("exited", "person_deleted")
    assert travelling.person_id is None and travelling.next_run_at is None
    queued.refresh_from_db()
    sent.refresh_from_db()
    assert queued.state == Delivery.State.SKIPPED and sent.state == Delivery.State.SENT
    if suppress:
        assert travelling.cio_id is None and travelling.context == {}
        assert (sent.cio_id, sent.recipient) == (None, "")
    else:
        assert travelling.cio_id == ada.cio_id
        assert sent.recipient == "ada@example.com"


def test_a_merge_moves_journeys_without_a_second_one_in_a_campaign(workspace, segment):
    welcome_campaign = services.create_campaign(workspace, welcome(segment))
    other = services.create_campaign(workspace, welcome(segment, name="Other"))
    primary = make_person(workspace, "p1")
    secondary = make_person(workspace, "s1")
    both_in = journey(welcome_campaign, primary, "p")
    duplicate = journey(welcome_campaign, secondary, "s")
    moved = journey(other, secondary, "s")

    people.merge_people(workspace, primary=Ref("id", "p1"), secondary=Ref("id", "s1"))
    connection.check_constraints()

    for row in (both_in, duplicate, moved):
        row.refresh_from_db()
    assert (both_in.person_id, both_in.state) == (primary.pk, "active")
    assert (duplicate.state, duplicate.exit_reason, duplicate.person_id) == (
        "exited", "merged", None)
    assert (moved.person_id, moved.cio_id, moved.state) == (primary.pk, primary.cio_id, "active")


def test_messages_of_moved_journeys_follow_the_primary_person(workspace, segment):
    other = services.create_campaign(workspace, welcome(segment, name="Other"))
    make_person(workspace, "p1")
    secondary = make_person(workspace, "s1")
    sent = delivery(journey(other, secondary, "s"), Delivery.State.SENT)

    people.merge_people(workspace, primary=Ref("id", "p1"), secondary=Ref("id", "s1"))
    people.suppress_identifier(workspace, Ref("id", "p1"))

    sent.refresh_from_db()
    assert (sent.cio_id, sent.recipient) == (None, "")  # forgotten with the primary
