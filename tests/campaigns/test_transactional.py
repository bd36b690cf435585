"""Transactional email over the App API: ``POST /v1/send/email`` against a live server."""

from datetime import timedelta

import pytest
import requests
from django.core.cache import cache
from django.utils import timezone

from campaigns import transactional
from campaigns.models import Delivery, TransactionalMessage
from people import services as people
from people.models import Person
from tests.factories import make_person, make_workspace

INLINE = {"from": "team@example.com", "subject": "Your code",
          "body": "<p>{{trigger.code}}</p>"}


@pytest.fixture
def api(live_server, transactional_db, workspace):
    """Send a body to /v1/send/email with the workspace's App key; return the response."""
    cache.clear()  # throttle counts

    def send(body, *, key=workspace.app_api_key, **headers):
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return requests.post(f"{live_server.url}/v1/send/email", json=body, headers=headers,
                             timeout=10)

    yield send
    cache.clear()


def make_message(workspace, name="password-reset", **fields) -> TransactionalMessage:
    values = {"from_address": "support@example.com", "subject": "Reset, {{customer.name}}",
              "body_html": "<a href='{{trigger.link}}'>Reset</a>", "body_text": "Reset",
              **fields}
    return transactional.save_message(TransactionalMessage(workspace=workspace, name=name,
                                                           **values))


def error(response) -> str:
    assert set(response.json()) == {"meta"}, response.json()
    return response.json()["meta"]["error"]


# --- happy paths -------------------------------------------------------------------------


def test_a_transactional_message_is_queued_for_a_known_person(api, workspace):
    person = make_person(workspace, "u1", email="ada@example.com", name="Ada")
    message = make_message(workspace)
    before = int(timezone.now().timestamp())

    response = api({"transactional_message_id": message.pk, "identifiers": {"id": "u1"},
                    "message_data": {"link": "https://example.com/r/1"}})

    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"delivery_id", "queued_at"}
    assert isinstance(answer["delivery_id"], str) and answer["queued_at"] >= before
    delivery = Delivery.objects.get(pk=int(answer["delivery_id"]))
    assert (delivery.kind, delivery.state, delivery.journey, delivery.campaign) == (
        "email", "queued", None, None)
    assert delivery.transactional_message == message
    assert (delivery.cio_id, delivery.recipient) == (person.cio_id, "ada@example.com")
    assert delivery.next_attempt_at <= timezone.now()
    assert delivery.payload == {
        "message": {"from": "support@example.com", "to": "{{customer.email}}",
                    "reply_to": None, "subject": "Reset, {{customer.name}}",
                    "body_html": "<a href='{{trigger.link}}'>Reset</a>", "body_text": "Reset",
                    "bcc": None, "headers": {}, "tracking": True},
        "trigger": {"link": "https://example.com/r/1"}}


def test_a_message_named_by_its_trigger_name_with_the_request_overriding_it(api, workspace):
    make_person(workspace, "u1", email="ada@example.com")
    make_message(workspace, name="welcome", tracking=False)

    response = api({"transactional_message_id": "welcome", "identifiers": {"id": "u1"},
                    "to": "ops@example.com", "subject": "Hello {{customer.id}}",
                    "body_plain": "Hi", "reply_to": "help@example.com", "bcc": "audit@example.com",
                    "headers": {"X-Campaign": "welcome"}})

    assert response.status_code == 200, response.text
    delivery = Delivery.objects.get()
    message = delivery.payload["message"]
    assert (message["to"], message["subject"], message["body_text"], message["reply_to"]) == (
        "ops@example.com", "Hello {{customer.id}}", "Hi", "help@example.com")
    assert (message["bcc"], message["headers"], message["tracking"]) == (
        "audit@example.com", {"X-Campaign": "welcome"}, False)
    assert message["from"] == "support@example.com"  # from the message
    assert delivery.recipient == "ops@example.com"


def test_an_inline_message_to_an_unknown_person_creates_them(api, workspace):
    assert not Person.objects.exists()

    response = api({**INLINE, "identifiers": {"email": "new@example.com"},
                    "message_data": {"code": "1234"}, "tracked": False})

    assert response.status_code == 200, response.text
    person = Person.objects.get(workspace=workspace)
    assert person.email == "new@example.com"
    delivery = Delivery.objects.get()
    assert delivery.cio_id == person.cio_id and delivery.transactional_message is None
    assert delivery.payload["message"]["body_html"] == "<p>{{trigger.code}}</p>"
    assert delivery.payload["message"]["tracking"] is False
    assert delivery.payload["trigger"] == {"code": "1234"}


