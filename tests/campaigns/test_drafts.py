"""Drafts: editing a drafted email, sending and discarding drafts, singly or in bulk,
once however often it is asked."""

import pytest
import time_machine
from django.utils import timezone

from campaigns import drafts
from campaigns.models import Delivery, Journey
from tests.campaigns.insights_support import MAIL, START, delivery_of, enter, running
from tests.factories import make_person

pytestmark = pytest.mark.django_db

HOOK = {"id": "hook", "type": "webhook", "name": "Tell CRM", "method": "POST",
        "url": "https://crm.example.com/{{customer.id}}", "sending": "draft"}


@pytest.fixture(autouse=True)
def travel():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def drafted(workspace):
    campaign = running(workspace, [{**MAIL, "sending": "draft"}])
    people = [make_person(workspace, name, email=f"{name}@example.com")
              for name in ("ada", "bob", "cy")]
    enter(campaign, people)
    return campaign, [delivery_of(campaign, person) for person in people]


def states(deliveries):
    return [Delivery.objects.get(pk=delivery.pk).state for delivery in deliveries]


def test_editing_a_draft_stores_the_whole_message_with_the_new_subject_and_body(drafted):
    campaign, (ada, *_) = drafted

    drafts.edit_draft(ada, subject="Hello Ada", body_html="<p>Just for you</p>")

    ada.refresh_from_db()
    assert ada.payload["message"] == {
        "from": "team@example.com", "to": "{{customer.email}}", "reply_to": None,
        "subject": "Hello Ada", "body_html": "<p>Just for you</p>", "body_text": None,
        "tracking": True}
    assert ada.state == Delivery.State.DRAFTED
    drafts.edit_draft(ada, subject="Again", body_html="<p>x</p>", body_text="x")
    ada.refresh_from_db()
    assert (ada.payload["message"]["subject"], ada.payload["message"]["body_text"]) == (
        "Again", "x")
    assert drafts.draft_message(ada)["subject"] == "Again"


def test_a_draft_that_left_the_drafts_cannot_be_edited(drafted):
    campaign, (ada, *_) = drafted
    drafts.send_drafts(campaign, [ada.pk])

    with pytest.raises(drafts.NotADraft):
        drafts.edit_draft(ada, subject="Late", body_html="<p>late</p>")
    ada.refresh_from_db()
    assert "message" not in ada.payload


def test_sending_queues_the_chosen_drafts_now_once(drafted, travel):
    campaign, deliveries = drafted

    assert drafts.send_drafts(campaign, [deliveries[0].pk, deliveries[1].pk]) == 2
    assert drafts.send_drafts(campaign, [deliveries[0].pk, deliveries[1].pk]) == 0

    assert states(deliveries) == ["queued", "queued", "drafted"]
    assert Delivery.objects.get(pk=deliveries[0].pk).next_attempt_at == timezone.now()


def test_discarding_ends_drafts_once_and_never_sends_them(drafted):
    campaign, deliveries = drafted

    assert drafts.discard_drafts(campaign, [d.pk for d in deliveries]) == 3
    assert drafts.discard_drafts(campaign, [d.pk for d in deliveries]) == 0
    assert drafts.send_drafts(campaign, [d.pk for d in deliveries]) == 0

    assert states(deliveries) == ["discarded"] * 3
    assert Delivery.objects.get(pk=deliveries[0].pk).next_attempt_at is None


def test_bulk_changes_take_one_statement_whatever_the_number(drafted,
                                                            django_assert_num_queries):
    campaign, deliveries = drafted
    with django_assert_num_queries(3):  # savepoint, UPDATE, release
        drafts.send_drafts(campaign, [d.pk for d in deliveries])


def test_drafts_of_another_campaign_are_left_alone(workspace, other_workspace, drafted):
    campaign, deliveries = drafted
    theirs = running(other_workspace, [{**MAIL, "sending": "draft"}], name="Theirs")
    eve = make_person(other_workspace, "eve", email="eve@example.com")
    enter(theirs, [eve])
    their_draft = delivery_of(theirs, eve)

    assert drafts.send_drafts(campaign, [their_draft.pk]) == 0
    assert drafts.discard_drafts(campaign, [their_draft.pk]) == 0
    assert states([their_draft]) == ["drafted"]
    assert list(drafts.drafts_of(campaign)) == deliveries


def test_discarding_a_drafted_webhook_wakes_the_journey_waiting_for_it(workspace, travel):
    campaign = running(workspace, [HOOK])
    ada = make_person(workspace, "ada", email="ada@example.com")
    enter(campaign, [ada])
    hook = delivery_of(campaign, ada)
    journey = Journey.objects.get(person=ada)
    assert (journey.next_run_at, journey.step_data) == (None, {"delivery": hook.pk,
                                                                "waiting": True})

    drafts.discard_drafts(campaign, [hook.pk])

    journey.refresh_from_db()
    assert journey.next_run_at == timezone.now()
    enter(campaign, [])  # the engine moves it on
    journey.refresh_from_db()
    assert journey.state == Journey.State.FINISHED
