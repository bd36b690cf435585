"""Conversion goals: a person who performs the goal converts their journey and the last
message before it, and leaves the campaign when its exit rule says so.

A goal event converts when it comes within ``within_days`` after a message of the
journey (a delivery that was sent or is on its way); the journey and that last message
are marked converted. With the exit rule "goal" or "goal_or_unmatch", performing the
goal ends the journey whether or not a message went out, as the seed describes.
Events reach here through ``events_stored``, after the commit that stored them; entering
or leaving a goal segment through that segment's membership log (``segments.log``), read
with a cursor of the campaign's own when segments announce a change, and every minute.
A journey that starts with its goal already met (in the goal segment, or out of the one
to leave) exits at once when the exit rule includes the goal, without converting.
"""

from datetime import timedelta

from django.db import transaction
from django.db.models import Max

from campaigns.event_filters import events_passing
from campaigns.models import Campaign, Delivery, Journey
from engage.sql import update_rows
from people.models import Event
from people.services.common import announce_change
from people.signals import StoredEvent
from segments.log import ENTERED, EXITED, read_changes
from segments.models import Membership, MembershipChange

# Deliveries that count as a message the person got (or is getting).
MESSAGE_STATES = [Delivery.State.SENT, Delivery.State.SENDING, Delivery.State.QUEUED,
                  Delivery.State.UNKNOWN]


def goal_event_name(campaign: Campaign) -> str | None:
    return ((campaign.definition.get("goal") or {}).get("event") or {}).get("name")


def note_goal_events(workspace_id: int, events: list[StoredEvent]) -> int:
    """Convert (and exit) the journeys whose campaign's goal these events meet; return how
    many journeys converted."""
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
    """Record that people reached the campaign's goal at these moments; return conversions.

    Set-based: one query locks the people's journeys, one reads the messages that may
    convert them, and three statements at most write what changed, however many moments.
    The moments are taken in order, as if one after another.
    """
    within = timedelta(days=campaign.definition["goal"].get("within_days", 7))
    exits = campaign.definition.get("exit") in ("goal", "goal_or_unmatch")
    moments = list(moments)
    if not moments:
        return 0
    with transaction.atomic():
        journeys: dict[int, list[Journey]] = {}
        for journey in (Journey.objects.filter(
                campaign=campaign, person_id__in={person_id for person_id, _ in moments})
                .order_by("pk").select_for_update()
                .only("pk", "person_id", "entered_at", "converted_at", "state")):
            journeys.setdefault(journey.person_id, []).append(journey)
        messages = _messages(campaign, journeys, moments, within)
        conversions: dict[int, tuple[object, int]] = {}  # journey -> (moment, delivery)
        ended: dict[int, object] = {}  # journey -> moment
        for person_id, moment in moments:
            for journey in journeys.get(person_id, []):
                if journey.entered_at > moment:
                    continue
                if journey.converted_at is None:
                    sent = [(created_at, pk) for created_at, pk in messages.get(journey.pk, [])
                            if moment - within <= created_at <= moment]
                    if sent:
                        journey.converted_at = moment
                        conversions[journey.pk] = (moment, max(sent)[1])  # the last message
                if exits and journey.state == Journey.State.ACTIVE:
                    journey.state = Journey.State.EXITED
                    ended[journey.pk] = moment
        update_rows(Delivery, ["converted_at"],
                    [(delivery, moment) for moment, delivery in conversions.values()])
        update_rows(Journey, ["converted_at"],
                    [(journey, moment) for journey, (moment, _) in conversions.items()])
        update_rows(Journey, ["state", "exit_reason", "ended_at", "next_run_at", "lease_until"],
                    [(journey, Journey.State.EXITED, "goal", moment, None, None)
                     for journey, moment in ended.items()])
        if conversions:  # "converted" engagement conditions (campaigns.engagement) follow
            announce_change(campaign.workspace, sorted(
                {journey.person_id for group in journeys.values() for journey in group
                 if journey.pk in conversions}))
    return len(conversions)


