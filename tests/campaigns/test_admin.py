"""The campaigns admin that support staff use: campaigns, journeys with their step log and
deliveries, read-only, with stop, archive and unarchive going through the services."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from campaigns import engine, services
from campaigns.models import Campaign, Delivery, Journey
from segments.services import add_to_segment, create_segment
from tests.factories import UserFactory, make_person
from tests.people.test_admin import message_texts, staff_with

MAIL = {"id": "mail", "type": "email", "from": "team@example.com", "subject": "Hi",
        "body_html": "<p>Hi</p>"}


@pytest.fixture
def su_client(client, db):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def vip(workspace):
    return create_segment(workspace, name="VIP")


def campaign_for(workspace, segment, name="Welcome", **extra) -> Campaign:
    return services.create_campaign(workspace, {
        "name": name, "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "workflow": {"steps": [MAIL, {"id": "wait", "type": "delay",
                                      "duration": {"days": 2}}]}, **extra})


def url(model="campaign", action="changelist", *args):
    return reverse(f"admin:campaigns_{model}_{action}", args=args)


def post_action(client, action, objects, *, model="campaign"):
    """POST a changelist action the way the admin's action bar does."""
    return client.post(url(model), {
        "action": action, "index": "0", "select_across": "0",
        ACTION_CHECKBOX_NAME: [str(obj.pk) for obj in objects]})


def travelled(workspace, segment):
    """A running campaign that one person (ada) has travelled to its delay."""
    ada = make_person(workspace, "ada", email="ada@example.com")
    add_to_segment(segment, [ada.pk])
    campaign = services.start_campaign(campaign_for(workspace, segment))
    while engine.advance_due():
        pass
    return campaign, ada


def state_of(campaign) -> str:
    campaign.refresh_from_db()
    return campaign.state


def test_campaigns_are_listed_searched_and_shown_with_their_definition(su_client, workspace,
                                                                        vip):
    onboarding = campaign_for(workspace, vip, name="Onboarding")
    campaign_for(workspace, vip, name="Winback")

    page = su_client.get(url()).content.decode()
    assert "Onboarding" in page and "Winback" in page
    found = su_client.get(url(), {"q": "winb"}).content.decode()
    assert "Winback" in found and "Onboarding" not in found
    detail = su_client.get(url("campaign", "change", onboarding.pk)).content.decode()
    assert "&quot;subject&quot;: &quot;Hi&quot;" in detail


def test_nothing_is_added_edited_or_deleted_through_the_stock_admin(su_client, workspace, vip):
    campaign, ada = travelled(workspace, vip)
    journey = Journey.objects.get(campaign=campaign)
    delivery = Delivery.objects.get(campaign=campaign)
    for model, obj in (("campaign", campaign), ("journey", journey), ("delivery", delivery)):
        assert su_client.get(url(model, "add")).status_code == 403
        assert su_client.post(url(model, "change", obj.pk), {}).status_code == 403
        assert su_client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    post_action(su_client, "delete_selected", [campaign])
    assert Campaign.objects.filter(pk=campaign.pk, name="Welcome").exists()


def test_stop_goes_through_the_service_and_skips_campaigns_not_running(su_client, workspace,
                                                                      vip):
    campaign, _ = travelled(workspace, vip)
    draft = campaign_for(workspace, vip, name="Draft")

    response = post_action(su_client, "stop", [campaign, draft])

    assert (state_of(campaign), state_of(draft)) == ("stopped", "draft")
    assert Journey.objects.get(campaign=campaign).exit_reason == "campaign_stopped"
    assert message_texts(response) == ["Stopped 1 campaigns.",
                                       "Left 1 alone: they are not running."]


def test_stop_can_let_the_people_in_it_finish(su_client, workspace, vip):
    campaign, _ = travelled(workspace, vip)
    post_action(su_client, "stop_letting_finish", [campaign])
    assert state_of(campaign) == "stopping"
    assert Journey.objects.get(campaign=campaign).state == "active"


def test_archive_and_unarchive_go_through_the_services(su_client, workspace, vip):
    campaign, _ = travelled(workspace, vip)

    post_action(su_client, "archive", [campaign])
    assert state_of(campaign) == "archived"
    assert Journey.objects.get(campaign=campaign).exit_reason == "campaign_archived"

    response = post_action(su_client, "unarchive", [campaign])
    assert state_of(campaign) == "stopped"
    assert message_texts(response)[-1] == "Unarchived 1 campaigns."


def test_actions_need_the_change_permission(client, workspace, vip):
    campaign, _ = travelled(workspace, vip)
    client.force_login(staff_with("campaigns.view_campaign"))
    assert client.get(url()).status_code == 200
    post_action(client, "archive", [campaign])
    assert state_of(campaign) == "running"

    client.force_login(staff_with("campaigns.view_campaign", "campaigns.change_campaign"))
    post_action(client, "archive", [campaign])
    assert state_of(campaign) == "archived"


def test_journeys_are_found_by_cio_id_and_show_their_step_log(su_client, workspace, vip):
    campaign, ada = travelled(workspace, vip)
    bob = make_person(workspace, "bob")
    engine.enter(campaign, [engine.Entry("bob", bob.pk, bob.cio_id)])
    journey = Journey.objects.get(person=ada)

    for term in (ada.cio_id, f"cio_{ada.cio_id}"):
        page = su_client.get(url("journey"), {"q": term}).content.decode()
        assert f"cio_{ada.cio_id}" in page and f"cio_{bob.cio_id}" not in page

    detail = su_client.get(url("journey", "change", journey.pk)).content.decode()
    assert 'id="steps-heading"' in detail  # the step log, inline, in order
    assert detail.index("mail delivery:queued") < detail.index("wait waiting")


def test_deliveries_are_found_by_cio_id_or_recipient(su_client, workspace, vip):
    campaign, ada = travelled(workspace, vip)
    delivery = Delivery.objects.get(campaign=campaign)

    for term in (f"cio_{ada.cio_id}", "ada@example.com"):
        page = su_client.get(url("delivery"), {"q": term}).content.decode()
        assert f"/admin/campaigns/delivery/{delivery.pk}/change/" in page
    nobody = su_client.get(url("delivery"), {"q": "nobody@example.com"}).content.decode()
    assert f"/admin/campaigns/delivery/{delivery.pk}/change/" not in nobody
    detail = su_client.get(url("delivery", "change", delivery.pk)).content.decode()
    assert "ada@example.com" in detail and "queued" in detail.lower()


def test_the_journey_and_delivery_lists_take_a_fixed_number_of_queries(
        su_client, workspace, vip, django_assert_max_num_queries):
    people = [make_person(workspace, f"p{n}", email=f"p{n}@example.com") for n in range(6)]
    add_to_segment(vip, [person.pk for person in people])
    services.start_campaign(campaign_for(workspace, vip))
    while engine.advance_due():
        pass
    su_client.get(url("journey"))  # warm the session and content types
    for model in ("journey", "delivery"):
        with django_assert_max_num_queries(8):
            assert su_client.get(url(model)).status_code == 200
