"""Campaign emails: rendered with Liquid, sent once over real SMTP to a local sink."""

import re
import smtplib
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.mail import BadHeaderError
from django.db import connection, connections
from django.utils import timezone

from campaigns import email, engine, services, tasks, tracking
from campaigns.metrics import campaign_metrics
from campaigns.models import Campaign, Delivery, Journey
from people import services as people
from segments.services import create_segment
from tests.factories import make_person

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
MAIL = {"id": "mail", "type": "email", "from": "Acme <news@acme.test>",
        "subject": "Hi {{ customer.first_name | default: 'there' }}",
        "body_html": "<p>Hello</p>"}


@pytest.fixture
def travel():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def running(workspace, steps, **extra) -> Campaign:
    segment = create_segment(workspace, name="Everyone")
    campaign = services.create_campaign(workspace, {
        "name": "Welcome & more", "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "workflow": {"steps": steps}, "exit": "never", **extra})
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    campaign.refresh_from_db()
    return campaign


def queue(campaign, *people_, **context) -> list[Delivery]:
    """Enter people into the campaign and advance them: their emails are queued."""
    engine.enter(campaign, [engine.Entry(f"k:{person.pk}", person.pk, person.cio_id, context)
                            for person in people_])
    while engine.advance_due():
        pass
    return list(Delivery.objects.filter(campaign=campaign).order_by("pk"))


def send_all() -> int:
    sent = 0
    while done := email.send_due_emails():
        sent += done
    return sent


def refreshed(delivery) -> Delivery:
    delivery.refresh_from_db()
    return delivery


@pytest.mark.django_db
def test_an_email_renders_with_liquid_and_reaches_the_server(workspace, smtp_sink, travel):
    campaign = running(workspace, [{
        **MAIL, "reply_to": "help@acme.test",
        "subject": "Tom & {{customer.first_name}}: {{ customer.plan | default: 'free' }}",
        "body_html": (
            "<html><head><style>p.lead { color: red }</style></head><body>"
            "<p class=\"lead\">Hi {{customer.first_name}}, you bought {{event.item}}</p>"
            "<p>Sent by {{campaign.name}} ({{ customer.plan | default: 'no plan' }})</p>"
            "<a href=\"https://acme.test/shop\">Shop</a></body></html>")}])
    ada = make_person(workspace, "ada", email="ada@example.com", first_name="<Ada>")
    (delivery,) = queue(campaign, ada, event={"data": {"item": "Tea & cake"}})

    assert email.send_due_emails() == 1

    (message,) = smtp_sink.messages
    assert message["To"] == "ada@example.com"
    assert message["From"] == "Acme <news@acme.test>"
    assert message["Reply-To"] == "help@acme.test"
    assert message["Subject"] == "Tom & <Ada>: free"  # the subject is plain text
    html = message.get_body(("html",)).get_content()
    # Values are escaped in HTML; the template's own markup is not; CSS is inlined.
    assert 'style="color: red;"' in html and "<style" not in html
    assert "Hi &lt;Ada&gt;, you bought Tea &amp; cake" in html
    assert "Sent by Welcome &amp; more (no plan)" in html
    text = message.get_body(("plain",)).get_content()
    assert text == ("Hi <Ada>, you bought Tea & cake\n\nSent by Welcome & more (no plan)\n"
                    "Shop (https://acme.test/shop)\n")
    assert re.fullmatch(rf"<delivery-{delivery.pk}\.[0-9a-f]{{16}}@localhost>",
                        message["Message-ID"])
    assert message["Message-ID"] == email.message_id(delivery.pk)  # stable
    delivery = refreshed(delivery)
    assert (delivery.state, delivery.attempts, delivery.sent_at) == ("sent", 1, START)
    assert delivery.payload["rendered"] == {
        "from": "Acme <news@acme.test>", "to": "ada@example.com", "reply_to": "help@acme.test",
        "subject": "Tom & <Ada>: free", "message_id": message["Message-ID"]}
    # The link goes through a click redirect in HTML; the open pixel and unsubscribe
    # headers come from the tracking seam.
    assert delivery.payload["links"] == ["https://acme.test/shop"]
    assert "/t/c/" in html and 'href="https://acme.test/shop"' not in html
    assert "/t/u/" in message["List-Unsubscribe"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert send_all() == 0  # sent once


@pytest.mark.django_db
def test_a_text_part_given_is_used_and_the_default_sender_fills_in(workspace, smtp_sink,
                                                                   settings):
    settings.DEFAULT_FROM_EMAIL = "engage@acme.test"
    campaign = running(workspace, [{**MAIL, "from": None,
                                    "body_text": "Plain {{customer.first_name}} & co"}])
    ada = make_person(workspace, "ada", email="ada@example.com", first_name="Ada")
    queue(campaign, ada)

    send_all()

    (message,) = smtp_sink.messages
    assert message["From"] == "engage@acme.test"
    assert message.get_body(("plain",)).get_content() == "Plain Ada & co"


@pytest.mark.django_db
def test_a_template_error_fails_the_delivery_with_the_line_and_sends_nothing(
        workspace, smtp_sink):
    campaign = running(workspace, [{**MAIL, "body_html": "<p>Hi</p>\n<p>{{customer.nickname}}"}])
    ada = make_person(workspace, "ada", email="ada@example.com")
    (delivery,) = queue(campaign, ada)

    send_all()

    delivery = refreshed(delivery)
    assert delivery.state == "failed"
    assert delivery.reason == "body_html: line 2: customer.nickname is undefined"
    assert smtp_sink.messages == []
    assert campaign_metrics(campaign)["steps"]["mail"]["failed"] == 1


@pytest.mark.django_db
def test_an_invalid_sender_fails_the_delivery(workspace, smtp_sink):
    campaign = running(workspace, [{**MAIL, "from": "{{customer.sender}}"}])
    ada = make_person(workspace, "ada", email="ada@example.com", sender="me\nBcc: x@y.z")
    (delivery,) = queue(campaign, ada)

    send_all()

    delivery = refreshed(delivery)
    assert (delivery.state, delivery.reason) == (
        "failed", "from: the address is invalid: me\nBcc: x@y.z")
    assert smtp_sink.messages == []


@pytest.mark.django_db
def test_the_triggering_event_overrides_the_addresses(workspace, smtp_sink):
    campaign = running(workspace, [{**MAIL, "to": "{{customer.email}}"}])
    ada = make_person(workspace, "ada", email="ada@example.com")
    queue(campaign, ada, event={"data": {"recipient": "Boss <boss@example.com>",
                                         "from_address": "ceo@acme.test",
                                         "reply_to": "replies@acme.test"}})

    send_all()

    (message,) = smtp_sink.messages
    assert (message["To"], message["From"], message["Reply-To"]) == (
        "Boss <boss@example.com>", "ceo@acme.test", "replies@acme.test")


@pytest.mark.django_db
def test_unsubscribe_link_headers_and_tracking_come_from_the_tracking_seam(
        workspace, smtp_sink, monkeypatch):
    seen = []

    def instrument(html, delivery_id, *, track):
        seen.append((delivery_id, track))
        return html.replace("https://acme.test/a", "https://t.test/c/0"), ["https://acme.test/a"]

    monkeypatch.setattr(tracking, "instrument_html", instrument)
    monkeypatch.setattr(tracking, "unsubscribe_url", lambda pk: f"https://t.test/u/{pk}?x=1&y=2")
    monkeypatch.setattr(tracking, "unsubscribe_headers", lambda pk: {
        "List-Unsubscribe": f"<https://t.test/u/{pk}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
    campaign = running(workspace, [
        {**MAIL, "tracking": False, "body_html": (
            "<a href=\"https://acme.test/a\">A</a> <a href=\"{% unsubscribe_url %}\">Leave</a>"),
         "body_text": "Leave: {% unsubscribe_url %}"}])
    ada = make_person(workspace, "ada", email="ada@example.com")
    (delivery,) = queue(campaign, ada)

    send_all()

    (message,) = smtp_sink.messages
    html = message.get_body(("html",)).get_content()
    assert f'href="https://t.test/u/{delivery.pk}?x=1&amp;y=2"' in html
    assert 'href="https://t.test/c/0"' in html
    assert message.get_body(("plain",)).get_content() == \
        f"Leave: https://t.test/u/{delivery.pk}?x=1&y=2"
    assert message["List-Unsubscribe"] == f"<https://t.test/u/{delivery.pk}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert seen == [(delivery.pk, False)]
    assert refreshed(delivery).payload["links"] == ["https://acme.test/a"]


@pytest.mark.django_db
def test_one_connection_carries_a_whole_batch(workspace, smtp_sink):
    campaign = running(workspace, [MAIL])
    crowd = [make_person(workspace, f"p{n}", email=f"p{n}@example.com", first_name=f"P{n}")
             for n in range(7)]
    queue(campaign, *crowd)

    assert email.send_due_emails(limit=5) == 5
    assert email.send_due_emails(limit=5) == 2

    assert smtp_sink.connections == 2
    assert sorted(message["Subject"] for message in smtp_sink.messages) == \
        sorted(f"Hi P{n}" for n in range(7))
    assert len({message["Message-ID"] for message in smtp_sink.messages}) == 7


@pytest.mark.django_db
def test_temporary_replies_are_retried_and_permanent_ones_fail(workspace, smtp_sink, travel):
    campaign = running(workspace, [MAIL])
    later = make_person(workspace, "later", email="later@example.com", first_name="L")
    never = make_person(workspace, "never", email="never@example.com", first_name="N")
    fine = make_person(workspace, "fine", email="fine@example.com", first_name="F")
    smtp_sink.replies["later@example.com"] = "451 4.3.0 Mailbox busy, try again"
    smtp_sink.replies["never@example.com"] = "550 5.1.1 No such user"
    queue(campaign, later, never, fine)

    send_all()

    states = {d.recipient: (d.state, d.attempts, d.reason) for d in Delivery.objects.all()}
    assert states["never@example.com"] == ("failed", 1, "550 5.1.1 No such user")
    assert states["later@example.com"] == ("queued", 1,
                                           "will retry: 451 4.3.0 Mailbox busy, try again")
    assert states["fine@example.com"][:2] == ("sent", 1)
    assert smtp_sink.connections == 1  # refusals do not cost the connection
    retry = Delivery.objects.get(recipient="later@example.com")
    assert retry.next_attempt_at == START + email.RETRY_DELAYS[0]

    del smtp_sink.replies["later@example.com"]
    assert send_all() == 0  # not due yet
    travel.move_to(retry.next_attempt_at)
    assert send_all() == 1

    retry = refreshed(retry)
    assert (retry.state, retry.attempts, retry.reason) == ("sent", 2, "")
    assert [m["To"] for m in smtp_sink.messages] == ["fine@example.com", "later@example.com"]


@pytest.mark.django_db
def test_a_server_that_cannot_be_reached_is_tried_again_later(workspace, settings, travel):
    from tests.smtp_sink import SmtpSink

    closed = SmtpSink().start()
    port = closed.port
    closed.stop()  # nothing listens there now
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5
    campaign = running(workspace, [MAIL])
    (delivery,) = queue(campaign, make_person(workspace, "ada", email="ada@example.com",
                                              first_name="Ada"))

    send_all()

    delivery = refreshed(delivery)
    assert (delivery.state, delivery.attempts) == ("queued", 1)
    assert delivery.reason.startswith("will retry: ConnectionRefusedError")


@pytest.mark.django_db
def test_a_delivery_left_sending_past_its_lease_becomes_unknown_and_is_never_resent(
        workspace, smtp_sink, travel):
    campaign = running(workspace, [MAIL])
    (delivery,) = queue(campaign, make_person(workspace, "ada", email="ada@example.com",
                                              first_name="Ada"))
    assert email.claim_due(now=START, limit=10) == [delivery.pk]  # its worker then dies

    travel.move_to(START + email.SENDING_LEASE - timedelta(seconds=1))
    send_all()
    assert refreshed(delivery).state == "sending"  # the claim still holds
    travel.move_to(START + email.SENDING_LEASE + timedelta(seconds=1))
    send_all()

    delivery = refreshed(delivery)
    assert (delivery.state, delivery.attempts) == ("unknown", 1)
    assert "not sent again" in delivery.reason
    assert smtp_sink.messages == []
    assert campaign_metrics(campaign)["steps"]["mail"]["unknown"] == 1


@pytest.mark.django_db
def test_of_a_batch_cut_off_only_the_emails_that_may_have_gone_become_unknown(
        workspace, smtp_sink, travel):
    campaign = running(workspace, [MAIL])
    crowd = [make_person(workspace, f"p{n:02}", email=f"p{n:02}@example.com")
             for n in range(email.UNKNOWN_AT_MOST + 2)]
    done, *maybe_gone, untouched = queue(campaign, *crowd)
    email.claim_due(now=START, limit=100)
    # The worker recorded the first sent, sent some more without recording them yet (sent
    # emails are recorded a few at a time), and died.
    Delivery.objects.filter(pk=done.pk).update(state="sent", sent_at=START)

    travel.move_to(START + email.SENDING_LEASE + timedelta(seconds=1))
    send_all()

    assert refreshed(done).state == "sent"
    assert {refreshed(d).state for d in maybe_gone} == {"unknown"}
    assert len(maybe_gone) == email.UNKNOWN_AT_MOST
    untouched = refreshed(untouched)
    assert (untouched.state, untouched.attempts) == ("sent", 2)
    assert [m["To"] for m in smtp_sink.messages] == [untouched.recipient]


@pytest.mark.django_db
def test_what_must_not_go_out_is_skipped_at_send_time(workspace, smtp_sink, monkeypatch):
    monkeypatch.setattr(tracking, "suppressed_addresses",
                        lambda workspace_id, addresses: {"bounced@example.com"} & set(addresses))
    campaign = running(workspace, [
        {**MAIL, "to": "{{ customer.work_email | default: customer.email }}"}])
    people_ = {
        "bounced": make_person(workspace, "bounced", email="bounced@example.com"),
        "nobody": make_person(workspace, "nobody"),
        "invalid": make_person(workspace, "invalid", work_email="not an address"),
        "gone": make_person(workspace, "gone", email="gone@example.com"),
        "fine": make_person(workspace, "fine", email="fine@example.com"),
    }
    queue(campaign, *people_.values())
    ids = email.claim_due(now=timezone.now(), limit=10)
    # Deleted after the claim: the deletion leaves a delivery being sent alone.
    people.delete_person(workspace, people.Ref("id", "gone"))

    email.send_claimed(ids)

    outcome = {d.cio_id: (d.state, d.reason) for d in Delivery.objects.all()}
    assert outcome[people_["bounced"].cio_id] == (
        "skipped", "the address is on the workspace's suppression list")
    assert outcome[people_["nobody"].cio_id] == ("skipped", "the message has no recipient")
    assert outcome[people_["invalid"].cio_id] == (
        "skipped", "the recipient address is invalid: not an address")
    assert outcome[people_["gone"].cio_id] == ("skipped", "the person was deleted")
    assert outcome[people_["fine"].cio_id] == ("sent", "")
    assert [m["To"] for m in smtp_sink.messages] == ["fine@example.com"]


@pytest.mark.django_db
def test_a_stop_before_sending_skips_the_queued_email(workspace, smtp_sink):
    campaign = running(workspace, [MAIL, {"id": "wait", "type": "delay",
                                          "duration": {"days": 1}}])
    (delivery,) = queue(campaign, make_person(workspace, "ada", email="ada@example.com"))

    services.stop_campaign(campaign, journeys="exit")
    send_all()

    delivery = refreshed(delivery)
    assert (delivery.state, delivery.reason) == (
        "skipped", "the campaign was stopped before the email was sent")
    assert smtp_sink.messages == []


@pytest.mark.django_db
def test_a_delivery_with_its_own_message_uses_the_payloads_trigger(workspace, smtp_sink):
    ada = make_person(workspace, "ada", email="ada@example.com")
    delivery = Delivery.objects.create(
        workspace=workspace, journey_seq=1, step_id="transactional", kind="email",
        cio_id=ada.cio_id, recipient="ada@example.com", next_attempt_at=timezone.now(),
        created_at=timezone.now(), payload={
            "message": {"to": "{{customer.email}}", "subject": "Order {{trigger.order}}",
                        "body_html": "<p>{{trigger.item}}</p>", "tracking": True},
            "trigger": {"order": 42, "item": "<b>Tea</b>"}})

    send_all()

    (message,) = smtp_sink.messages
    assert message["Subject"] == "Order 42"
    assert "<p>&lt;b&gt;Tea&lt;/b&gt;</p>" in message.get_body(("html",)).get_content()
    assert refreshed(delivery).state == "sent"


@pytest.mark.django_db
def test_the_sweeper_task_sends_what_is_due(workspace, smtp_sink):
    campaign = running(workspace, [MAIL])
    queue(campaign, make_person(workspace, "ada", email="ada@example.com", first_name="A"))

    assert tasks.send_deliveries(seconds=0) == 1

    assert [m["Subject"] for m in smtp_sink.messages] == ["Hi A"]


def test_html_becomes_readable_text():
    html = ("<html><head><title>T</title><style>p{}</style></head><body><h1>Big &amp; bold"
            "</h1><p>One <a href=\"https://x.test/\">link</a></p><ul><li>a</li><li>b</li>"
            "</ul><p><a href=\"https://y.test/\">https://y.test/</a></p></body></html>")

    assert email.html_to_text(html) == (
        "Big & bold\n\nOne link (https://x.test/)\n\n- a\n\n- b\n\nhttps://y.test/\n")


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="senders racing for deliveries need row locks (PostgreSQL)")
@pytest.mark.django_db(transaction=True)
def test_two_senders_racing_never_send_one_delivery_twice(workspace, smtp_sink):
    campaign = running(workspace, [MAIL])
    crowd = [make_person(workspace, f"p{n}", email=f"p{n}@example.com", first_name=f"{n}")
             for n in range(150)]
    queue(campaign, *crowd)
    errors = []

    def sender():
        try:
            while email.send_due_emails(limit=10):
                pass
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sender) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors
    ids = [message["Message-ID"] for message in smtp_sink.messages]
    assert len(ids) == len(set(ids)) == 150
    assert Delivery.objects.filter(state="sent").count() == 150
    assert smtp_sink.connections >= 15  # one per batch of ten, whoever sent it
    assert not Journey.objects.filter(state="active").exists()


@pytest.mark.django_db
def test_the_text_part_is_derived_from_the_html_template_with_its_links(
        workspace, smtp_sink, monkeypatch):
    monkeypatch.setattr(tracking, "unsubscribe_url", lambda pk: f"https://t.test/u/{pk}")
    campaign = running(workspace, [{**MAIL, "body_html": (
        "<p>Hi {{customer.first_name}}</p>{% for n in (1..2) %}<p>Item {{n}}</p>{% endfor %}"
        "<p><a href=\"https://acme.test/{{customer.id}}\">Yours</a> "
        "<a href=\"{% unsubscribe_url %}\">Unsubscribe</a></p>")}])
    ada = make_person(workspace, "ada", email="ada@example.com", first_name="A & B")
    (delivery,) = queue(campaign, ada)

    send_all()

    (message,) = smtp_sink.messages
    assert message.get_body(("plain",)).get_content() == (
        "Hi A & B\n\nItem 1\n\nItem 2\n\nYours (https://acme.test/ada) Unsubscribe "
        f"(https://t.test/u/{delivery.pk})\n")


def test_without_a_text_template_the_text_part_comes_from_the_rendered_html():
    # A tag cut in two by the markup: the derived text is no template.
    source = '<p class="{% if vip %}gold">Hi</p><p>{% endif %}there</p>'

    assert email.text_template_of(source) is None
    assert email.html_to_text('<p class="gold">Hi</p><p>there</p>') == "Hi\n\nthere\n"


@pytest.mark.parametrize(("error", "temporary"), [
    (smtplib.SMTPServerDisconnected("gone"), True),
    (ConnectionRefusedError(111, "refused"), True),
    (smtplib.SMTPResponseException(421, b"closing"), True),
    (smtplib.SMTPSenderRefused(550, b"no", "a@b.c"), False),
    (smtplib.SMTPDataError(452, b"full"), True),
    (smtplib.SMTPDataError(554, b"spam"), False),
    (smtplib.SMTPRecipientsRefused({"a@b.c": (550, b"unknown")}), False),
    (smtplib.SMTPRecipientsRefused({"a@b.c": (450, b"greylisted")}), True),
    (BadHeaderError("Header values can't contain newlines"), False),
])
def test_smtp_errors_are_temporary_or_final_by_their_reply(error, temporary):
    assert email.classify(error)[0] is temporary


@pytest.mark.django_db
def test_an_esp_backend_of_django_anymail_sends_through_the_same_path(workspace, settings):
    from django.core import mail

    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    campaign = running(workspace, [MAIL])
    (delivery,) = queue(campaign, make_person(workspace, "ada", email="ada@example.com",
                                              first_name="Ada"))

    send_all()

    (message,) = mail.outbox
    assert (message.to, message.subject) == (["ada@example.com"], "Hi Ada")
    assert message.extra_headers["Message-ID"] == email.message_id(delivery.pk)
    delivery = refreshed(delivery)
    assert delivery.state == "sent"
    assert delivery.payload["rendered"]["esp_message_id"] == "0"  # the ESP's own id


@pytest.mark.django_db
def test_a_batch_slower_than_half_its_lease_gives_the_rest_back(workspace, smtp_sink,
                                                                monkeypatch):
    monkeypatch.setattr(email, "LEASE_MARGIN", timedelta(0))  # every send comes too late
    campaign = running(workspace, [MAIL])
    queue(campaign, *[make_person(workspace, f"p{n}", email=f"p{n}@example.com")
                      for n in range(3)])

    assert email.send_due_emails() == 3

    assert list(Delivery.objects.values_list("state", "attempts", "reason")) == [
        ("queued", 1, "queued again: its batch took too long to send")] * 3
    assert smtp_sink.messages == []


@pytest.mark.django_db
def test_non_ascii_everywhere_reaches_the_server_intact(workspace, smtp_sink):
    smtp_sink.keep_raw = True
    long_line = "Grüße " * 300  # one line of 1,800 characters: longer than SMTP allows
    ada = make_person(workspace, "ada", email="ada@example.com", first_name="Zoë")
    delivery = Delivery.objects.create(
        workspace=workspace, journey_seq=1, step_id="transactional", kind="email",
        cio_id=ada.cio_id, recipient="ada@example.com", next_attempt_at=timezone.now(),
        created_at=timezone.now(), payload={
            "message": {
                "to": "{{customer.first_name}} Müller <zoe@bücher.example>",
                "from": "Café Größe <news@acme.test>", "reply_to": "Jürgen <help@acme.test>",
                "bcc": "Prüfung <audit@acme.test>",
                "subject": "Grüße, {{customer.first_name}}: 東京 ✓ " + "lang " * 20,
                "body_html": f"<p>Hallo {{{{customer.first_name}}}}, 東京 ✓</p><p>{long_line}</p>",
                "body_text": "Hallo {{customer.first_name}}\n.dot first\n東京 ✓\n" + long_line,
                "headers": {"X-Note": "naïve"}, "tracking": False}})

    assert email.send_due_emails() == 1

    (message,) = smtp_sink.messages
    assert message["From"] == "Café Größe <news@acme.test>"
    assert message["To"] == "Zoë Müller <zoe@xn--bcher-kva.example>"
    assert message["Reply-To"] == "Jürgen <help@acme.test>"
    assert message["Subject"] == "Grüße, Zoë: 東京 ✓ " + " ".join(["lang"] * 20)
    assert message["X-Note"] == "naïve"
    assert message["Bcc"] is None  # on the envelope only
    assert message["Message-ID"] == email.message_id(delivery.pk)
    assert message.get_body(("plain",)).get_content() == (
        f"Hallo Zoë\n.dot first\n東京 ✓\n{long_line}")
    assert message.get_body(("html",)).get_content() == (
        f"<p>Hallo Zoë, 東京 ✓</p><p>{long_line}</p>")
    assert smtp_sink.recipients == [["zoe@xn--bcher-kva.example", "audit@acme.test"]]
    # What went over the line: ASCII only, CRLF line ends, no line longer than 998.
    (raw,) = smtp_sink.raw
    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert refreshed(delivery).state == "sent"


@pytest.mark.django_db
def test_a_message_only_django_can_write_goes_over_the_same_connection(workspace, smtp_sink):
    ada = make_person(workspace, "ada", email="ada@example.com", first_name="Ada")
    campaign = running(workspace, [MAIL])
    queue(campaign, ada)
    # A header that replaces one of the message's own: Django's MIME classes write it.
    Delivery.objects.create(
        workspace=workspace, journey_seq=1, step_id="transactional", kind="email",
        cio_id=ada.cio_id, recipient="ada@example.com", next_attempt_at=timezone.now(),
        created_at=timezone.now(), payload={"message": {
            "to": "ada@example.com", "subject": "Copy", "body_text": "Hi",
            "headers": {"Cc": "Boss <boss@acme.test>"}}})

    assert email.send_due_emails() == 2

    assert smtp_sink.connections == 1
    first, copy = smtp_sink.messages
    assert (first["Subject"], first["Cc"]) == ("Hi Ada", None)
    assert (copy["Subject"], copy["Cc"], copy.get_content().rstrip()) == (
        "Copy", "Boss <boss@acme.test>", "Hi")
    assert smtp_sink.recipients == [["ada@example.com"], ["ada@example.com"]]
    assert Delivery.objects.filter(state="sent").count() == 2


@pytest.mark.django_db
def test_a_connection_lost_in_the_middle_is_reopened_for_the_rest(workspace, smtp_sink,
                                                                   travel):
    campaign = running(workspace, [MAIL])
    crowd = [make_person(workspace, f"p{n}", email=f"p{n}@example.com", first_name=f"P{n}")
             for n in range(5)]
    smtp_sink.replies["p1@example.com"] = "421 4.3.2 Shutting down"  # and hangs up
    queue(campaign, *crowd)

    send_all()

    states = {d.recipient: (d.state, d.reason) for d in Delivery.objects.all()}
    assert states["p1@example.com"] == ("queued", "will retry: 421 4.3.2 Shutting down")
    # The rest went over a new connection.
    assert {states[f"p{n}@example.com"][0] for n in (0, 2, 3, 4)} == {"sent"}
    ids = [message["Message-ID"] for message in smtp_sink.messages]
    assert len(ids) == len(set(ids)) == Delivery.objects.filter(state="sent").count()
    assert smtp_sink.connections == 2


@pytest.mark.django_db
def test_any_other_django_backend_gets_djangos_message(workspace, settings):
    from django.core import mail

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    campaign = running(workspace, [{**MAIL, "subject": "Grüße {{customer.first_name}}"}])
    (delivery,) = queue(campaign, make_person(workspace, "ada", email="ada@example.com",
                                              first_name="Zoë"))

    send_all()

    (message,) = mail.outbox
    assert (message.to, message.subject) == (["ada@example.com"], "Grüße Zoë")
    assert message.extra_headers["Message-ID"] == email.message_id(delivery.pk)
    assert "List-Unsubscribe" in message.extra_headers
    assert refreshed(delivery).state == "sent"
