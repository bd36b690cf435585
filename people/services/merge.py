"""Merging two people into one."""

from django.db import transaction
from django.utils import timezone

from engage.models import Workspace
from people import validation as v
from people.models import Activity, Device, Event, Person
from people.services.common import (
    Outcome,
    Ref,
    Result,
    announce_change,
    check_ref,
    find_person,
    lock_identifiers,
    log_activity,
)
from people.services.deletion import _delete_batch
from people.services.identify import LINK_WINDOW, sync_email
from people.services.suppression import is_suppressed
from people.signals import people_merging


def merge_people(workspace: Workspace, *, primary: Ref, secondary: Ref) -> Result:
    """Merge the secondary person into the primary one and delete the secondary.

    The primary gains the attributes it lacks, identifiers it lacks, the secondary's
    devices and its last 30 days of events; other apps move what they keep through the
    ``people_merging`` signal. Nothing happens if either person does not exist.
    """
    check_ref(primary, field="primary")
    check_ref(secondary, field="secondary")
    if is_suppressed(workspace, [primary, secondary]):
        return Result(Outcome.SUPPRESSED)
    with transaction.atomic():
        # The primary may take the secondary's identifiers: lock them before the people,
        # so that a suppression of one of them waits and then finds the primary.
        moving = find_person(workspace, secondary, lock=False)
        if moving is not None:
            lock_identifiers(workspace, [("id", moving.customer_id),
                                         ("email", moving.email_key)])
        first = find_person(workspace, primary)
        second = find_person(workspace, secondary)
        if first is None or second is None:
            return Result(Outcome.NOT_FOUND, first, "both people must exist to merge")
        if first.pk == second.pk:
            return Result(Outcome.UNCHANGED, first)

        attributes = dict(first.attributes)
        for key, value in second.attributes.items():
            if len(attributes) >= v.MAX_ATTRIBUTES:
                break
            if attributes.get(key) in (None, ""):
                attributes[key] = value
        moved_id = second.customer_id if not first.customer_id else None

        Event.objects.filter(
            person=second, timestamp__gte=timezone.now() - LINK_WINDOW
        ).update(person=first)
        Device.objects.filter(person=second).update(person=first)
        people_merging.send(
            sender=Person, workspace=workspace, primary_id=first.pk, secondary_id=second.pk
        )
        _delete_batch(workspace, [second.pk], suppress=False,
                      reason={"merged_into": first.cio_id})

        first.attributes = attributes
        first.unsubscribed = first.unsubscribed or second.unsubscribed
        if moved_id:
            first.customer_id = moved_id
        sync_email(first)
        first.updated_at = timezone.now()
        first.save(update_fields=["attributes", "unsubscribed", "customer_id", "email",
                                  "email_key", "updated_at"])
        log_activity(workspace, first.cio_id, Activity.Kind.MERGED,
                     {"secondary_cio_id": second.cio_id})
        announce_change(workspace, [first.pk])
    return Result(Outcome.UPDATED, first)
