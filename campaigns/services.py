"""Every change to campaigns and journeys with business meaning."""

from django.db import transaction
from django.db.models import Subquery
from django.utils import timezone

from campaigns import definition as definitions
from campaigns.models import Campaign, Delivery, Journey
from engage.models import Workspace
from people.models import Person


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


def update_campaign(campaign: Campaign, definition: dict, *, version: int | None = None
                    ) -> Campaign:
    """Replace a campaign's definition; raise StaleEdit if ``version`` is not the saved one.

    A running campaign may be edited: what is saved must still be startable.
    """
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
        _denormalise(current, normalised)
        current.version += 1
        current.updated_at = timezone.now()
        current.save()
    return current


# --- people leaving: deletion, suppression, merge --------------------------------------


def forget_people(workspace: Workspace, person_ids: list[int], cio_ids: list[str], *,
                  suppress: bool) -> None:
    """End the journeys of people being deleted, inside the deletion's transaction.

    Their journeys and deliveries stay for the campaigns' figures, tied to the cio_id;
    when suppressing, the cio_id, the recipient and what the trigger carried go too, so
    only counts remain. Their unsent messages are never sent.
    """
    now = timezone.now()
    journeys = Journey.objects.filter(workspace=workspace, person_id__in=person_ids)
    journeys.filter(state=Journey.State.ACTIVE).update(
        state=Journey.State.EXITED, exit_reason="person_deleted", ended_at=now,
        next_run_at=None, lease_until=None)
    journeys.update(person=None, **({"cio_id": None, "context": {}} if suppress else {}))
    deliveries = Delivery.objects.filter(workspace=workspace, cio_id__in=cio_ids)
    deliveries.filter(state__in=[Delivery.State.QUEUED, Delivery.State.DRAFTED]).update(
        state=Delivery.State.SKIPPED, reason="the person was deleted")
    if suppress:
        deliveries.update(cio_id=None, recipient="", payload={})


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
    theirs.update(person_id=primary_id, cio_id=Subquery(cio_id))