def test_a_person_named_by_cio_id(api, workspace):
    person = make_person(workspace, "u1", email="ada@example.com")

    for cio_id in (person.cio_id, f"cio_{person.cio_id}"):
        response = api({**INLINE, "identifiers": {"cio_id": cio_id}})
        assert response.status_code == 200, response.text
    assert set(Delivery.objects.values_list("cio_id", flat=True)) == {person.cio_id}


def test_send_at_makes_the_delivery_wait(api, workspace):
    make_person(workspace, "u1", email="ada@example.com")
    later = int((timezone.now() + timedelta(days=2)).timestamp())

    response = api({**INLINE, "identifiers": {"id": "u1"}, "send_at": later})

    assert response.status_code == 200, response.text
    delivery = Delivery.objects.get()
    assert delivery.state == "queued"
    assert int(delivery.next_attempt_at.timestamp()) == later


def test_queue_draft_and_retention(api, workspace):
    make_person(workspace, "u1", email="ada@example.com")

    response = api({**INLINE, "identifiers": {"id": "u1"}, "queue_draft": True,
                    "disable_message_retention": True})

    assert response.status_code == 200, response.text
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.next_attempt_at) == ("drafted", None)
    assert delivery.payload["disable_message_retention"] is True


def test_an_unsubscribed_person_gets_it_unless_the_request_says_not_to(api, workspace):
    make_person(workspace, "u1", email="ada@example.com", unsubscribed=True)

    sent = api({**INLINE, "identifiers": {"id": "u1"}})
    refused = api({**INLINE, "identifiers": {"id": "u1"}, "send_to_unsubscribed": False})

    assert (sent.status_code, refused.status_code) == (200, 200)
    states = dict(Delivery.objects.values_list("pk", "state"))
    assert states[int(sent.json()["delivery_id"])] == "queued"
    skipped = Delivery.objects.get(pk=int(refused.json()["delivery_id"]))
    assert (skipped.state, skipped.reason) == ("skipped", "the person is unsubscribed")


def test_a_suppressed_person_is_accepted_and_nothing_is_sent_nor_stored(api, workspace):
    make_person(workspace, "u1", email="ada@example.com")
    people.suppress_identifier(workspace, people.Ref("id", "u1"))

    for identifiers in ({"id": "u1"}, {"email": "ada@example.com"}):
        response = api({**INLINE, "identifiers": identifiers})
        assert response.status_code == 200, response.text
        delivery = Delivery.objects.get(pk=int(response.json()["delivery_id"]))
        assert (delivery.state, delivery.reason) == ("skipped", "the person is suppressed")
        assert (delivery.cio_id, delivery.recipient, delivery.payload) == (None, "", {})
    assert not Person.objects.exists()


def test_an_idempotency_key_returns_the_first_delivery(api, workspace):
    make_person(workspace, "u1", email="ada@example.com")
    body = {**INLINE, "identifiers": {"id": "u1"}}

    first = api(body, **{"Idempotency-Key": "order-7"})
    again = api(body, **{"Idempotency-Key": "order-7"})
    other = api(body, **{"Idempotency-Key": "order-8"})

    assert first.status_code == again.status_code == other.status_code == 200
    assert first.json() == again.json()
    assert other.json()["delivery_id"] != first.json()["delivery_id"]
    assert Delivery.objects.count() == 2


def test_the_same_idempotency_key_in_another_workspace_is_another_delivery(api, workspace):
    other = make_workspace("Other")
    make_person(workspace, "u1", email="ada@example.com")
    make_person(other, "u1", email="ada@example.com")
    body = {**INLINE, "identifiers": {"id": "u1"}}

    mine = api(body, **{"Idempotency-Key": "k"})
    theirs = api(body, key=other.app_api_key, **{"Idempotency-Key": "k"})

    assert mine.json()["delivery_id"] != theirs.json()["delivery_id"]
    assert set(Delivery.objects.values_list("workspace", flat=True)) == {workspace.pk, other.pk}


# --- errors ------------------------------------------------------------------------------


def test_without_a_valid_app_key_nothing_is_sent(api, workspace):
    make_person(workspace, "u1", email="ada@example.com")

    assert api({**INLINE, "identifiers": {"id": "u1"}}, key=None).status_code == 401
    wrong = api({**INLINE, "identifiers": {"id": "u1"}}, key="nope")
    assert wrong.status_code == 401 and error(wrong)
    assert not Delivery.objects.exists()


