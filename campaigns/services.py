"""Every change to campaigns and journeys with business meaning."""

import logging

from django.db import transaction
from django.db.models import (
    Case,
    CharField,
    DateTimeField,
    F,
    Q,
    Subquery,
    TextField,
    Value,
    When,
)
from django.utils import timezone

from campaigns import definition as definitions
from campaigns import goals, segment_triggers
from campaigns.models import Campaign, Delivery, Journey, JourneyStep, settle_stopping
from campaigns.workflow import Workflow
from engage.models import Workspace
from people.models import Person

log = logging.getLogger(__name__)


class StaleEdit(Exception):
    """An edit made against an older version of the campaign than the one saved."""

    def __init__(self, campaign: Campaign):
        self.campaign = campaign
        super().__init__(f"campaign {campaign.pk} changed since (now version "
                         f"{campaign.version})")


class CampaignStateError(Exception):
    """The campaign's state does not allow this (e.g. editing an archived campaign)."""


def _denormalise(campaign: Campaign, definition: dict) -> None:
    """Copy what finds the campaign for a trigger out of its definition."""
    ((kind, trigger),) = definition["trigger"].items()
    campaign.definition = definition
    campaign.name = definition["name"]
    campaign.description = definition["description"]
    campaign.tags = definition["tags"]
    campaign.trigger = kind
    campaign.trigger_event = trigger.get("name") if kind == "event" else None
    campaign.trigger_form = trigger.get("id") if kind == "form" else None


def create_campaign(workspace: Workspace, definition: dict) -> Campaign:
    """Create a draft campaign from a definition; raise DefinitionError naming problems."""
    normalised = definitions.validate(definition, workspace=workspace)
    now = timezone.now()
    campaign = Campaign(workspace=workspace, created_at=now, updated_at=now)
    _denormalise(campaign, normalised)
    campaign.save()
    return campaign


def update_campaign(campaign: Campaign, definition: dict, *, version: int | None = None,
                    removed_steps: str = "move_on") -> Campaign:
    """Replace a campaign's definition; raise StaleEdit if ``version`` is not the saved one.

    A running campaign may be edited: what is saved must still be startable. Journeys
    follow step ids, so people in a block that moved move with it. People at a step that
    the edit removes go on to the first step after it that remains (``removed_steps=
    "move_on"``, as Customer.io does) or leave the campaign (``"exit"``).
    """
    if removed_steps not in ("move_on", "exit"):
        raise ValueError("removed_steps must be 'move_on' or 'exit'")
    with transaction.atomic():
        current = Campaign.objects.select_for_update().get(pk=campaign.pk,
                                                           workspace=campaign.workspace_id)
        if current.state == Campaign.State.ARCHIVED:
            raise CampaignStateError("an archived campaign cannot be edited: unarchive it first")
        if version is not None and version != current.version:
            raise StaleEdit(current)
        normalised = definitions.validate(
            definition, workspace=current.workspace,
            starting=current.state in (Campaign.State.RUNNING, Campaign.State.STOPPING))
        if (next(iter(normalised["trigger"])) != current.trigger
                and current.state != Campaign.State.DRAFT):
            raise CampaignStateError("the trigger type of a campaign that has run cannot "
                                     "change: create a new campaign")
        old = Workflow(current.definition["workflow"]["steps"])
        _denormalise(current, normalised)
        current.version += 1
        current.updated_at = timezone.now()
        current.save()
        _move_off_removed_steps(current, old, Workflow(normalised["workflow"]["steps"]),
                                exit_them=removed_steps == "exit")
    return current


