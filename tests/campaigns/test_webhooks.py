"""Webhook steps: rendered, sent to a real local server, answered, retried, refused."""

import threading
from datetime import timedelta
from email.utils import format_datetime

import pytest
from django.db import connection, connections
from django.utils import timezone

from campaigns import engine, services, tasks, webhooks
from campaigns.models import Campaign, Delivery, Journey, JourneyStep
from people.models import Person
from segments.services import create_segment
from tests.factories import make_person
from tests.webhook_server import Reply


@pytest.fixture
def allowed(settings, webhook_server):
    """Let webhooks reach the local server (a loopback address) by its host name."""
    settings.ENGAGE_WEBHOOK_ALLOWED_HOSTS = [webhook_server.host]
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = False
    settings.ENGAGE_WEBHOOK_CONCURRENCY = 4
    return webhook_server


def running(workspace, steps, **extra) -> Campaign:
    segment = create_segment(workspace, name=f"Hooked {Campaign.objects.count()}")
    campaign = services.create_campaign(workspace, {
        "name": "Hooks", "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "workflow": {"steps": steps}, "exit": "never", **extra})
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    campaign.refresh_from_db()
    return campaign


def hook(url, **options):
    return {"id": "hook", "type": "webhook", "method": "POST", "url": url, **options}


def enter(campaign, *people, now=None) -> list[Journey]:
    engine.enter(campaign, [engine.Entry(f"k:{person.pk}", person.pk, person.cio_id)
                            for person in people], now=now)
    advance(now)
    return list(Journey.objects.filter(campaign=campaign).order_by("pk"))


def advance(now=None):
    while engine.advance_due(now=now):
        pass


def path_of(journey) -> list[tuple[str, str]]:
    return list(JourneyStep.objects.filter(journey=journey).order_by("seq")
                .values_list("step_id", "outcome"))


@pytest.mark.django_db
def test_a_webhook_is_rendered_sent_and_its_answer_mapped_and_passed_on(workspace, allowed):
    allowed.answer("/hooks/ada", Reply(200, json={"data": {"plan": "pro"}, "score": 7}))
    campaign = running(workspace, [
        hook(allowed.url + "/hooks/{{customer.id}}",
             headers={"X-Plan": "{{customer.plan}}", "Authorization": "Bearer s3cret"},
             body={"email": "{{customer.email}}", "campaign": "{{campaign.name}}"},
             response=[{"path": "data.plan", "attribute": "plan"},
                       {"path": "score", "attribute": "stats.score"},
                       {"path": "absent", "attribute": "never"}]),
        {"id": "echo", "type": "update_attributes",
         "set": {"echo": "{{webhook.hook.body.data.plan}}/{{webhook.hook.status}}"}}])
    ada = make_person(workspace, "ada", email="ada@example.com", plan="free",
                      stats={"logins": 3})
    (journey,) = enter(campaign, ada)
    delivery = Delivery.objects.get(journey=journey)
    assert delivery.state == "queued"

    assert webhooks.send_due_webhooks() == 1

    (request,) = allowed.requests
    assert (request.method, request.path) == ("POST", "/hooks/ada")
    assert request.json() == {"email": "ada@example.com", "campaign": "Hooks"}
    assert request.headers["X-Plan"] == "free"
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == webhooks.idempotency_key(delivery)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.reason) == ("sent", 1, "")
    assert delivery.sent_at is not None and delivery.next_attempt_at is None
    assert delivery.payload["rendered"] == {"method": "POST", "url": allowed.url + "/hooks/ada",
                                            "status": 200}
    assert delivery.payload["response"]["status"] == 200
    assert '"plan": "pro"' in delivery.payload["response"]["body"]
    ada.refresh_from_db()
    assert ada.attributes["plan"] == "pro"
    assert ada.attributes["stats"] == {"logins": 3, "score": 7}
    assert "never" not in ada.attributes
    journey.refresh_from_db()
    assert journey.next_run_at is not None  # woken in the commit that marked it sent
    assert journey.context["webhooks"]["hook"]["body"] == {"data": {"plan": "pro"}, "score": 7}

    advance()
    journey.refresh_from_db()
    ada.refresh_from_db()
    assert journey.state == "finished"
    assert ada.attributes["echo"] == "pro/200"
    assert path_of(journey) == [("hook", "delivery:queued"), ("hook", "delivery:sent"),
                                ("echo", "done")]


@pytest.mark.django_db
def test_a_text_body_and_an_edited_message_are_sent_as_written(workspace, allowed):
    campaign = running(workspace, [hook(allowed.url + "/step", method="PUT",
                                        body="name={{customer.id}}")])
    ada, bob = make_person(workspace, "ada"), make_person(workspace, "bob")
    ada_journey, bob_journey = enter(campaign, ada, bob)
    edited = Delivery.objects.get(journey=bob_journey)
    Delivery.objects.filter(pk=edited.pk).update(payload={"message": {
        "method": "PATCH", "url": allowed.url + "/edited/{{customer.id}}",
        "headers": {"Idempotency-Key": "mine"}, "body": None}})

    webhooks.send_due_webhooks()

    by_path = {request.path: request for request in allowed.requests}
    assert (by_path["/step"].method, by_path["/step"].body) == ("PUT", b"name=ada")
    assert "Content-Type" not in by_path["/step"].headers
    assert by_path["/edited/bob"].method == "PATCH"
    assert by_path["/edited/bob"].headers["Idempotency-Key"] == "mine"
    assert set(Delivery.objects.values_list("state", flat=True)) == {"sent"}


@pytest.mark.django_db
def test_a_server_error_is_retried_later_with_the_same_idempotency_key(workspace, allowed):
    allowed.answer("/flaky", Reply(500, json={"error": "down"}), Reply(200, json={"ok": 1}))
    campaign = running(workspace, [hook(allowed.url + "/flaky")])
    (journey,) = enter(campaign, make_person(workspace, "ada"))
    now = timezone.now()

    webhooks.send_due_webhooks(now=now)

    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts) == ("queued", 1)
    assert "HTTP 500" in delivery.reason
    # Exponential backoff with jitter: half to all of the first step (30 s).
    assert now + timedelta(seconds=15) <= delivery.next_attempt_at <= now + timedelta(seconds=30)
    assert webhooks.send_due_webhooks(now=now + timedelta(seconds=14)) == 0  # not yet due
    journey.refresh_from_db()
    assert (journey.state, journey.next_run_at) == ("active", None)  # still waiting

    later = now + timedelta(minutes=1)
    assert webhooks.send_due_webhooks(now=later) == 1

    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("sent", 2)
    first, second = allowed.to("/flaky")
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    advance(later)
    journey.refresh_from_db()
    assert journey.state == "finished"


