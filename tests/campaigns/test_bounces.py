"""Bounces and complaints: ESP webhooks, the App API's bounce endpoint, the suppression
list and the settings page that keeps it."""

import json
from datetime import UTC, datetime

import pytest
import time_machine
from anymail.signals import AnymailTrackingEvent, EventType, RejectReason, tracking
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from campaigns import bounces
from campaigns.models import EmailSuppression
from campaigns.tracking import suppressed_addresses
from engage.models import Membership
from people.models import Activity
from segments.models import Membership as SegmentMembership
from segments.models import PendingEvaluation
from segments.services import create_segment, evaluate_pending
from tests.campaigns.test_tracking import sent_delivery
from tests.factories import make_member, make_person

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
BOUNCES = "/v1/bounces"
LIST = reverse("settings:emailsuppression-list")
ADD = reverse("settings:emailsuppression-create")


def remove_url(pk):
    return reverse("settings:emailsuppression-delete", args=[pk])


@pytest.fixture
def travel():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def ada(workspace):
    return make_person(workspace, "ada", email="Ada@Example.com")


def esp_event(kind, message_id, *, recipient="ada@example.com", **extra):
    tracking.send(sender=object, esp_name="Postmark", event=AnymailTrackingEvent(
        event_type=kind, message_id=message_id, recipient=recipient, timestamp=START, **extra))


def app_client(workspace) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {workspace.app_api_key}")
    return client


def addresses(workspace) -> dict[str, str]:
    return dict(EmailSuppression.objects.in_workspace(workspace)
                .values_list("address", "reason"))


# --- suppressed_addresses -------------------------------------------------------------------


def test_suppressed_addresses_are_those_on_the_workspaces_list_as_given(workspace,
                                                                        other_workspace):
    bounces.suppress_address(workspace, "Ada@Example.com", reason="bounce")
    bounces.suppress_address(other_workspace, "bob@example.com", reason="bounce")

    found = suppressed_addresses(workspace.pk, ["ADA@example.com", "bob@example.com", "",
                                                "ada@example.com", "cy@example.com"])

    assert found == {"ADA@example.com", "ada@example.com"}
    assert suppressed_addresses(workspace.pk, []) == set()
    assert suppressed_addresses(other_workspace.pk, ["Bob@example.com"]) == {"Bob@example.com"}


def test_an_address_is_suppressed_once(workspace):
    first, created = bounces.suppress_address(workspace, "ada@example.com", reason="bounce")
    again, created_again = bounces.suppress_address(workspace, " ADA@example.com ",
                                                    reason="complaint")
    assert (created, created_again, again.pk) == (True, False, first.pk)
    assert addresses(workspace) == {"ada@example.com": "bounce"}


# --- django-anymail's tracking events ----------------------------------------------------------


def test_an_esp_hard_bounce_suppresses_the_address_and_marks_the_delivery(workspace, ada,
                                                                          travel):
    delivery = sent_delivery(workspace, ada, message_id="pm-0001")

    esp_event(EventType.BOUNCED, "pm-0001", reject_reason=RejectReason.BOUNCED,
              event_id="e1", description="mailbox unknown")
    esp_event(EventType.BOUNCED, "pm-0001", event_id="e1")  # the ESP retrying its webhook

    delivery.refresh_from_db()
    assert delivery.bounced_at == START
    assert delivery.payload["bounce"]["type"] == "hard"
    assert delivery.payload["bounce"]["description"] == "mailbox unknown"
    assert addresses(workspace) == {"ada@example.com": "bounce"}
    assert list(Activity.objects.filter(cio_id=ada.cio_id, kind__startswith="email_")
                .values_list("kind", flat=True)) == ["email_bounced"]


def test_an_esp_complaint_suppresses_with_its_reason(workspace, ada, travel):
    delivery = sent_delivery(workspace, ada, message_id="<abc@mail.example.com>")

    # Found by the Message-ID whether or not the report keeps its angle brackets.
    esp_event(EventType.COMPLAINED, "abc@mail.example.com")

    delivery.refresh_from_db()
    assert delivery.bounced_at == START
    assert addresses(workspace) == {"ada@example.com": "complaint"}
    assert Activity.objects.filter(cio_id=ada.cio_id, kind="email_complained").count() == 1