def _move_off_removed_steps(campaign: Campaign, old: Workflow, new: Workflow, *,
                            exit_them: bool) -> None:
    """Move (or end) the journeys at steps an edit removed: one statement per such step."""
    now = timezone.now()
    active = Journey.objects.filter(campaign=campaign, state=Journey.State.ACTIVE)
    for step_id in (step_id for step_id in old.ids() if step_id not in new):
        at_step = active.filter(step_id=step_id)
        following = None if exit_them else old.successor_in(new, step_id)
        if following is not None:
            at_step.update(step_id=following, step_data={}, next_run_at=now, lease_until=None)
        else:
            at_step.update(state=Journey.State.EXITED if exit_them else Journey.State.FINISHED,
                           exit_reason="step_removed" if exit_them else "finished",
                           ended_at=now, next_run_at=None, lease_until=None, step_data={})


# --- lifecycle -------------------------------------------------------------------------

# Journeys ended (stop, archive) or people entered (start) per statement and transaction.
BATCH_SIZE = 2000


class Audience:
    CURRENT_AND_FUTURE = "current_and_future"
    FUTURE_ONLY = "future_only"
    CHOICES = (CURRENT_AND_FUTURE, FUTURE_ONLY)


def _locked(campaign: Campaign) -> Campaign:
    return Campaign.objects.select_for_update().get(pk=campaign.pk)


def start_campaign(campaign: Campaign, *, audience: str = Audience.CURRENT_AND_FUTURE
                   ) -> Campaign:
    """Start (or restart) a draft or stopped campaign; return it running.

    Refuses a definition with unconfigured steps (DefinitionError, by place). For a
    campaign triggered by segments, "current and future" enters the people who match
    now, in set-based batches (a job: at once for one batch, else by a worker, resumed
    if its process dies); "future only" enters nobody until someone newly matches.
    """
    if audience not in Audience.CHOICES:
        raise ValueError(f"audience must be one of {Audience.CHOICES}")
    with transaction.atomic():
        current = _locked(campaign)
        if current.state not in (Campaign.State.DRAFT, Campaign.State.STOPPED):
            raise CampaignStateError(f"a {current.state} campaign cannot be started")
        definitions.validate(current.definition, workspace=current.workspace, starting=True)
        now = timezone.now()
        current.state = Campaign.State.RUNNING
        current.started_at = now
        current.first_started_at = current.first_started_at or now
        current.stopped_at = None
        current.starts_at, current.start_audience = None, ""
        current.save(update_fields=["state", "started_at", "first_started_at", "stopped_at",
                                    "starts_at", "start_audience"])
        if current.trigger == Campaign.Trigger.SEGMENTS:
            # From here on the log tells who comes to match; who matches now is entered
            # below (current and future), or not at all (future only).
            segment_triggers.start_at_head(current)
        goals.start_goal_log(current)
        entry = None
        if (current.trigger == Campaign.Trigger.SEGMENTS
                and audience == Audience.CURRENT_AND_FUTURE):
            entry = segment_triggers.start_entering(current)
    if entry is not None and segment_triggers.runs_at_once(entry):
        segment_triggers.run_entry(entry.pk)
    return current


def schedule_start(campaign: Campaign, *, at, audience: str = Audience.CURRENT_AND_FUTURE
                   ) -> Campaign:
    """Have a draft or stopped campaign start at ``at`` (None: cancel a scheduled start).

    What would keep it from starting now keeps it from being scheduled (DefinitionError);
    it is checked again when the time comes.
    """
    if audience not in Audience.CHOICES:
        raise ValueError(f"audience must be one of {Audience.CHOICES}")
    with transaction.atomic():
        current = _locked(campaign)
        if current.state not in (Campaign.State.DRAFT, Campaign.State.STOPPED):
            raise CampaignStateError(f"a {current.state} campaign cannot be scheduled to start")
        if at is not None:
            definitions.validate(current.definition, workspace=current.workspace,
                                 starting=True)
        current.starts_at, current.start_audience = at, audience if at else ""
        current.save(update_fields=["starts_at", "start_audience"])
    return current


