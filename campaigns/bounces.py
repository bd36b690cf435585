"""Bounces and complaints: the workspace's email suppression list, and what ESPs report.

A hard bounce or a spam complaint puts the address on the workspace's suppression list
(``EmailSuppression``) and marks the delivery it is about ``bounced_at``; a soft bounce is
counted on the delivery (``payload["soft_bounces"]``). Reports come from django-anymail's
normalised tracking webhooks (``on_tracking_event``, connected in CampaignsConfig.ready)
or from an SMTP setup through the App API (``POST /v1/bounces``). ESP events name the
message by the id the sender stored in ``payload["rendered"]["message_id"]``.
"""

import logging
from dataclasses import dataclass

from anymail.signals import EventType, RejectReason
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from campaigns import tracking
from campaigns.models import Delivery, EmailSuppression, RenderedMessageId
from engage.models import Workspace
from people.models import Activity
from people.validation import email_key, is_valid_email

logger = logging.getLogger(__name__)

HARD, SOFT, COMPLAINT = "hard", "soft", "complaint"
BOUNCE_TYPES = (HARD, SOFT, COMPLAINT)
# Event ids kept on a delivery to know a report seen before (an ESP retrying its webhook).
EVENTS_KEPT = 50


@dataclass
class BounceResult:
    suppressed: bool  # the address is on the suppression list now
    delivery_id: int | None = None
    soft_bounces: int = 0
    duplicate: bool = False  # the same report (event id) was recorded before


# --- the suppression list ----------------------------------------------------------------


def suppress_address(workspace: Workspace, address: str, *, reason: str,
                     created_by=None) -> tuple[EmailSuppression, bool]:
    """Put an address on the workspace's suppression list (once); tell if it is new."""
    return EmailSuppression.objects.get_or_create(
        workspace=workspace, address=email_key(address.strip()),
        defaults={"reason": reason, "created_at": timezone.now(), "created_by": created_by})


def unsuppress_address(suppression: EmailSuppression) -> None:
    """Take an address off the suppression list: email may go to it again."""
    suppression.delete()


def valid_address(address: str) -> bool:
    return isinstance(address, str) and is_valid_email(address.strip())


# --- finding the delivery a report is about ---------------------------------------------


def message_id_forms(message_id: str) -> list[str]:
    """Return the forms a Message-ID is stored or reported in (with or without <>)."""
    bare = message_id.strip().strip("<>").strip()
    return sorted({message_id.strip(), bare, f"<{bare}>"} - {"", "<>"})


def find_delivery(message_id: str | None, *, workspace: Workspace | None = None,
                  lock: bool = False) -> Delivery | None:
    """Return the delivery whose sent message has this Message-ID or ESP message id."""
    if not message_id:
        return None
    rows = (Delivery.objects.alias(message_id=RenderedMessageId())
            .filter(message_id__in=message_id_forms(message_id)))
    if workspace is not None:
        rows = rows.filter(workspace=workspace)
    if lock:
        rows = rows.select_for_update(of=("self",))
    return rows.select_related("workspace").order_by("-pk").first()


# --- recording a report -------------------------------------------------------------------


def record_bounce(*, kind: str, email: str | None = None, message_id: str | None = None,
                  workspace: Workspace | None = None, event_id: str | None = None,
                  description: str = "") -> BounceResult | None:
    """Record a bounce or complaint of ``email`` (or of the message's recipient).

    ``workspace`` is the caller's (the App API); without it the delivery named by
    ``message_id`` tells (an ESP webhook), and a report about no known delivery is
    dropped (None). Idempotent: a hard bounce or complaint suppresses the address once
    and marks the delivery once; a report with an ``event_id`` seen before changes
    nothing.
    """
    with transaction.atomic():
        delivery = find_delivery(message_id, workspace=workspace, lock=True)
        if workspace is None:
            if delivery is None:
                return None
            workspace = delivery.workspace
        address = (email or "").strip() or (delivery.recipient if delivery else "")
        result = BounceResult(suppressed=False,
                              delivery_id=delivery.pk if delivery else None)
        payload = dict(delivery.payload) if delivery else {}
        events = list(payload.get("events") or [])
        if delivery is not None and event_id and event_id in events:
            result.duplicate = True
            result.soft_bounces = int(payload.get("soft_bounces") or 0)
            result.suppressed = bool(address) and bool(
                tracking.suppressed_addresses(workspace.pk, [address]))
            return result
        if kind in (HARD, COMPLAINT) and valid_address(address):
            reason = (EmailSuppression.Reason.COMPLAINT if kind == COMPLAINT
                      else EmailSuppression.Reason.BOUNCE)
            suppress_address(workspace, address, reason=reason)
            result.suppressed = True
        elif address:
            result.suppressed = bool(tracking.suppressed_addresses(workspace.pk, [address]))
        if delivery is None:
            return result
        if event_id:
            payload["events"] = [*events, event_id][-EVENTS_KEPT:]
        changes = {}
        if kind == SOFT:
            payload["soft_bounces"] = int(payload.get("soft_bounces") or 0) + 1
        elif "bounce" not in payload:
            payload["bounce"] = {"type": kind, "at": timezone.now().isoformat(),
                                 "description": description[:500]}
        if kind in (HARD, COMPLAINT):
            changes["bounced_at"] = Coalesce(F("bounced_at"), Value(timezone.now()))
        result.soft_bounces = int(payload.get("soft_bounces") or 0)
        Delivery.objects.filter(pk=delivery.pk).update(payload=payload, **changes)
        if kind in (HARD, COMPLAINT) and delivery.bounced_at is None:
            tracking.log_engagement(delivery, Activity.Kind.EMAIL_COMPLAINED if kind == COMPLAINT
                                    else Activity.Kind.EMAIL_BOUNCED)
            tracking.announce_engagement(delivery)
    return result


# --- django-anymail's normalised tracking events -------------------------------------------

_REJECTED = {RejectReason.BOUNCED: HARD, RejectReason.INVALID: HARD,
             RejectReason.SPAM: COMPLAINT}


def on_tracking_event(sender, event, esp_name, **kwargs):
    """Map an ESP's tracking event to the delivery it is about (receiver of
    ``anymail.signals.tracking``)."""
    kind = event.event_type
    bounce = {EventType.BOUNCED: HARD, EventType.DEFERRED: SOFT,
              EventType.COMPLAINED: COMPLAINT}.get(kind)
    if kind == EventType.REJECTED:
        bounce = _REJECTED.get(event.reject_reason)
    if bounce is not None:
        recorded = record_bounce(kind=bounce, email=event.recipient, message_id=event.message_id,
                                 event_id=event.event_id,
                                 description=event.description or event.mta_response or "")
        if recorded is None:
            logger.info("%s %s event about no known message (%s)", esp_name, kind,
                        event.message_id)
        return
    if kind not in (EventType.OPENED, EventType.CLICKED, EventType.UNSUBSCRIBED):
        return
    delivery = find_delivery(event.message_id)
    if delivery is None:
        logger.info("%s %s event about no known message (%s)", esp_name, kind, event.message_id)
        return
    if kind == EventType.OPENED:
        tracking.record_open(delivery.pk)
    elif kind == EventType.CLICKED:
        tracking.record_click(delivery.pk)
    else:
        tracking.unsubscribe(delivery.pk)