def test_esp_soft_bounces_are_counted_once_per_event(workspace, ada):
    delivery = sent_delivery(workspace, ada, message_id="pm-2")

    for event_id in ("s1", "s2", "s2"):
        esp_event(EventType.DEFERRED, "pm-2", event_id=event_id)

    delivery.refresh_from_db()
    assert delivery.payload["soft_bounces"] == 2
    assert delivery.bounced_at is None
    assert addresses(workspace) == {}


def test_esp_rejections_for_bad_addresses_suppress_and_other_rejections_do_not(workspace, ada):
    sent_delivery(workspace, ada, message_id="pm-3")
    esp_event(EventType.REJECTED, "pm-3", reject_reason=RejectReason.OTHER)
    assert addresses(workspace) == {}
    esp_event(EventType.REJECTED, "pm-3", reject_reason=RejectReason.INVALID)
    assert addresses(workspace) == {"ada@example.com": "bounce"}


def test_esp_opens_clicks_and_unsubscribes_reach_the_delivery(workspace, ada, travel):
    delivery = sent_delivery(workspace, ada, message_id="pm-4")

    esp_event(EventType.CLICKED, "pm-4", click_url="https://example.com")
    esp_event(EventType.UNSUBSCRIBED, "pm-4")

    delivery.refresh_from_db()
    assert delivery.opened_at == delivery.clicked_at == delivery.unsubscribed_at == START
    ada.refresh_from_db()
    assert ada.unsubscribed


def test_esp_events_about_unknown_messages_change_nothing(workspace, ada):
    delivery = sent_delivery(workspace, ada, message_id="pm-5")
    for kind in (EventType.BOUNCED, EventType.OPENED, EventType.DELIVERED):
        esp_event(kind, "pm-unknown")
    esp_event(EventType.BOUNCED, None)
    delivery.refresh_from_db()
    assert (delivery.bounced_at, delivery.opened_at) == (None, None)
    assert addresses(workspace) == {}


