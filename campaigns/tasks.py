"""django-q2 entry points for campaigns: thin, idempotent, ids in."""

import logging
import secrets
import time
from collections.abc import Callable

from campaigns import engine

log = logging.getLogger(__name__)

# A sweeper runs a little under a minute, then hands over to its successor
# (``relay_journey_sweeper``, ``relay_delivery_sender``), so that while a worker runs, a
# due step or message is picked up within IDLE_PAUSE (plus the batch in hand), without a
# task per journey or message.
SWEEP_SECONDS = 55
IDLE_PAUSE = 0.25
RESUME_EVERY = 10
# The running chain of sweepers holds a baton in the cache, renewed every RESUME_EVERY
# seconds; a chain whose worker died lets go of it this long after, and the every-minute
# schedule starts another.
SWEEPER_BATON = "campaigns:journey-sweeper"
SENDER_BATON = "campaigns:delivery-sender"
BATON_SECONDS = 30


def advance_journeys(seconds: float = SWEEP_SECONDS, *,
                     keep_alive: Callable[[], None] | None = None) -> int:
    """Advance due journeys for ``seconds``, pausing briefly when none are due.

    Every RESUME_EVERY seconds it also hands out again background jobs whose worker died
    (a lapsed lease), so that while any worker runs, a job is picked up again well within
    a minute, not only when the one-minute schedule next fires; and calls ``keep_alive``.
    A backlog never starves journeys falling due now: batches are claimed oldest due first.
    """
    from engage import jobs

    deadline = time.monotonic() + seconds
    next_resume = time.monotonic()
    advanced = 0
    while True:
        if time.monotonic() >= next_resume:
            jobs.resume_every_stalled()
            if keep_alive is not None:
                keep_alive()
            next_resume = time.monotonic() + RESUME_EVERY
        done = engine.advance_due()
        advanced += done
        if time.monotonic() >= deadline:
            return advanced
        if not done:
            time.sleep(IDLE_PAUSE)


def send_deliveries(seconds: float = SWEEP_SECONDS, *,
                    keep_alive: Callable[[], None] | None = None) -> int:
    """Send due emails and webhook calls for ``seconds``, a batch of each in turn,
    pausing briefly when none are due; return how many were claimed.

    One sweeper for both keeps a worker free for other tasks: with the journeys' sweeper
    it holds two of the cluster's workers (``Q_WORKERS``, three by default). Each kind
    gets its turn whatever the other does: an error sending one (a broken SMTP server, a
    database hiccup) is logged and never keeps the other waiting until the next schedule.
    """
    from campaigns import email, webhooks

    deadline = time.monotonic() + seconds
    next_renewal = time.monotonic() + RESUME_EVERY
    claimed = 0
    while True:
        if keep_alive is not None and time.monotonic() >= next_renewal:
            keep_alive()
            next_renewal = time.monotonic() + RESUME_EVERY
        done = 0
        for kind, send_due in (("emails", email.send_due_emails),
                               ("webhooks", webhooks.send_due_webhooks)):
            try:
                done += send_due()
            except Exception:
                log.exception("sending due %s failed; the sweeper goes on", kind)
        claimed += done
        if time.monotonic() >= deadline:
            return claimed
        if not done:
            time.sleep(IDLE_PAUSE)


def relay_journey_sweeper(baton: str = "") -> int:
    """Advance due journeys for SWEEP_SECONDS, then queue the next sweeper (``_relay``)."""
    return _relay("campaigns.tasks.relay_journey_sweeper", SWEEPER_BATON, advance_journeys,
                  baton)


def relay_delivery_sender(baton: str = "") -> int:
    """Send due emails and webhook calls for SWEEP_SECONDS, then queue the next sender
    (``_relay``): a message falls due and goes within a second, not at the next schedule."""
    return _relay("campaigns.tasks.relay_delivery_sender", SENDER_BATON, send_deliveries,
                  baton)


def _relay(task: str, baton_key: str, sweep: Callable[..., int], baton: str) -> int:
    """Run ``sweep`` for SWEEP_SECONDS, then queue ``task`` again with the baton.

    One chain of sweepers runs without a gap between them (a schedule alone leaves gaps:
    django-q2 looks at its schedules every 30 seconds). The every-minute schedule calls
    the task without a baton: it starts a chain only when none holds the baton. A sweeper
    whose baton is no longer the chain's (its chain lapsed and another started) stops.
    """
    from django.core.cache import cache
    from django_q.conf import Conf
    from django_q.tasks import async_task

    from engage import workers

    if baton:
        if cache.get(baton_key) != baton:
            return 0
    else:
        baton = secrets.token_hex(8)
        if not cache.add(baton_key, baton, BATON_SECONDS):
            return 0  # a chain is running
    workers.freeze_long_lived()  # a sweeper's worker lives long: once per process

    def keep_alive():
        cache.set(baton_key, baton, BATON_SECONDS)

    done = sweep(SWEEP_SECONDS, keep_alive=keep_alive)
    keep_alive()  # held while the successor waits in the queue
    if not Conf.SYNC:  # inline tasks would relay forever
        async_task(task, baton)
    return done


def scan_date_triggers() -> int:
    """Enter people into date-triggered campaigns whose occurrences fell due."""
    from campaigns import date_triggers

    return date_triggers.scan_date_campaigns()


def enter_events(pending_ids: list[int]) -> int:
    """Enter the people that newly stored events trigger (pending entries by id)."""
    from campaigns import triggers

    return triggers.enter_pending(pending_ids)


def enter_due_events() -> int:
    """Retry pending event entries that are due: queued ones lost, filters not met yet."""
    from campaigns import triggers

    settled = 0
    while done := triggers.enter_pending():
        settled += done
    return settled


def enter_from_segments(workspace_id: int, segment_ids: list[int]) -> int:
    """Enter the people whom a change of these segments made match a campaign's trigger,
    and record the segment goals it met."""
    from campaigns import goals, segment_triggers

    entered = segment_triggers.enter_for_workspace(workspace_id, segment_ids)
    goals.read_goal_logs(workspace_id, set(segment_ids))
    return entered


def sweep_segment_triggers() -> int:
    """Read the membership log for every running segment-triggered campaign, and for every
    campaign with a segment goal."""
    from campaigns import goals, segment_triggers

    entered = segment_triggers.enter_for_all()
    goals.read_goal_logs()
    return entered


def start_scheduled_campaigns() -> int:
    """Start the campaigns whose scheduled start has come."""
    from campaigns import services

    return services.start_scheduled_campaigns()


def run_campaign_entry(job_id: int) -> None:
    """Enter the people who matched a campaign when it started; mark the job failed if an
    error stops it."""
    from campaigns import segment_triggers
    from campaigns.models import CampaignEntryJob
    from engage import jobs

    jobs.run_task(CampaignEntryJob, job_id, segment_triggers.run_entry)


def run_broadcast_trigger(trigger_id: int) -> None:
    """Enter a broadcast trigger's recipients; mark it failed if an error stops it."""
    from campaigns import broadcasts
    from campaigns.models import BroadcastTrigger
    from engage import jobs

    jobs.run_task(BroadcastTrigger, trigger_id, broadcasts.run_trigger)
