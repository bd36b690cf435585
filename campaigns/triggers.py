"""The event, form and webhook triggers of campaigns, and the people data campaigns name.

Every entry goes through ``engine.enter`` with a key that makes a replay harmless: the
event (or, with frequency "once", the person) for events, the submission for forms, the
request for webhooks.

Events: ``note_events`` (an ``events_stored`` receiver, after the event's commit) finds
the running campaigns those event names trigger, in one query, writes a pending entry
per (campaign, event) and queues ``campaigns.tasks.enter_events`` with their ids once
that commit is done. The pending rows are what makes it durable: if queueing fails or the
worker dies, the one-minute sweeper (``campaigns.tasks.enter_due_events``) takes them.
``enter_pending`` decides, set-based per campaign: events timestamped more than 72 hours
before they arrived never trigger; the event's data must pass the trigger's filters
(compiled by ``segments.conditions``, the code path segments use); a person who does not
match the campaign's filters yet is tried again every minute for 30 minutes after the
event arrived, then given up; the frequency decides whether they enter again.
"""

import logging
import secrets
import uuid
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from campaigns import engine
from campaigns.event_filters import events_passing
from campaigns.models import Campaign, Journey, PendingEntry
from engage.models import Workspace
from engage.sql import in_ids, insert_rows
from people import services as people
from people.models import Event, Person
from people.signals import StoredEvent
from segments import conditions

log = logging.getLogger(__name__)

MAX_EVENT_AGE = timedelta(hours=72)  # older events never trigger (Customer.io's rule)
FILTER_RETRY = timedelta(minutes=30)  # how long a person may take to match the filters
RETRY_EVERY = timedelta(minutes=1)
BATCH_SIZE = 500
PENDING_FIELDS = ["workspace", "campaign", "event_id", "next_try_at", "deadline", "created_at"]


# --- events ----------------------------------------------------------------------------


def note_events(workspace_id: int, events: list[StoredEvent]) -> list[int]:
    """Record what newly stored events owe to event-triggered campaigns; queue the work.

    Return the ids of the pending entries written (none when no running campaign is
    triggered by these event names: most events cost this one query).
    """
    names = {event.name for event in events}
    campaigns = list(Campaign.objects.filter(
        workspace=workspace_id, state=Campaign.State.RUNNING, trigger=Campaign.Trigger.EVENT,
        trigger_event__in=names).values_list("pk", "trigger_event"))
    if not campaigns:
        return []
    now = timezone.now()
    rows = [(workspace_id, campaign_id, event.event_id, now + RETRY_EVERY,
             now + FILTER_RETRY, now)
            for campaign_id, name in campaigns for event in events if event.name == name]
    with transaction.atomic():
        ids = [pk for (pk,) in insert_rows(PendingEntry, PENDING_FIELDS, rows, returning=("id",),
                                           skip_conflicts_on="(campaign_id, event_id)")]
        if ids:
            transaction.on_commit(lambda: _queue(ids))
    return ids


def _queue(ids: list[int]) -> None:
    from django_q.tasks import async_task

    try:
        async_task("campaigns.tasks.enter_events", ids)
    except Exception:  # the broker is down: the sweeper enters them within a minute
        log.exception("could not queue %s pending entries", len(ids))


def enter_pending(ids: list[int] | None = None, *, now: datetime | None = None,
                  limit: int = BATCH_SIZE) -> int:
    """Enter, retry or give up a batch of pending entries (``ids``, else the due ones).

    Return how many pending entries were settled or postponed.
    """
    now = now or timezone.now()
    with transaction.atomic():
        pending = PendingEntry.objects.select_for_update(skip_locked=True).order_by("pk")
        pending = (pending.filter(pk__in=ids) if ids is not None
                   else pending.filter(next_try_at__lte=now))
        rows = list(pending.values_list("pk", "campaign_id", "event_id", "deadline")[:limit])
        if not rows:
            return 0
        by_campaign: dict[int, list[tuple[int, int, datetime]]] = {}
        for pk, campaign_id, event_id, deadline in rows:
            by_campaign.setdefault(campaign_id, []).append((pk, event_id, deadline))
        settled: list[int] = []
        postponed: list[int] = []
        campaigns = Campaign.objects.in_bulk(list(by_campaign))
        for campaign_id, items in by_campaign.items():
            campaign = campaigns.get(campaign_id)
            if campaign is None or campaign.state != Campaign.State.RUNNING:
                settled += [pk for pk, _, _ in items]
                continue
            done, later = _enter_events(campaign, items, now)
            settled += done
            postponed += later
        PendingEntry.objects.filter(pk__in=settled).delete()
        PendingEntry.objects.filter(pk__in=postponed).update(next_try_at=now + RETRY_EVERY)
    return len(rows)


