"""The journey sweepers: one chain of them, no gap, due steps picked up at once."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from campaigns import engine, services, tasks
from campaigns.models import Campaign, Journey, JourneyStep
from segments.services import create_segment
from tests.factories import make_person

pytestmark = pytest.mark.django_db


@pytest.fixture
def relays(monkeypatch):
    """Record the successors a sweeper queues (tasks run inline in tests otherwise)."""
    from django_q import tasks as q_tasks
    from django_q.conf import Conf

    queued = []
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(q_tasks, "async_task", lambda func, *args: queued.append((func, args)))
    monkeypatch.setattr(tasks, "SWEEP_SECONDS", 0)
    cache.delete(tasks.SWEEPER_BATON)
    yield queued
    cache.delete(tasks.SWEEPER_BATON)


def campaign_with_journeys(workspace, count: int, *, due) -> Campaign:
    segment = create_segment(workspace, name="Everyone")
    campaign = services.create_campaign(workspace, {
        "name": "Tag", "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "workflow": {"steps": [{"id": "tag", "type": "update_attributes",
                                "set": {"tagged": "yes"}}]}})
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    campaign.refresh_from_db()
    people = [make_person(workspace, f"p{n}") for n in range(count)]
    engine.enter(campaign, [engine.Entry(f"k{p.pk}", p.pk, p.cio_id) for p in people],
                 now=due)
    return campaign


def test_one_chain_of_sweepers_relays_without_a_gap(workspace, relays):
    campaign_with_journeys(workspace, 2, due=timezone.now())

    assert tasks.relay_journey_sweeper() == 2  # the schedule starts a chain
    ((func, (baton,)),) = relays
    assert func == "campaigns.tasks.relay_journey_sweeper" and baton

    assert tasks.relay_journey_sweeper() == 0  # the schedule again: the chain runs
    assert tasks.relay_journey_sweeper("someone-elses") == 0  # not this chain's baton
    assert len(relays) == 1

    tasks.relay_journey_sweeper(baton)  # the successor sweeps and relays in turn
    assert relays[-1] == ("campaigns.tasks.relay_journey_sweeper", (baton,))

    cache.delete(tasks.SWEEPER_BATON)  # the chain's worker died and its baton lapsed
    assert tasks.relay_journey_sweeper(baton) == 0 and len(relays) == 2
    tasks.relay_journey_sweeper()  # the schedule starts a new chain
    assert len(relays) == 3 and relays[-1][1] != (baton,)


def test_a_step_falling_due_while_a_sweeper_runs_runs_at_once(workspace):
    campaign = campaign_with_journeys(workspace, 3, due=timezone.now() + timedelta(days=1))
    due = timezone.now() + timedelta(seconds=0.6)
    Journey.objects.filter(campaign=campaign).update(next_run_at=due)

    assert tasks.advance_journeys(seconds=1.5) == 3

    ran = JourneyStep.objects.filter(journey__campaign=campaign).values_list("created_at",
                                                                             flat=True)
    lateness = [(moment - due).total_seconds() for moment in ran]
    assert len(lateness) == 3 and all(0 <= late < 2 for late in lateness), lateness
    assert not Journey.objects.filter(campaign=campaign, state="active").exists()


def test_the_senders_of_emails_and_webhooks_relay_without_a_gap_too(workspace, relays):
    cache.delete(tasks.SENDER_BATON)
    try:
        assert tasks.relay_delivery_sender() == 0  # nothing due: it sweeps, then relays
        ((func, (baton,)),) = relays
        assert func == "campaigns.tasks.relay_delivery_sender" and baton
        assert cache.get(tasks.SENDER_BATON) == baton
        assert tasks.relay_delivery_sender() == 0 and len(relays) == 1  # a chain runs
        tasks.relay_delivery_sender(baton)
        assert relays[-1] == ("campaigns.tasks.relay_delivery_sender", (baton,))
        # The journeys' chain is another: its baton is its own.
        assert cache.get(tasks.SWEEPER_BATON) is None
    finally:
        cache.delete(tasks.SENDER_BATON)


def test_a_sender_chain_sends_what_falls_due(workspace, relays, smtp_sink):
    from tests.campaigns.test_email import MAIL, queue, running

    cache.delete(tasks.SENDER_BATON)
    campaign = running(workspace, [MAIL])
    queue(campaign, make_person(workspace, "ada", email="ada@example.com", first_name="A"))

    assert tasks.relay_delivery_sender() == 1
    assert [m["To"] for m in smtp_sink.messages] == ["ada@example.com"]
    cache.delete(tasks.SENDER_BATON)


def test_a_sweeper_freezes_its_workers_long_lived_objects_once(workspace, relays,
                                                               monkeypatch):
    import gc

    from engage import workers

    monkeypatch.setattr(workers, "_frozen_in", None)
    gc.unfreeze()
    try:
        tasks.relay_journey_sweeper()
        frozen = gc.get_freeze_count()
        assert frozen > 1000
        cache.delete(tasks.SWEEPER_BATON)
        garbage = [[n] for n in range(5000)]
        tasks.relay_journey_sweeper()  # the next sweeper in the same process
        assert gc.get_freeze_count() <= frozen  # (frozen objects that died are gone)
        assert garbage
    finally:
        gc.unfreeze()
