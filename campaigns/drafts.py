"""Drafted deliveries: an editor edits, sends or discards what a "draft" step wrote.

A draft is a delivery in state ``drafted``. Editing writes the message to
``payload["message"]`` (the contract the sender reads before the step's own content);
sending queues it for the sender now; discarding ends it. Every change is conditional on
the row still being a draft, so a double submit, or two editors at once, change it once.
"""

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from campaigns.models import Campaign, Delivery, Journey
from campaigns.workflow import Workflow

EMAIL_MESSAGE_FIELDS = ("from", "to", "reply_to", "subject", "body_html", "body_text",
                        "tracking")


class NotADraft(Exception):
    """The delivery was sent, discarded or otherwise left the drafts meanwhile."""


def drafts_of(campaign: Campaign) -> QuerySet:
    """Return the campaign's drafted deliveries."""
    return Delivery.objects.filter(workspace_id=campaign.workspace_id, campaign=campaign,
                                   state=Delivery.State.DRAFTED)


def draft_message(delivery: Delivery) -> dict:
    """Return the message a draft would send as stored: its edit, else the step's fields."""
    if delivery.payload.get("message"):
        return delivery.payload["message"]
    step = Workflow(delivery.campaign.definition["workflow"]["steps"]).get(delivery.step_id)
    return {name: (step or {}).get(name) for name in EMAIL_MESSAGE_FIELDS}


@transaction.atomic
def edit_draft(delivery: Delivery, *, subject: str, body_html: str | None,
               body_text: str | None = None) -> Delivery:
    """Store an edited subject and body for a drafted email; raise NotADraft if it is
    no longer one. The rest of the message is kept from the step (or an earlier edit)."""
    current = (Delivery.objects.select_for_update(of=("self",)).select_related("campaign")
               .filter(pk=delivery.pk, state=Delivery.State.DRAFTED,
                       kind=Delivery.Kind.EMAIL).first())
    if current is None:
        raise NotADraft(delivery.pk)
    message = {**draft_message(current), "subject": subject,
               "body_html": body_html or None, "body_text": body_text or None}
    current.payload = {**current.payload, "message": message}
    current.save(update_fields=["payload"])
    return current


@transaction.atomic
def send_drafts(campaign: Campaign, delivery_ids) -> int:
    """Queue these drafts of the campaign for sending now; return how many were queued."""
    return drafts_of(campaign).filter(pk__in=list(delivery_ids)).update(
        state=Delivery.State.QUEUED, next_attempt_at=timezone.now())


@transaction.atomic
def discard_drafts(campaign: Campaign, delivery_ids) -> int:
    """Discard these drafts of the campaign; return how many were discarded.

    A journey waiting for a discarded webhook is woken in the same commit, so the engine
    moves it on (as the sender does for a webhook that ends).
    """
    now = timezone.now()
    chosen = drafts_of(campaign).filter(pk__in=list(delivery_ids))
    webhooks = list(chosen.filter(kind=Delivery.Kind.WEBHOOK).select_for_update()
                    .values_list("journey_id", flat=True))
    discarded = chosen.update(state=Delivery.State.DISCARDED, next_attempt_at=None,
                              reason="discarded by an editor")
    if webhooks:
        Journey.objects.filter(pk__in=[pk for pk in webhooks if pk is not None],
                               state=Journey.State.ACTIVE, next_run_at__isnull=True,
                               ).update(next_run_at=now)
    return discarded
