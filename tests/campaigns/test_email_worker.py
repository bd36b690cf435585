"""Real workers SIGKILLed again and again while sending: no email twice, none lost unseen."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.tasks import async_task

from campaigns import email, engine, services
from campaigns.models import Campaign, Delivery
from people.models import Person
from segments.services import create_segment
from tests.campaigns.test_smtp_relay import relays_left_behind
from tests.smtp_sink import SmtpSink
from tests.workers import cluster, needs_shared_database, real_tasks, wait_for  # noqa: F401

pytestmark = [needs_shared_database, pytest.mark.slow]

MESSAGES = 2000
KILLS = 3


@pytest.fixture
def sink():
    sink = SmtpSink(parse=False).start()
    yield sink
    sink.stop()


def queued() -> int:
    return Delivery.objects.filter(state="queued").count()


def test_killed_senders_never_send_twice_and_count_what_they_cut_off(
        cluster, workspace, sink, settings):  # noqa: F811
    segment = create_segment(workspace, name="Everyone")
    campaign = services.create_campaign(workspace, {
        "name": "Under fire", "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "exit": "never",
        "workflow": {"steps": [{"id": "mail", "type": "email", "from": "news@acme.test",
                                "subject": "Hi {{customer.first_name}}",
                                "body_html": "<p>Hello {{customer.first_name}}</p>"}]}})
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    now = timezone.now()
    Person.objects.bulk_create(
        Person(workspace=workspace, customer_id=f"u{n}", email=f"u{n}@example.com",
               attributes={"first_name": f"U{n}"}, created_at=now, updated_at=now)
        for n in range(MESSAGES))
    campaign.refresh_from_db()
    engine.enter(campaign, [engine.Entry(f"p{pk}", pk, cio_id) for pk, cio_id in
                            Person.objects.values_list("pk", "cio_id")])
    while engine.advance_due(limit=500):
        pass
    assert queued() == MESSAGES

    cut_off: set[int] = set()  # claimed by a worker that was then killed
    for _ in range(KILLS):
        if not queued():
            break
        before = len(sink.message_ids)
        worker = cluster(**sink.env).start()
        async_task("campaigns.tasks.send_deliveries", 20)
        assert wait_for(lambda before=before: len(sink.message_ids) >= before + 250
                        or not queued(), timeout=120)
        worker.kill()  # SIGKILL, mid-batch
        cut_off |= set(Delivery.objects.filter(state="sending").values_list("pk", flat=True))

    worker = cluster(**sink.env).start()
    async_task("campaigns.tasks.send_deliveries", 20)
    unfinished = Delivery.objects.exclude(state="sent").exclude(pk__in=cut_off)
    assert wait_for(lambda: not unfinished.exists(), timeout=120, interval=0.2), \
        unfinished.count()
    worker.stop()
    assert wait_for(lambda: not relays_left_behind(), timeout=15), "a relay outlived its worker"
    # The leases of what the killed workers claimed end: the email each had in flight
    # becomes unknown, the rest of its batch is sent.
    later = timezone.now() + email.SENDING_LEASE + timedelta(seconds=1)
    settings.EMAIL_BACKEND = sink.env["EMAIL_BACKEND"]
    settings.EMAIL_HOST, settings.EMAIL_PORT = sink.host, sink.port
    while email.send_due_emails(now=later):
        pass

    ids = sink.message_ids
    assert len(ids) == len(set(ids)), "an email was sent twice"
    unknown = set(Delivery.objects.filter(state="unknown").values_list("pk", flat=True))
    # At most the few sent but not yet recorded of each killed batch.
    assert unknown <= cut_off and len(unknown) <= KILLS * email.UNKNOWN_AT_MOST
    assert Delivery.objects.filter(state="sent").count() == MESSAGES - len(unknown)
    sent_ids = set(Delivery.objects.filter(state="sent").values_list(
        "payload__rendered__message_id", flat=True))
    assert sent_ids <= set(ids)  # every email recorded sent reached the server
    # The server got nothing else than those and, perhaps, some of the unknown.
    assert set(ids) <= sent_ids | {email.message_id(pk) for pk in unknown}
    print(f"{len(cut_off)} cut off, {len(unknown)} unknown, {len(ids)} received")