def test_the_anymail_webhook_url_feeds_the_same_receiver(client, workspace, ada, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": "user:pass"}
    delivery = sent_delivery(workspace, ada, message_id="883953f4-6105-42a2-a16a-77a8eac79483")
    url = reverse("tracking:anymail:postmark_tracking_webhook")
    body = {"RecordType": "Bounce", "Type": "HardBounce", "ID": 42,
            "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Email": "ada@example.com",
            "BouncedAt": "2026-03-02T08:00:00Z", "Description": "unknown user"}

    refused = client.post(url, json.dumps(body), content_type="application/json")
    accepted = client.post(url, json.dumps(body), content_type="application/json",
                           HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")

    assert url.startswith("/t/esp/") and refused.status_code == 400
    assert accepted.status_code == 200
    delivery.refresh_from_db()
    assert delivery.bounced_at is not None
    assert addresses(workspace) == {"ada@example.com": "bounce"}


def test_a_bounce_re_evaluates_the_persons_segments(workspace, ada, travel):
    bounced = create_segment(workspace, name="Bounced", conditions_tree={
        "engagement": {"metric": "bounced"}})
    sent_delivery(workspace, ada, message_id="pm-6")
    PendingEvaluation.objects.all().delete()

    esp_event(EventType.BOUNCED, "pm-6")

    assert PendingEvaluation.objects.filter(person_id=ada.pk).exists()
    evaluate_pending(workspace.pk)
    assert SegmentMembership.objects.filter(segment=bounced, person=ada).exists()


# --- the App API's bounce endpoint -----------------------------------------------------------


def test_the_bounce_endpoint_needs_the_app_key(workspace):
    body = {"email": "ada@example.com", "type": "hard"}
    anonymous = APIClient().post(BOUNCES, body, format="json")
    track = APIClient()
    track.credentials(HTTP_AUTHORIZATION=f"Bearer {workspace.track_api_key}")
    wrong = track.post(BOUNCES, body, format="json")
    assert (anonymous.status_code, wrong.status_code) == (401, 401)
    assert "error" in wrong.json()["meta"]
    assert addresses(workspace) == {}


@pytest.mark.parametrize(("body", "words"), [
    ({"type": "hard"}, "email must be an email address"),
    ({"email": "nobody", "type": "hard"}, "email must be an email address"),
    ({"email": "ada@example.com", "type": "bounced"}, "type must be one of: hard, soft, complaint"),
    ({"email": "ada@example.com", "type": "soft", "message_id": 7}, "message_id must be"),
    ({"email": "ada@example.com", "type": "soft", "event_id": ""}, "event_id must be"),
])
def test_bad_bounces_answer_400_in_the_app_apis_shape(workspace, body, words):
    response = app_client(workspace).post(BOUNCES, body, format="json")
    assert response.status_code == 400
    assert words in response.json()["meta"]["error"]
    assert addresses(workspace) == {}


def test_a_body_that_is_no_object_is_refused(workspace):
    response = app_client(workspace).post(BOUNCES, [1], format="json")
    assert response.status_code == 400 and "meta" in response.json()


def test_a_hard_bounce_over_the_api_is_idempotent(workspace, ada, travel):
    delivery = sent_delivery(workspace, ada, message_id="<m1@smtp.example.com>")
    body = {"email": "ADA@example.com", "type": "hard", "message_id": "<m1@smtp.example.com>"}

    first = app_client(workspace).post(BOUNCES, body, format="json")
    again = app_client(workspace).post(BOUNCES, body, format="json")

    assert first.status_code == again.status_code == 200
    assert first.json() == {"email": "ADA@example.com", "type": "hard", "suppressed": True,
                            "delivery_id": delivery.pk, "soft_bounces": 0, "duplicate": False}
    assert again.json()["suppressed"]
    assert addresses(workspace) == {"ada@example.com": "bounce"}
    delivery.refresh_from_db()
    assert delivery.bounced_at == START


def test_soft_bounces_over_the_api_count_and_an_event_id_makes_a_retry_safe(workspace, ada):
    delivery = sent_delivery(workspace, ada, message_id="<m2@smtp.example.com>")
    body = {"email": "ada@example.com", "type": "soft", "message_id": "<m2@smtp.example.com>"}
    client = app_client(workspace)

    counts = [client.post(BOUNCES, {**body, "event_id": event}, format="json").json()
              for event in ("a", "b", "b")]

    assert [c["soft_bounces"] for c in counts] == [1, 2, 2]
    assert [c["duplicate"] for c in counts] == [False, False, True]
    assert not any(c["suppressed"] for c in counts)
    delivery.refresh_from_db()
    assert delivery.payload["soft_bounces"] == 2 and delivery.bounced_at is None


def test_a_bounce_without_a_known_message_still_suppresses(workspace, other_workspace, ada):
    delivery = sent_delivery(workspace, ada, message_id="<m3@smtp.example.com>")
    body = {"email": "ada@example.com", "type": "complaint",
            "message_id": "<m3@smtp.example.com>"}

    # Another workspace's key never reaches this workspace's delivery.
    response = app_client(other_workspace).post(BOUNCES, body, format="json")

    assert response.json()["delivery_id"] is None and response.json()["suppressed"]
    assert addresses(other_workspace) == {"ada@example.com": "complaint"}
    assert addresses(workspace) == {}
    delivery.refresh_from_db()
    assert delivery.bounced_at is None


# --- Settings > Email > Suppression list ------------------------------------------------------


def sign_in(client, workspace, role):
    client.force_login(make_member(workspace, role))


@pytest.mark.parametrize("role", [Membership.Role.EDITOR, Membership.Role.ADMIN])
def test_editors_and_admins_add_and_remove_addresses(client, workspace, role):
    sign_in(client, workspace, role)

    added = client.post(ADD, {"address": " Cy@Example.com "})

    assert added.status_code == 302 and added["Location"] == LIST
    suppression = EmailSuppression.objects.get(workspace=workspace)
    assert (suppression.address, suppression.reason) == ("cy@example.com", "manual")
    page = client.get(LIST).content.decode()
    assert "cy@example.com" in page and "Added by hand" in page
    assert f'action="{remove_url(suppression.pk)}"' in page

    removed = client.post(remove_url(suppression.pk))

    assert removed.status_code == 302
    assert not EmailSuppression.objects.exists()


def test_a_bad_address_is_refused_with_the_page(client, workspace):
    sign_in(client, workspace, Membership.Role.EDITOR)
    response = client.post(ADD, {"address": "not an address"})
    assert response.status_code == 400
    assert "Enter an email address." in response.content.decode()
    assert not EmailSuppression.objects.exists()


def test_viewers_only_see_the_list(client, workspace):
    suppression, _ = bounces.suppress_address(workspace, "ada@example.com", reason="bounce")
    sign_in(client, workspace, Membership.Role.VIEWER)

    page = client.get(LIST)

    assert page.status_code == 200
    html = page.content.decode()
    assert "ada@example.com" in html and "Hard bounce" in html
    assert 'id="emailsuppression-add"' not in html and "Remove" not in html
    assert client.post(ADD, {"address": "bob@example.com"}).status_code == 403
    assert client.post(remove_url(suppression.pk)).status_code == 403
    assert addresses(workspace) == {"ada@example.com": "bounce"}


def test_the_list_is_the_workspaces_own(client, workspace, other_workspace):
    theirs, _ = bounces.suppress_address(other_workspace, "secret@example.com", reason="bounce")
    sign_in(client, workspace, Membership.Role.ADMIN)
    assert "secret@example.com" not in client.get(LIST).content.decode()
    assert client.post(remove_url(theirs.pk)).status_code == 404
    assert EmailSuppression.objects.filter(pk=theirs.pk).exists()


def test_search_by_start_or_exactly_and_by_reason(client, workspace):
    for address, reason in (("ann@example.com", "bounce"), ("anna@example.com", "complaint"),
                            ("bob@example.com", "manual")):
        bounces.suppress_address(workspace, address, reason=reason)
    sign_in(client, workspace, Membership.Role.VIEWER)

    def shown(**query):
        html = client.get(LIST, query).content.decode()
        return {a for a in ("ann@example.com", "anna@example.com", "bob@example.com")
                if f"<code>{a}</code>" in html}

    assert shown() == {"ann@example.com", "anna@example.com", "bob@example.com"}
    assert shown(q="ANN") == {"ann@example.com", "anna@example.com"}
    assert shown(q="ann@example.com", match="exact") == {"ann@example.com"}
    assert shown(reason="complaint") == {"anna@example.com"}
    partial = client.get(LIST, {"q": "bob"}, HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<div id="emailsuppression-table">')
    assert "1 suppressed address" in partial


def test_the_list_pages_by_keyset(client, workspace, monkeypatch):
    from campaigns import settings_views

    monkeypatch.setattr(settings_views, "PAGE_SIZE", 2)
    for number in range(5):
        bounces.suppress_address(workspace, f"p{number}@example.com", reason="bounce")
    sign_in(client, workspace, Membership.Role.VIEWER)
    seen, query = [], {}
    for _ in range(3):
        response = client.get(LIST, query)
        page = list(response.context["suppressions"])
        seen += [s.address for s in page]
        if response.context["next_before"] is None:
            break
        query = {"before": response.context["next_before"]}
    assert seen == [f"p{number}@example.com" for number in (4, 3, 2, 1, 0)]
    assert response.context["count"] == 5


def test_every_change_needs_csrf(workspace):
    suppression, _ = bounces.suppress_address(workspace, "ada@example.com", reason="bounce")
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_member(workspace, Membership.Role.ADMIN))
    assert client.post(ADD, {"address": "bob@example.com"}).status_code == 403
    assert client.post(remove_url(suppression.pk)).status_code == 403
    assert addresses(workspace) == {"ada@example.com": "bounce"}


def test_the_settings_nav_links_the_page(client, workspace):
    sign_in(client, workspace, Membership.Role.VIEWER)
    assert f'href="{LIST}"' in client.get(reverse("settings:index")).content.decode()


# --- the admin ---------------------------------------------------------------------------


def test_support_staff_find_and_remove_suppressed_addresses_in_the_admin(client, workspace):
    from django.contrib.auth import get_user_model

    kept, _ = bounces.suppress_address(workspace, "ann@example.com", reason="bounce")
    gone, _ = bounces.suppress_address(workspace, "bob@example.com", reason="complaint")
    staff = get_user_model().objects.create_superuser("staff", "staff@example.com", "pw")
    client.force_login(staff)
    url = reverse("admin:campaigns_emailsuppression_changelist")

    found = client.get(url, {"q": "Bob@Example.com"}).content.decode()
    assert "bob@example.com" in found and "ann@example.com" not in found
    client.post(url, {"action": "unsuppress", "_selected_action": [gone.pk]})

    assert list(EmailSuppression.objects.values_list("pk", flat=True)) == [kept.pk]