def test_another_workspaces_message_is_not_found(api, workspace):
    make_person(workspace, "u1", email="ada@example.com")
    theirs = make_message(make_workspace("Other"), name="theirs")

    for reference in (theirs.pk, str(theirs.pk), "theirs", "no-such-message"):
        response = api({"transactional_message_id": reference, "identifiers": {"id": "u1"}})
        assert response.status_code == 404, response.text
        assert "transactional message" in error(response)
    assert not Delivery.objects.exists()


@pytest.mark.parametrize(("body", "field"), [
    ({**INLINE}, "identifiers"),
    ({**INLINE, "identifiers": {"id": "u1", "email": "a@example.com"}}, "identifiers"),
    ({**INLINE, "identifiers": {"phone": "+15550100"}}, "identifiers.phone"),
    ({**INLINE, "identifiers": {"email": "not an email"}}, "identifiers.email"),
    ({"from": "a@example.com", "body": "x", "identifiers": {"id": "u1"}}, "subject"),
    ({"subject": "s", "body": "x", "identifiers": {"id": "u1"}}, "from"),
    ({**INLINE, "body": None, "identifiers": {"id": "u1"}}, "body"),
    ({**INLINE, "identifiers": {"id": "u1"}, "subject": "{% if %}"}, "subject"),
    ({**INLINE, "identifiers": {"id": "u1"}, "message_data": [1]}, "message_data"),
    ({**INLINE, "identifiers": {"id": "u1"}, "tracked": "yes"}, "tracked"),
    ({**INLINE, "identifiers": {"id": "u1"}, "send_at": "soon"}, "send_at"),
    ({**INLINE, "identifiers": {"id": "u1"},
      "send_at": int((timezone.now() + timedelta(days=91)).timestamp())}, "send_at"),
    ({**INLINE, "identifiers": {"id": "u1"},
      "to": ",".join(f"u{n}@example.com" for n in range(16))}, "to"),
    ({**INLINE, "identifiers": {"id": "u1"}, "headers": {"X-A": 1}}, "headers"),
    ({**INLINE, "identifiers": {"id": "u1"}, "body_plain": 52461}, "body_plain"),
    ({**INLINE, "identifiers": {"id": "u1"}, "to": ["a@example.com"]}, "to"),
    ({**INLINE, "identifiers": {"id": "u1"}, "attachments": {"a.txt": "eA=="}}, "attachments"),
    ({**INLINE, "identifiers": {"id": "u1"}, "colour": "red"}, "colour"),
    ({**INLINE, "identifiers": {"cio_id": "cio_nobody"}}, "identifiers.cio_id"),
])
def test_a_bad_request_answers_400_naming_the_field(api, workspace, body, field):
    make_person(workspace, "u1", email="ada@example.com")

    response = api(body)

    assert response.status_code == 400, response.text
    assert field in error(response)
    assert not Delivery.objects.exists()


def test_email_is_no_identifier_in_an_id_only_workspace(api, live_server):
    classic = make_workspace("Classic", mode="id")

    response = api({**INLINE, "identifiers": {"email": "ada@example.com"}},
                   key=classic.app_api_key)

    assert response.status_code == 400
    assert "identifiers.email" in error(response) or "email" in error(response)
    assert not Person.objects.exists()


def test_a_body_that_is_no_object_answers_400(api):
    response = api([1, 2])
    assert response.status_code == 400 and error(response)


# --- the official client -----------------------------------------------------------------


def test_the_official_client_sends_a_transactional_email(live_server, transactional_db,
                                                          workspace):
    from customerio.api import APIClient, SendEmailRequest

    cache.clear()
    message = make_message(workspace)
    client = APIClient(workspace.app_api_key, url=live_server.url, retries=0)
    try:
        answer = client.send_email(SendEmailRequest(
            transactional_message_id=message.pk, identifiers={"id": "u9"},
            to="ada@example.com", message_data={"link": "https://example.com/r"}))
        inline = client.send_email(SendEmailRequest(
            identifiers={"email": "grace@example.com"}, _from="team@example.com",
            subject="Hi", body="<p>Hi</p>", body_plain="Hi"))
    finally:
        client.close()

    delivery = Delivery.objects.get(pk=int(answer["delivery_id"]))
    assert delivery.payload["trigger"] == {"link": "https://example.com/r"}
    assert delivery.recipient == "ada@example.com"
    assert Person.objects.get(customer_id="u9").workspace == workspace
    other = Delivery.objects.get(pk=int(inline["delivery_id"]))
    assert other.payload["message"]["from"] == "team@example.com"
    assert Person.objects.filter(email="grace@example.com").exists()