@pytest.mark.django_db
def test_too_many_requests_waits_as_long_as_retry_after_says(workspace, allowed):
    allowed.answer("/busy", Reply(429, headers={"Retry-After": "120"}))
    campaign = running(workspace, [hook(allowed.url + "/busy")])
    enter(campaign, make_person(workspace, "ada"))
    now = timezone.now()

    webhooks.send_due_webhooks(now=now)

    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.next_attempt_at) == ("queued", now + timedelta(seconds=120))
    assert "HTTP 429" in delivery.reason


def test_retry_after_reads_seconds_and_dates_and_is_capped():
    now = timezone.now().replace(microsecond=0)
    answer = webhooks.Answer(status=503, headers={"Retry-After": format_datetime(
        now + timedelta(minutes=5), usegmt=True)})
    assert webhooks.retry_delay(1, answer, now) == timedelta(minutes=5)
    assert webhooks.retry_delay(1, webhooks.Answer(headers={"retry-after": "86400"}), now) \
        == webhooks.RETRY_AFTER_CAP
    assert webhooks.parse_retry_after("soon", now) is None
    for attempts in (1, 5, 30):
        delay = webhooks.retry_delay(attempts, webhooks.Answer(status=500), now)
        full = min(webhooks.BACKOFF_BASE * 2 ** (attempts - 1), webhooks.BACKOFF_CAP)
        assert full / 2 <= delay <= full