def start_scheduled_campaigns() -> int:
    """Start the campaigns whose scheduled start has come; return how many started."""
    started = 0
    due = Campaign.objects.filter(starts_at__lte=timezone.now(),
                                  state__in=[Campaign.State.DRAFT, Campaign.State.STOPPED])
    for campaign in due:
        try:
            start_campaign(campaign, audience=campaign.start_audience or
                           Audience.CURRENT_AND_FUTURE)
        except (definitions.DefinitionError, CampaignStateError) as error:
            # Edited into something that cannot start since: keep it, and say why.
            Campaign.objects.filter(pk=campaign.pk).update(starts_at=None, start_audience="")
            log.warning("campaign %s could not start as scheduled: %s", campaign.pk, error)
            continue
        started += 1
    return started


def stop_campaign(campaign: Campaign, *, journeys: str = "exit") -> Campaign:
    """Stop a running campaign: nobody enters; its journeys exit now, or finish first.

    With ``journeys="finish"`` the campaign is "stopping" until its last journey ends.
    """
    if journeys not in ("exit", "finish"):
        raise ValueError("journeys must be 'exit' or 'finish'")
    with transaction.atomic():
        current = _locked(campaign)
        if current.state not in (Campaign.State.RUNNING, Campaign.State.STOPPING):
            raise CampaignStateError(f"a {current.state} campaign is not running")
        current.state = (Campaign.State.STOPPING if journeys == "finish"
                         else Campaign.State.STOPPED)
        current.stopped_at = timezone.now()
        current.save(update_fields=["state", "stopped_at"])
    if journeys == "exit":
        exit_journeys(current, reason="campaign_stopped")
    else:
        settle_stopping([current.pk])  # stopped at once when nobody is in it
    return current


def exit_journeys(campaign: Campaign, *, reason: str) -> int:
    """End every active journey of a campaign, in batches; return how many."""
    ended = 0
    active = Journey.objects.filter(campaign=campaign, state=Journey.State.ACTIVE)
    while True:
        with transaction.atomic():
            ids = list(active.order_by("pk").values_list("pk", flat=True)[:BATCH_SIZE])
            if not ids:
                return ended
            ended += Journey.objects.filter(pk__in=ids, state=Journey.State.ACTIVE).update(
                state=Journey.State.EXITED, exit_reason=reason, ended_at=timezone.now(),
                next_run_at=None, lease_until=None)


def archive_campaign(campaign: Campaign) -> Campaign:
    """Archive a campaign: nobody enters, everyone in it exits, unsent drafts go."""
    with transaction.atomic():
        current = _locked(campaign)
        if current.state == Campaign.State.ARCHIVED:
            return current
        current.state = Campaign.State.ARCHIVED
        current.stopped_at = current.stopped_at or timezone.now()
        current.save(update_fields=["state", "stopped_at"])
    exit_journeys(current, reason="campaign_archived")
    Delivery.objects.filter(campaign=current, state=Delivery.State.DRAFTED).update(
        state=Delivery.State.DISCARDED, reason="the campaign was archived")
    return current


def unarchive_campaign(campaign: Campaign) -> Campaign:
    """Bring an archived campaign back as stopped, with the archived segments it uses."""
    from segments.models import Segment
    from segments.services import set_archived

    with transaction.atomic():
        current = _locked(campaign)
        if current.state != Campaign.State.ARCHIVED:
            raise CampaignStateError("only an archived campaign can be unarchived")
        current.state = Campaign.State.STOPPED
        current.save(update_fields=["state"])
        for segment in Segment.objects.filter(workspace=current.workspace_id, archived=True,
                                              pk__in=segment_ids(current.definition)):
            set_archived(segment, False)
    return current


