"""Conversion goals: a person who performs the goal converts their journey and the last
message before it, and leaves the campaign when its exit rule says so.

A goal event converts when it comes within ``within_days`` after a message of the
journey (a delivery that was sent or is on its way); the journey and that last message
are marked converted. With the exit rule "goal" or "goal_or_unmatch", performing the
goal ends the journey whether or not a message went out, as the seed describes.
Events reach here through ``events_stored``, after the commit that stored them.
"""

from datetime import timedelta

from django.db import transaction
from django.db.models import Q

from campaigns.models import Campaign, Delivery, Journey
from people.models import Event
from people.signals import StoredEvent

# Deliveries that count as a message the person got (or is getting).
MESSAGE_STATES = [Delivery.State.SENT, Delivery.State.SENDING, Delivery.State.QUEUED,
                  Delivery.State.UNKNOWN]


def goal_event_name(campaign: Campaign) -> str | None:
    return ((campaign.definition.get("goal") or {}).get("event") or {}).get("name")


def note_goal_events(workspace_id: int, events: list[StoredEvent]) -> int:
    """Convert (and exit) the journeys whose campaign's goal these events meet; return how
    many journeys converted."""
    from campaigns.triggers import events_passing

    names = {event.name for event in events}
    converted = 0
    for campaign in Campaign.objects.filter(
            workspace_id=workspace_id,
            state__in=[Campaign.State.RUNNING, Campaign.State.STOPPING]).exclude(
            definition__goal=None):
        name = goal_event_name(campaign)
        if name not in names:
            continue
        goal = campaign.definition["goal"]
        passing = events_passing(workspace_id, goal["event"].get("filters") or [],
                                 [event.event_id for event in events if event.name == name])
        moments = Event.objects.filter(pk__in=passing).values_list("person_id", "timestamp")
        converted += reach_goal(campaign, list(moments))
    return converted


def reach_goal(campaign: Campaign, moments: list[tuple[int, object]]) -> int:
    """Record that people reached the campaign's goal at these moments; return conversions."""
    within = timedelta(days=campaign.definition["goal"].get("within_days", 7))
    exits = campaign.definition.get("exit") in ("goal", "goal_or_unmatch")
    converted = 0
    with transaction.atomic():
        for person_id, moment in moments:
            journeys = Journey.objects.filter(campaign=campaign, person_id=person_id,
                                              entered_at__lte=moment)
            for journey in journeys.filter(converted_at__isnull=True):
                message = (Delivery.objects.filter(
                    journey=journey, state__in=MESSAGE_STATES, created_at__lte=moment,
                    created_at__gte=moment - within).order_by("-created_at", "-pk").first())
                if message is None:
                    continue
                Delivery.objects.filter(pk=message.pk).update(converted_at=moment)
                journey.converted_at = moment
                journey.save(update_fields=["converted_at"])
                converted += 1
            if exits:
                journeys.filter(Q(state=Journey.State.ACTIVE)).update(
                    state=Journey.State.EXITED, exit_reason="goal", ended_at=moment,
                    next_run_at=None, lease_until=None)
    return converted