def _messages(campaign: Campaign, journeys: dict[int, list[Journey]], moments: list,
              within: timedelta) -> dict[int, list[tuple[object, int]]]:
    """Return, per journey not converted yet, its messages (sent at, id) that a moment
    may follow within the goal's days."""
    open_ids = [journey.pk for group in journeys.values() for journey in group
                if journey.converted_at is None]
    if not open_ids:
        return {}
    times = [moment for _, moment in moments]
    found: dict[int, list[tuple[object, int]]] = {}
    for pk, journey_id, created_at in Delivery.objects.filter(
            journey_id__in=open_ids, state__in=MESSAGE_STATES,
            created_at__gte=min(times) - within, created_at__lte=max(times)).values_list(
            "pk", "journey_id", "created_at"):
        found.setdefault(journey_id, []).append((created_at, pk))
    return found


# --- goals of entering or leaving a segment ----------------------------------------------


def goal_segment(campaign: Campaign) -> tuple[int, str] | None:
    """Return (segment id, "enters_segment" | "leaves_segment") of a segment goal, or None."""
    goal = campaign.definition.get("goal") or {}
    for kind in ("enters_segment", "leaves_segment"):
        if kind in goal:
            return goal[kind], kind
    return None


def start_goal_log(campaign: Campaign) -> None:
    """Have the campaign read its goal segment's log from now on (called on start)."""
    found = goal_segment(campaign)
    cursor = {}
    if found:
        last = MembershipChange.objects.filter(segment_id=found[0]).aggregate(last=Max("pk"))
        cursor = {str(found[0]): last["last"] or 0}
    Campaign.objects.filter(pk=campaign.pk).update(goal_cursor=cursor)


def read_goal_log(campaign_id: int) -> int:
    """Read the campaign's goal segment's log to its end, recording who reached the goal."""
    converted = 0
    while True:
        with transaction.atomic():
            campaign = (Campaign.objects.select_for_update(skip_locked=True)
                        .filter(pk=campaign_id, state__in=[Campaign.State.RUNNING,
                                                          Campaign.State.STOPPING]).first())
            found = goal_segment(campaign) if campaign else None
            if found is None:
                return converted
            segment_id, kind = found
            page = read_changes(campaign.workspace, [segment_id], after=campaign.goal_cursor)
            if not page.changes:
                return converted
            wanted = ENTERED if kind == "enters_segment" else EXITED
            converted += reach_goal(campaign, [(change.person_id, change.at)
                                               for change in page.changes
                                               if change.change == wanted])
            Campaign.objects.filter(pk=campaign.pk).update(
                goal_cursor={str(key): value for key, value in page.cursor.items()})


def read_goal_logs(workspace_id: int | None = None, segment_ids=None) -> int:
    """Read the goal log of every running campaign (of a workspace, for some segments)."""
    campaigns = Campaign.objects.filter(state__in=[Campaign.State.RUNNING,
                                                   Campaign.State.STOPPING])
    if workspace_id is not None:
        campaigns = campaigns.filter(workspace_id=workspace_id)
    converted = 0
    for campaign in campaigns.only("pk", "definition"):
        found = goal_segment(campaign)
        if found and (segment_ids is None or found[0] in segment_ids):
            converted += read_goal_log(campaign.pk)
    return converted


def goal_met_on_entry(campaign: Campaign, person_id: int) -> bool:
    """Tell whether a person starting a journey already meets its segment goal."""
    return person_id in goals_met_on_entry(campaign, [person_id])


def goals_met_on_entry(campaign: Campaign, person_ids: list[int]) -> set[int]:
    """Return those of the people starting journeys who already meet the campaign's
    segment goal (when its exit rule includes the goal): one query for them all."""
    found = goal_segment(campaign)
    if (not person_ids or found is None
            or campaign.definition.get("exit") not in ("goal", "goal_or_unmatch")):
        return set()
    segment_id, kind = found
    inside = set(Membership.objects.filter(segment_id=segment_id, person_id__in=person_ids)
                 .values_list("person_id", flat=True))
    return inside if kind == "enters_segment" else set(person_ids) - inside