@pytest.mark.django_db
def test_a_slow_answer_times_out_and_is_retried(workspace, allowed, settings):
    settings.ENGAGE_WEBHOOK_READ_TIMEOUT = 0.3
    allowed.answer("/slow", Reply(200, delay=1.5))
    campaign = running(workspace, [hook(allowed.url + "/slow")])
    enter(campaign, make_person(workspace, "ada"))

    webhooks.send_due_webhooks()

    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts) == ("queued", 1)
    assert "timed out" in delivery.reason


@pytest.mark.django_db
def test_a_huge_answer_is_read_only_up_to_the_cap(workspace, allowed):
    allowed.answer("/huge", Reply(200, size=50 * 1024 * 1024))
    campaign = running(workspace, [hook(allowed.url + "/huge",
                                        response=[{"path": "plan", "attribute": "plan"}])])
    enter(campaign, make_person(workspace, "ada"))

    webhooks.send_due_webhooks()

    delivery = Delivery.objects.get()
    assert delivery.state == "sent"
    response = delivery.payload["response"]
    assert len(response["body"]) == webhooks.DISPLAY_BYTES and response["truncated"]
    assert delivery.reason == "the response is not JSON: nothing was mapped"
    # The sender stopped reading: much of the 50 MB was never written (the server's
    # count includes what socket buffers took in, several MB on a busy machine).
    assert allowed.bytes_written["/huge"] < 40 * 1024 * 1024


def test_the_response_is_capped_at_one_megabyte(allowed):
    allowed.answer("/huge", Reply(200, size=5 * 1024 * 1024))
    answer = webhooks.send(webhooks.Call(1, "GET", allowed.url + "/huge", {}))
    assert (answer.status, answer.truncated) == (200, True)
    assert len(answer.body) == webhooks.MAX_RESPONSE_BYTES
    assert answer.json() is None


@pytest.mark.django_db
def test_a_redirect_to_a_private_address_is_refused(workspace, allowed):
    # The server is allowed by its address; "localhost" is not, and is loopback.
    allowed.answer("/moved", Reply(302, headers={
        "Location": f"http://localhost:{allowed.port}/inside"}))
    allowed.answer("/here", Reply(307, headers={"Location": "/there"}))
    campaign = running(workspace, [hook(allowed.url + "/{{customer.id}}")])
    ada, bob = make_person(workspace, "moved"), make_person(workspace, "here")
    ada_journey, bob_journey = enter(campaign, ada, bob)

    webhooks.send_due_webhooks()

    assert not allowed.to("/inside")
    refused = Delivery.objects.get(journey=ada_journey)
    assert refused.state == "failed"
    assert refused.reason.startswith("refused: localhost is at the private address")
    # A redirect within the allowed host is followed, keeping the method and the body.
    followed = Delivery.objects.get(journey=bob_journey)
    assert followed.state == "sent"
    assert [request.method for request in allowed.to("/there")] == ["POST"]


@pytest.mark.django_db
def test_a_client_error_is_final_and_the_journey_moves_on_with_failed(workspace, allowed):
    allowed.answer("/gone", Reply(404, json={"error": "no such thing"}))
    campaign = running(workspace, [
        hook(allowed.url + "/gone", response=[{"path": "plan", "attribute": "plan"}]),
        {"id": "after", "type": "update_attributes",
         "set": {"hook_status": "{{webhook.hook.status}}"}}])
    ada = make_person(workspace, "ada")
    (journey,) = enter(campaign, ada)
    now = timezone.now()

    webhooks.send_due_webhooks(now=now)

    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.reason, delivery.attempts) == ("failed", "HTTP 404", 1)
    assert delivery.payload["response"]["status"] == 404
    assert len(allowed.requests) == 1
    advance(now)
    journey.refresh_from_db()
    ada.refresh_from_db()
    assert journey.state == "finished"
    assert path_of(journey)[1] == ("hook", "delivery:failed")
    assert ada.attributes["hook_status"] == "404"
    assert "plan" not in ada.attributes