def _enter_events(campaign: Campaign, items: list[tuple[int, int, datetime]],
                  now: datetime) -> tuple[list[int], list[int]]:
    """Enter whoever these events let in; return (settled, postponed) pending ids."""
    trigger = campaign.definition["trigger"]["event"]
    pending_of = {event_id: (pk, deadline) for pk, event_id, deadline in items}
    events = {event.pk: event for event in Event.objects.filter(
        workspace=campaign.workspace_id, pk__in=list(pending_of), name=trigger["name"],
        person__isnull=False).only("pk", "person_id", "name", "timestamp", "data",
                                   "dedup_id", "received_at")}
    events = {pk: event for pk, event in events.items()
              if event.timestamp >= event.received_at - MAX_EVENT_AGE}
    passing = events_passing(campaign.workspace_id, trigger.get("filters") or [], list(events))
    matching = _people_matching(campaign, {events[pk].person_id for pk in passing}, now)
    later = [pending_of[pk][0] for pk in passing
             if events[pk].person_id not in matching and pending_of[pk][1] > now]
    ready = sorted((events[pk] for pk in passing if events[pk].person_id in matching),
                   key=lambda event: (event.timestamp, event.pk))
    frequency = campaign.definition.get("frequency") or {"mode": "every"}
    if frequency["mode"] == "at_most_once":
        ready = _at_most_once(campaign, ready, timedelta(hours=frequency["hours"]), now)
    engine.enter(campaign, [
        engine.Entry(f"p{event.person_id}" if frequency["mode"] == "once" else f"e{event.pk}",
                     event.person_id, None, {"event": {
                         "name": event.name, "id": event.dedup_id or str(event.pk),
                         "data": event.data}})
        for event in ready], now=now)
    postponed = set(later)
    return [pk for pk, _, _ in items if pk not in postponed], later


def _people_matching(campaign: Campaign, person_ids: set[int], now: datetime) -> set[int]:
    """Return the people who match the campaign's filters now (all when it has none)."""
    tree = campaign.definition.get("filters")
    if tree is None or not person_ids:
        return set(person_ids)
    compiled = conditions.compile_tree(tree, now=now, correlated=True,
                                       workspace_id=campaign.workspace_id)
    ids_sql, ids_params = in_ids("people_person.id", sorted(person_ids))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT people_person.id FROM people_person WHERE {ids_sql} AND "
                       f"({compiled.sql})", [*ids_params, *compiled.params])
        return {pk for (pk,) in cursor.fetchall()}


def _at_most_once(campaign: Campaign, events: list[Event], within: timedelta,
                  now: datetime) -> list[Event]:
    """Keep each person's first event unless they entered within ``within`` already.

    The people are locked first, so two workers entering the same person serialise and
    the second sees the first one's journey.
    """
    person_ids = sorted({event.person_id for event in events})
    if not person_ids:
        return []
    list(Person.objects.select_for_update().filter(pk__in=person_ids).order_by("pk")
         .values_list("pk", flat=True))
    recent = set(Journey.objects.filter(campaign=campaign, person_id__in=person_ids,
                                        entered_at__gt=now - within)
                 .values_list("person_id", flat=True))
    kept = []
    for event in events:
        if event.person_id not in recent:
            recent.add(event.person_id)
            kept.append(event)
    return kept


# --- forms -----------------------------------------------------------------------------


def submit_form(workspace: Workspace, form_id: str, data: dict, *,
                submission_id: str | None = None) -> people.Result:
    """Identify the submitter by ``data``'s id or email, store its fields, enter them.

    Every field is stored as an attribute, as Customer.io's form submissions do; the
    person enters every running campaign of that form whose filters they match. A
    suppressed submitter is accepted and ignored. Raise InvalidInput on bad input.
    """
    ref = _form_ref(workspace, data)
    submission_id = submission_id or uuid.uuid4().hex
    with transaction.atomic():
        result = people.identify_person(workspace, ref, data)
        person = result.person
        if person is None:
            return result
        for campaign in Campaign.objects.in_workspace(workspace).entering().filter(
                trigger=Campaign.Trigger.FORM, trigger_form=form_id):
            if person.pk in _people_matching(campaign, {person.pk}, timezone.now()):
                engine.enter(campaign, [engine.Entry(f"f{submission_id}", person.pk,
                                                     person.cio_id, {"trigger": data})])
    return result


def _form_ref(workspace: Workspace, data: dict) -> people.Ref:
    if data.get("id") not in (None, ""):
        return people.make_ref(workspace, "id", data["id"], field="data")
    if data.get("email") not in (None, "") and workspace.email_is_identifier:
        return people.make_ref(workspace, "email", data["email"], field="data")
    raise people.InvalidInput.single(
        "data", "missing_identifier",
        "data needs an id" + (" or an email" if workspace.email_is_identifier else "")
        + " naming the person who submitted the form")


# --- webhooks: data campaigns ----------------------------------------------------------


def webhook_token(campaign: Campaign) -> str:
    """Return the secret of a webhook campaign's URL, making it on first use."""
    if campaign.webhook_token:
        return campaign.webhook_token
    Campaign.objects.filter(pk=campaign.pk, webhook_token__isnull=True).update(
        webhook_token=secrets.token_urlsafe(32))
    campaign.refresh_from_db(fields=["webhook_token"])
    return campaign.webhook_token


def regenerate_webhook_token(campaign: Campaign) -> str:
    """Give a webhook campaign a new secret URL; the old one answers 404 from now on."""
    campaign.webhook_token = secrets.token_urlsafe(32)
    Campaign.objects.filter(pk=campaign.pk).update(webhook_token=campaign.webhook_token)
    return campaign.webhook_token


def receive_webhook(token: str, body, *, request_id: str | None = None) -> Journey | None:
    """Start a journey of the running webhook campaign ``token`` names, carrying ``body``.

    Return the journey, or None when no running webhook campaign has that secret. A
    repeated ``request_id`` starts nothing new.
    """
    campaign = Campaign.objects.filter(webhook_token=token, trigger=Campaign.Trigger.WEBHOOK,
                                       state=Campaign.State.RUNNING).first()
    if campaign is None:
        return None
    key = f"r{request_id or uuid.uuid4().hex}"
    engine.enter(campaign, [engine.Entry(key, None, None, {"trigger": body})])
    return Journey.objects.get(campaign=campaign, entry_key=key)
