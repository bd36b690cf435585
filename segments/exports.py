"""Exports of people as CSV: built in the background in bounded memory, streamed out."""

import csv
import json
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.utils import timezone

from engage.models import Workspace
from segments.conditions import matching_people, validate
from segments.models import Export

COLUMNS = ["cio_id", "id", "email", "created_at", "unsubscribed", "attributes"]
BATCH = 2000
LINK_MAX_AGE = 15 * 60  # seconds a download link stays valid
_signer = signing.TimestampSigner(salt="engage.exports")


def export_dir() -> Path:
    return Path(settings.ENGAGE_EXPORT_DIR)


def start_export(workspace: Workspace, filters: dict, *, description: str = "") -> Export:
    """Record an export of the people ``filters`` matches and build it after commit."""
    from django_q.tasks import async_task

    validate(filters, workspace=workspace)
    now = timezone.now()
    with transaction.atomic():
        export = Export.objects.create(workspace=workspace, filters=filters,
                                       description=description[:300], created_at=now,
                                       updated_at=now)
        transaction.on_commit(lambda: async_task("segments.tasks.build_export", export.pk,
                                                 task_name=f"export-{export.pk}"))
    return export


def build_export(export: Export) -> Export:
    """Write the CSV a batch of people at a time; safe to run again after a failure."""
    directory = export_dir()
    directory.mkdir(parents=True, exist_ok=True)
    name = f"export-{export.pk}-{secrets.token_hex(8)}.csv"
    partial = directory / f"{name}.partial"
    Export.objects.filter(pk=export.pk).update(state=Export.State.RUNNING,
                                               updated_at=timezone.now())
    people = matching_people(export.workspace, export.filters).order_by("pk")
    total, last = 0, 0
    try:
        with partial.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            while True:
                rows = list(people.filter(pk__gt=last).values_list(
                    "pk", "cio_id", "customer_id", "email", "created_at", "unsubscribed",
                    "attributes")[:BATCH])
                if not rows:
                    break
                for _, cio_id, customer_id, email, created_at, unsubscribed, attributes in rows:
                    writer.writerow([cio_id, customer_id or "", email or "",
                                     int(created_at.timestamp()), str(unsubscribed).lower(),
                                     json.dumps(attributes, ensure_ascii=False, sort_keys=True)])
                total += len(rows)
                last = rows[-1][0]
        os.replace(partial, directory / name)
    except Exception as error:
        partial.unlink(missing_ok=True)
        Export.objects.filter(pk=export.pk).update(state=Export.State.FAILED, error=str(error),
                                                   updated_at=timezone.now())
        raise
    Export.objects.filter(pk=export.pk).update(state=Export.State.DONE, total=total,
                                               file_name=name, updated_at=timezone.now())
    export.refresh_from_db()
    return export


def download_token(export: Export) -> str:
    """Return a token that opens the export's file for 15 minutes."""
    return _signer.sign(str(export.pk))


def export_for_token(token: str) -> Export | None:
    """Return the finished export a still-valid token opens, or None."""
    try:
        export_id = int(_signer.unsign(token, max_age=LINK_MAX_AGE))
    except (signing.BadSignature, ValueError):
        return None
    return Export.objects.filter(pk=export_id, state=Export.State.DONE).first()