def segment_ids(definition: dict) -> set[int]:
    """Return the ids of every segment a definition uses (trigger, filters, goal, steps)."""
    found: set[int] = set()

    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "segment" and isinstance(item, dict) and isinstance(item.get("id"),
                                                                              int):
                    found.add(item["id"])
                elif key in ("enters_segment", "leaves_segment") and isinstance(item, int):
                    found.add(item)
                elif key == "segment" and isinstance(item, int):
                    found.add(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(definition.get("filters"))
    walk(definition.get("goal"))
    walk(definition.get("workflow"))
    trigger = definition.get("trigger", {}).get("segments")
    if trigger:
        found |= {item["id"] for item in trigger["segments"]}
    return found


def delete_campaign(campaign: Campaign) -> None:
    """Delete a campaign, its definition and journeys; its message figures stay, anonymous."""
    with transaction.atomic():
        current = _locked(campaign)
        Delivery.objects.filter(campaign=current).update(
            campaign=None, journey=None, cio_id=None, recipient="", payload={})
        journeys = Journey.objects.filter(campaign=current)
        JourneyStep.objects.filter(journey__in=journeys).delete()
        journeys.delete()
        current.delete()


# --- people leaving: deletion, suppression, merge --------------------------------------


def forget_people(workspace: Workspace, person_ids: list[int], cio_ids: list[str], *,
                  suppress: bool) -> None:
    """End the journeys of people being deleted, inside the deletion's transaction.

    Their journeys and deliveries stay for the campaigns' figures, tied to the cio_id;
    when suppressing, the cio_id, the recipient and what the trigger carried go too, so
    only counts remain. Their unsent messages are never sent.
    """
    now = timezone.now()
    active = Q(state=Journey.State.ACTIVE)
    ending = {
        "state": Case(When(active, then=Value(Journey.State.EXITED)), default=F("state"),
                      output_field=CharField()),
        "exit_reason": Case(When(active, then=Value("person_deleted")),
                            default=F("exit_reason"), output_field=CharField()),
        "ended_at": Case(When(active, then=Value(now)), default=F("ended_at"),
                         output_field=DateTimeField()),
        "next_run_at": None, "lease_until": None, "person": None,
    }
    if suppress:
        ending |= {"cio_id": None, "context": {}}
    # One statement for the journeys, and one for the deliveries of people who had any.
    if not Journey.objects.filter(workspace=workspace, person_id__in=person_ids).update(
            **ending):
        return  # no journeys, so no deliveries: people who never were in a campaign
    unsent = Q(state__in=[Delivery.State.QUEUED, Delivery.State.DRAFTED])
    skipping = {
        "state": Case(When(unsent, then=Value(Delivery.State.SKIPPED)), default=F("state"),
                      output_field=CharField()),
        "reason": Case(When(unsent, then=Value("the person was deleted")),
                       default=F("reason"), output_field=TextField()),
    }
    if suppress:
        skipping |= {"cio_id": None, "recipient": "", "payload": {}}
    Delivery.objects.filter(workspace=workspace, cio_id__in=cio_ids).update(**skipping)


def move_journeys(workspace: Workspace, primary_id: int, secondary_id: int) -> None:
    """Give the primary person the secondary's journeys in campaigns the primary is not in.

    A journey in a campaign the primary already travels ends ("merged"), so nobody is in
    one campaign twice.
    """
    now = timezone.now()
    theirs = Journey.objects.filter(workspace=workspace, person_id=secondary_id,
                                    state=Journey.State.ACTIVE)
    primary = Journey.objects.filter(workspace=workspace, person_id=primary_id,
                                     state=Journey.State.ACTIVE)
    theirs.filter(campaign_id__in=primary.values("campaign_id")).update(
        state=Journey.State.EXITED, exit_reason="merged", ended_at=now, next_run_at=None,
        lease_until=None)
    cio_id = Person.objects.filter(pk=primary_id).values("cio_id")[:1]
    moved = list(theirs.values_list("pk", flat=True))
    theirs.update(person_id=primary_id, cio_id=Subquery(cio_id))
    # Their messages follow them, so the primary's deletion or suppression finds them.
    Delivery.objects.filter(journey_id__in=moved).update(cio_id=Subquery(cio_id))