@pytest.mark.django_db
def test_private_addresses_are_refused_unless_the_operator_allows_them(
        workspace, webhook_server, settings):
    settings.ENGAGE_WEBHOOK_ALLOWED_HOSTS = []
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = False
    campaign = running(workspace, [hook(webhook_server.url + "/inside")])
    enter(campaign, make_person(workspace, "ada"), make_person(workspace, "bob"))
    first = Delivery.objects.order_by("pk").first()

    assert webhooks.send_due_webhooks(limit=1) == 1

    first.refresh_from_db()
    assert first.state == "failed"
    assert first.reason == "refused: 127.0.0.1 is at the private address 127.0.0.1"
    assert not webhook_server.requests

    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = True
    webhooks.send_due_webhooks()
    assert len(webhook_server.requests) == 1
    assert Delivery.objects.filter(state="sent").count() == 1


@pytest.mark.django_db
def test_after_the_last_attempt_the_delivery_fails_and_the_journey_moves_on(
        workspace, allowed, settings):
    settings.ENGAGE_WEBHOOK_MAX_ATTEMPTS = 3
    allowed.answer("/down", Reply(503))
    campaign = running(workspace, [hook(allowed.url + "/down")])
    (journey,) = enter(campaign, make_person(workspace, "ada"))
    now = timezone.now()

    for hour in range(5):
        webhooks.send_due_webhooks(now=now + timedelta(hours=hour))

    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts) == ("failed", 3)
    assert delivery.reason == "HTTP 503 (gave up after 3 attempts)"
    assert len(allowed.requests) == 3
    advance(now + timedelta(hours=5))
    journey.refresh_from_db()
    assert journey.state == "finished"


@pytest.mark.django_db
def test_a_template_error_fails_the_delivery_saying_where(workspace, allowed):
    campaign = running(workspace, [hook(allowed.url + "/x",
                                        headers={"X-Name": "{{ customer.nickname }}"})])
    (journey,) = enter(campaign, make_person(workspace, "ada"))

    webhooks.send_due_webhooks()

    delivery = Delivery.objects.get()
    assert delivery.state == "failed"
    assert delivery.reason.startswith("headers.X-Name: line 1:")
    assert "nickname" in delivery.reason
    assert not allowed.requests
    journey.refresh_from_db()
    assert journey.next_run_at is not None  # woken: it moves on with the failure


@pytest.mark.django_db
def test_a_delivery_cut_off_while_sending_is_sent_again_with_the_same_key(workspace, allowed):
    campaign = running(workspace, [hook(allowed.url + "/once")])
    (journey,) = enter(campaign, make_person(workspace, "ada"))
    now = timezone.now()
    # A worker claims the delivery and calls, then dies before recording the answer.
    (claimed,) = webhooks.claim_due(now=now)
    webhooks.send(webhooks.prepare(claimed, now=now))
    assert Delivery.objects.get().state == "sending"

    assert webhooks.send_due_webhooks(now=now + timedelta(minutes=5)) == 0  # lease holds
    assert webhooks.send_due_webhooks(now=now + webhooks.LEASE) == 1

    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts) == ("sent", 2)
    first, second = allowed.to("/once")
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    journey.refresh_from_db()
    assert journey.next_run_at is not None


@pytest.mark.django_db
def test_the_sweeper_task_sends_what_is_due(workspace, allowed):
    campaign = running(workspace, [hook(allowed.url + "/swept")])
    enter(campaign, make_person(workspace, "ada"))

    assert tasks.send_deliveries(seconds=0) == 1

    assert Delivery.objects.get().state == "sent"
    assert len(allowed.to("/swept")) == 1


