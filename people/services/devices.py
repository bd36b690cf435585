"""Devices: adding and removing a person's push devices."""

from typing import Any

from django.db import transaction
from django.utils import timezone

from engage.models import Workspace
from people import validation as v
from people.errors import InvalidInput, Problem
from people.models import Activity, Device
from people.services.common import (
    Outcome,
    Ref,
    Result,
    announce_change,
    check_ref,
    find_person,
    log_activity,
)
from people.services.events import _get_or_create_person
from people.services.suppression import is_suppressed


def add_device(
    workspace: Workspace,
    ref: Ref,
    *,
    token: Any,
    platform: Any,
    last_used: Any = None,
    attributes: dict | None = None,
) -> Result:
    """Add or update a device of the person ``ref`` names (a token belongs to one person)."""
    check_ref(ref)
    problems = []
    if (not isinstance(token, str) or not token.strip() or len(token) > 255
            or v.has_unstorable(token)):
        problems.append(Problem("device.id", "invalid_value",
                                "device id (token) is required, at most 255 characters"))
    if platform not in Device.Platform.values:
        problems.append(Problem("device.platform", "invalid_value",
                                "device platform must be ios or android"))
    if attributes is not None and not isinstance(attributes, dict):
        problems.append(Problem("device.attributes", "invalid_type",
                                "device attributes must be an object"))
    elif attributes:
        problems += v.attribute_problems(attributes, field_prefix="device.attributes.")
    used = v.optional_moment(last_used, field="device.last_used", problems=problems)
    if problems:
        raise InvalidInput(problems)
    with transaction.atomic():
        # Suppression is checked only when someone is created (see track_event).
        person, _ = _get_or_create_person(workspace, ref)
        if person is None:
            if ref.kind != "cio_id":
                return Result(Outcome.SUPPRESSED)
            return Result(Outcome.NOT_FOUND, message="no person has this cio_id")
        device, created = Device.objects.select_for_update().get_or_create(
            workspace=workspace,
            token=token,
            defaults={"person": person, "platform": platform, "last_used": used,
                      "attributes": attributes or {}, "created_at": timezone.now()},
        )
        moved = device.person_id != person.pk
        if not created:
            device.person = person
            device.platform = platform
            device.last_used = used or device.last_used
            device.attributes = {**device.attributes, **(attributes or {})}
            device.save(update_fields=["person", "platform", "last_used", "attributes"])
        if created or moved:
            log_activity(workspace, person.cio_id, Activity.Kind.DEVICE_ADDED,
                         {"platform": platform})
        announce_change(workspace, [person.pk])
    return Result(Outcome.CREATED if created else Outcome.UPDATED, person)


def delete_device(workspace: Workspace, ref: Ref, *, token: str) -> Result:
    """Remove the device ``token`` from the person ``ref`` names."""
    check_ref(ref)
    if is_suppressed(workspace, [ref]):
        return Result(Outcome.SUPPRESSED)
    with transaction.atomic():
        person = find_person(workspace, ref, lock=False)
        if person is None:
            return Result(Outcome.NOT_FOUND)
        removed, _ = Device.objects.filter(workspace=workspace, person=person, token=token).delete()
        if not removed:
            return Result(Outcome.UNCHANGED, person)
        log_activity(workspace, person.cio_id, Activity.Kind.DEVICE_REMOVED)
        announce_change(workspace, [person.pk])
    return Result(Outcome.UPDATED, person)