# --- people who go ---------------------------------------------------------------------------


def test_deleting_the_person_skips_their_unsent_email_and_suppressing_forgets_them(workspace):
    ada = make_person(workspace, "u1", email="ada@example.com")
    make_person(workspace, "u2", email="grace@example.com")
    later = int((timezone.now() + timedelta(days=1)).timestamp())
    waiting, _ = transactional.send_email(workspace, {**INLINE, "identifiers": {"id": "u1"},
                                                      "send_at": later})
    grace, _ = transactional.send_email(workspace, {**INLINE, "identifiers": {"id": "u2"},
                                                    "send_at": later})

    people.delete_person(workspace, people.Ref("id", "u1"))

    waiting.refresh_from_db()
    assert (waiting.state, waiting.reason, waiting.next_attempt_at) == (
        "skipped", "the person was deleted", None)
    assert (waiting.cio_id, waiting.recipient) == (ada.cio_id, "ada@example.com")  # metrics
    grace.refresh_from_db()
    assert grace.state == "queued"

    people.suppress_identifier(workspace, people.Ref("id", "u2"))

    grace.refresh_from_db()
    assert (grace.state, grace.cio_id, grace.recipient, grace.payload) == ("skipped", None, "",
                                                                           {})


# --- the admin ---------------------------------------------------------------------------------


@pytest.fixture
def su_client(client, db):
    from tests.factories import UserFactory

    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_support_staff_write_transactional_messages_in_the_admin(su_client, workspace):
    from django.urls import reverse

    form = {"workspace": workspace.pk, "name": "receipt", "from_address": "shop@example.com",
            "to": "{{customer.email}}", "reply_to": "", "subject": "Receipt {{trigger.order}}",
            "body_html": "<p>Thanks</p>", "body_text": "", "tracking": "on",
            "send_to_unsubscribed": "on"}
    add = reverse("admin:campaigns_transactionalmessage_add")
    assert su_client.get(add).status_code == 200

    broken = su_client.post(add, {**form, "subject": "Receipt {% if %}"})
    assert broken.status_code == 200 and "subject" in broken.context["adminform"].form.errors
    assert not TransactionalMessage.objects.exists()

    assert su_client.post(add, form).status_code == 302
    message = TransactionalMessage.objects.get()
    assert (message.name, message.queue_draft, message.tracking) == ("receipt", False, True)
    assert message.created_at and message.updated_at

    duplicate = su_client.post(add, form)
    assert duplicate.status_code == 200 and TransactionalMessage.objects.count() == 1
    change = reverse("admin:campaigns_transactionalmessage_change", args=[message.pk])
    assert su_client.post(change, {**form, "subject": "Your receipt"}).status_code == 302
    message.refresh_from_db()
    assert message.subject == "Your receipt" and message.updated_at >= message.created_at


def test_sends_are_not_held_to_the_app_apis_rate(api, workspace, settings):
    settings.ENGAGE_API_RATES = {**settings.ENGAGE_API_RATES, "app": "10/min"}
    make_person(workspace, "u1", email="ada@example.com")

    answers = [api({**INLINE, "identifiers": {"id": "u1"}}).status_code for _ in range(12)]

    assert answers == [200] * 12
    assert Delivery.objects.count() == 12


def test_a_transactional_send_reaches_the_server_with_its_data_bcc_and_headers(
        api, workspace, smtp_sink):
    from campaigns import email

    make_person(workspace, "u1", email="ada@example.com", name="Ada")

    response = api({**INLINE, "identifiers": {"id": "u1"}, "to": "ada@example.com",
                    "message_data": {"code": "<b>4711</b>"}, "bcc": "audit@example.com",
                    "headers": {"X-Order": "77"}})
    assert response.status_code == 200, response.text
    assert email.send_due_emails() == 1

    (message,) = smtp_sink.messages
    assert (message["Subject"], message["To"], message["X-Order"]) == (
        "Your code", "ada@example.com", "77")
    assert "<p>&lt;b&gt;4711&lt;/b&gt;</p>" in message.get_body(("html",)).get_content()
    assert smtp_sink.recipients[-1] == ["ada@example.com", "audit@example.com"]
    assert Delivery.objects.get(pk=int(response.json()["delivery_id"])).state == "sent"