@pytest.mark.django_db
def test_the_sweeper_sends_webhooks_while_emails_fail(workspace, allowed, monkeypatch, caplog):
    from campaigns import email

    def broken(**kwargs):
        raise ConnectionRefusedError("the SMTP server is down")

    monkeypatch.setattr(email, "send_due_emails", broken)
    campaign = running(workspace, [hook(allowed.url + "/swept")])
    enter(campaign, make_person(workspace, "ada"))

    assert tasks.send_deliveries(seconds=0) == 1

    assert Delivery.objects.get().state == "sent"
    assert "sending due emails failed" in caplog.text


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="senders racing for deliveries need row locks (PostgreSQL)")
@pytest.mark.django_db(transaction=True)
def test_two_senders_racing_never_send_one_delivery_twice(workspace, allowed):
    campaign = running(workspace, [hook(allowed.url + "/race/{{customer.id}}")])
    crowd = [make_person(workspace, f"p{number}") for number in range(60)]
    enter(campaign, *crowd)
    errors = []

    def sender():
        try:
            while webhooks.send_due_webhooks(limit=4):
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
    paths = sorted(request.path for request in allowed.requests)
    assert paths == sorted(f"/race/p{number}" for number in range(60))
    assert Delivery.objects.filter(state="sent", attempts=1).count() == 60


@pytest.mark.django_db
def test_extract_reads_json_paths():
    data = {"plan": "pro", "data": {"plan": "team"}, "items": [{"id": 1}, {"id": 2}],
            "none": None}
    assert webhooks.extract(data, "plan") == "pro"
    assert webhooks.extract(data, "data.plan") == "team"
    assert webhooks.extract(data, "items[1].id") == 2
    assert webhooks.extract(data, "items[].id") == [1, 2]
    assert webhooks.extract(data, "none") is webhooks._MISSING
    assert webhooks.extract(data, "data.missing") is webhooks._MISSING


# --- the recipe: delete inactive people through engage's own Track API -----------------


def basic_auth(workspace) -> str:
    import base64

    token = base64.b64encode(f"{workspace.site_id}:{workspace.track_api_key}".encode())
    return "Basic " + token.decode()


@pytest.mark.parametrize("action", ["delete", "suppress"])
def test_the_recipe_deletes_inactive_people_through_the_track_api(
        live_server, transactional_db, workspace, settings, action):
    settings.ENGAGE_WEBHOOK_ALLOWED_HOSTS = ["localhost"]
    url = live_server.url + "/api/v1/customers/cio_{{customer.cio_id}}"
    step = (hook(url, method="DELETE") if action == "delete"
            else hook(url + "/suppress", method="POST"))
    campaign = running(workspace, [
        {"id": "wait", "type": "delay", "duration": {"days": 7}},
        {**step, "headers": {"Authorization": basic_auth(workspace)}},
        {"id": "after", "type": "update_attributes", "set": {"kept": "yes"}}])
    ada = make_person(workspace, "ada", email="ada@example.com")
    stays = make_person(workspace, "stays")
    (journey,) = enter(campaign, ada)
    week = timezone.now() + timedelta(days=7)
    advance(week)
    assert Delivery.objects.get().state == "queued"

    assert webhooks.send_due_webhooks(now=week) == 1
    webhooks.close_sessions()  # the live server stops with no connection kept open
    advance(week)
    assert not webhooks.send_due_webhooks(now=week + timedelta(hours=2))

    assert list(Person.objects.all()) == [stays]
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.reason) == ("sent", 1, "")
    journey.refresh_from_db()
    assert (journey.state, journey.exit_reason) == ("exited", "person_deleted")
    assert journey.next_run_at is None
    if action == "delete":
        assert delivery.payload["rendered"]["status"] == 200
        assert delivery.cio_id == ada.cio_id
    else:
        from people.models import Suppression

        assert Suppression.objects.filter(workspace=workspace).exists()
        assert (delivery.cio_id, delivery.payload) == (None, {})  # forgotten, as suppressed


@pytest.mark.django_db
def test_a_webhook_of_a_journey_that_ended_is_skipped_not_sent(workspace, allowed):
    campaign = running(workspace, [hook(allowed.url + "/late")])
    (journey,) = enter(campaign, make_person(workspace, "ada"))
    services.stop_campaign(campaign, journeys="exit")

    webhooks.send_due_webhooks()

    delivery = Delivery.objects.get()
    assert delivery.state == "skipped"
    assert delivery.reason.startswith("the journey ended (campaign_stopped)")
    assert not allowed.requests


@pytest.mark.parametrize("host", ["169.254.169.254", "10.0.0.1", "[::1]", "[fe80::1]"])
def test_link_local_private_and_loopback_addresses_are_refused_before_connecting(
        settings, host):
    settings.ENGAGE_WEBHOOK_ALLOWED_HOSTS = []
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = False
    answer = webhooks.send(webhooks.Call(1, "GET", f"http://{host}/latest/meta-data", {}))
    assert answer.error.startswith("refused:") and not answer.retry


def test_a_redirect_loop_ends_after_a_few_hops(allowed):
    allowed.answer("/loop", Reply(302, headers={"Location": "/loop"}))
    answer = webhooks.send(webhooks.Call(1, "GET", allowed.url + "/loop", {}))
    assert len(allowed.to("/loop")) == webhooks.MAX_REDIRECTS + 1
    assert (answer.status, answer.ok, answer.temporary) == (302, False, False)
    assert answer.problem.startswith("HTTP 302: redirect not followed")


@pytest.mark.django_db
def test_a_data_campaign_calls_with_the_data_it_received(workspace, allowed):
    import json

    from django.test import Client

    from campaigns import triggers

    allowed.answer("/orders/A-7", Reply(200, json={"tier": "gold"}))
    campaign = services.start_campaign(services.create_campaign(workspace, {
        "name": "Orders", "trigger": {"webhook": {}}, "workflow": {"steps": [
            hook(allowed.url + "/orders/{{trigger.order}}",
                 body={"email": "{{trigger.email}}", "order": "{{trigger.order}}"}),
            {"id": "tag", "type": "update_attributes", "person": {"email": "{{trigger.email}}"},
             "set": {"tier": "{{webhook.hook.body.tier}}"}}]}}))
    ada = make_person(workspace, "ada", email="ada@example.com")
    response = Client().post(f"/api/v1/webhooks/{triggers.webhook_token(campaign)}",
                             json.dumps({"email": "ada@example.com", "order": "A-7"}),
                             content_type="application/json")
    assert response.status_code == 200
    advance()

    webhooks.send_due_webhooks()

    (request,) = allowed.to("/orders/A-7")
    assert request.json() == {"email": "ada@example.com", "order": "A-7"}
    assert Delivery.objects.get().state == "sent"
    advance()
    ada.refresh_from_db()
    assert ada.attributes["tier"] == "gold"
    assert Journey.objects.get(campaign=campaign).state == "finished"


def test_allowed_hosts_are_matched_by_name_whatever_the_case_or_brackets(settings):
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = False
    settings.ENGAGE_WEBHOOK_ALLOWED_HOSTS = ["Engage.Internal", "[::1]"]
    assert webhooks.private_allowed("engage.internal")
    assert webhooks.private_allowed("::1")
    assert not webhooks.private_allowed("other.internal")
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = True
    assert webhooks.private_allowed("other.internal")


def test_see_other_turns_a_post_into_a_get_without_its_body(allowed):
    allowed.answer("/see", Reply(303, headers={"Location": "/seen"}))
    answer = webhooks.send(webhooks.Call(1, "POST", allowed.url + "/see",
                                         {"Content-Type": "application/json"}, b'{"a": 1}'))
    assert answer.ok
    (seen,) = allowed.to("/seen")
    assert (seen.method, seen.body) == ("GET", b"")
    assert "Content-Type" not in seen.headers


def test_which_answers_are_worth_another_attempt():
    temporary = [webhooks.Answer(status=status) for status in (408, 429, 500, 502, 503)]
    final = [webhooks.Answer(status=status) for status in (400, 401, 403, 404, 410, 422)]
    assert all(answer.temporary and not answer.ok for answer in temporary)
    assert not any(answer.temporary or answer.ok for answer in final)
    assert webhooks.Answer(error="could not connect", retry=True).temporary
    assert not webhooks.Answer(error="refused: private", retry=False).temporary
    assert webhooks.Answer(status=204).ok
