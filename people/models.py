import secrets
import string

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Upper
from django.urls import reverse

from engage.models import BackgroundJob, FromSetting, JobItem, Workspace
from people.validation import email_key

CIO_ID_ALPHABET = string.ascii_lowercase + string.digits
CIO_ID_LENGTH = 12


def generate_cio_id() -> str:
    """Return a new short, unguessable person id (about 62 bits of randomness).

    One read of the system's random source, spelt in base 36 (a batch creates thousands).
    """
    number = int.from_bytes(secrets.token_bytes(10)) % len(CIO_ID_ALPHABET) ** CIO_ID_LENGTH
    letters = []
    for _ in range(CIO_ID_LENGTH):
        number, digit = divmod(number, len(CIO_ID_ALPHABET))
        letters.append(CIO_ID_ALPHABET[digit])
    return "".join(letters)


class PersonQuerySet(models.QuerySet):
    def in_workspace(self, workspace):
        return self.filter(workspace=workspace)

    def with_identifier(self, workspace, kind: str, value: str):
        """Return people of ``workspace`` that ``kind`` / ``value`` names (at most one)."""
        qs = self.filter(workspace=workspace)
        if kind == "id":
            return qs.filter(customer_id=value)
        if kind == "email":
            if workspace.email_is_identifier:
                return qs.filter(email_key=email_key(value))
            return qs.filter(email__iexact=value)
        if kind == "cio_id":
            return qs.filter(cio_id=value)
        raise ValueError(f"unknown identifier type {kind!r}")


class Person(models.Model):
    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="people", db_index=False
    )
    cio_id = models.CharField(max_length=32, default=generate_cio_id, editable=False)
    customer_id = models.CharField("id", max_length=150, null=True, blank=True)  # noqa: DJ001 - NULL: no id, unique only when set
    email = models.CharField(max_length=254, null=True, blank=True)  # noqa: DJ001 - NULL: no email
    # The lowercased email, set only where email is an identifier, so that the database
    # keeps it unique per workspace, case-insensitively.
    email_key = models.CharField(max_length=254, null=True, blank=True, editable=False)  # noqa: DJ001 - NULL: not an identifier, unique only when set
    attributes = models.JSONField(default=dict, blank=True)
    unsubscribed = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    # Unix time of the newest applied identify that carried ``_timestamp``.
    attributes_timestamp = models.BigIntegerField(null=True, blank=True, editable=False)

    objects = PersonQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "people"
        constraints = [
            models.UniqueConstraint(fields=["workspace", "cio_id"], name="person_unique_cio_id"),
            models.UniqueConstraint(
                fields=["workspace", "customer_id"],
                name="person_unique_customer_id",
                condition=Q(customer_id__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["workspace", "email_key"],
                name="person_unique_email",
                condition=Q(email_key__isnull=False),
            ),
        ]
        indexes = [
            # Email lookups ignore case (``email__iexact``: UPPER(email) = UPPER(...)).
            models.Index(F("workspace"), Upper("email"), name="person_email_upper_idx"),
            models.Index(fields=["workspace", "-created_at"], name="person_created_idx"),
        ]

    def __str__(self):
        return self.customer_id or self.email or f"cio_{self.cio_id}"

    def get_absolute_url(self):
        return reverse("admin:people_person_change", args=[self.pk])

    @property
    def identifiers(self) -> dict:
        return {"id": self.customer_id, "email": self.email, "cio_id": self.cio_id}


class EventQuerySet(models.QuerySet):
    def in_workspace(self, workspace):
        return self.filter(workspace=workspace)


class Event(models.Model):
    class Type(models.TextChoices):
        EVENT = "event", "Event"
        PAGE = "page", "Page view"
        SCREEN = "screen", "Screen view"

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    # Served by the (person, name, timestamp) index.
    person = models.ForeignKey(
        Person, on_delete=models.CASCADE, null=True, blank=True, related_name="events",
        db_index=False,
    )
    anonymous_id = models.CharField(max_length=150, null=True, blank=True)  # noqa: DJ001 - NULL: not anonymous, indexed only when set
    name = models.CharField(max_length=100)
    type = models.CharField(max_length=8, choices=Type.choices, default=Type.EVENT)
    timestamp = models.DateTimeField()
    data = models.JSONField(default=dict, blank=True)
    dedup_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 - NULL: no event id, unique only when set
    received_at = models.DateTimeField()

    objects = EventQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "dedup_id"],
                name="event_unique_dedup_id",
                condition=Q(dedup_id__isnull=False),
            ),
        ]
        indexes = [
            models.Index(fields=["person", "name", "timestamp"], name="event_person_name_idx"),
            models.Index(fields=["person", "-timestamp"], name="event_person_time_idx"),
            models.Index(fields=["workspace", "-timestamp"], name="event_recent_idx"),
            models.Index(
                fields=["workspace", "anonymous_id"],
                name="event_anonymous_idx",
                condition=Q(anonymous_id__isnull=False),
            ),
        ]

    def __str__(self):
        return self.name


class Device(models.Model):
    class Platform(models.TextChoices):
        IOS = "ios", "iOS"
        ANDROID = "android", "Android"

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="devices")
    token = models.CharField(max_length=255)
    platform = models.CharField(max_length=10, choices=Platform.choices)
    last_used = models.DateTimeField(null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "token"], name="device_unique_token"),
        ]

    def __str__(self):
        return f"{self.platform} {self.token[:12]}"


class SuppressionQuerySet(models.QuerySet):
    def in_workspace(self, workspace):
        return self.filter(workspace=workspace)


class Suppression(models.Model):
    """An identifier that may not be stored again until it is unsuppressed."""

    class IdentifierType(models.TextChoices):
        ID = "id", "ID"
        EMAIL = "email", "Email"

    class Source(models.TextChoices):
        API = "api", "Track API"
        UI = "ui", "People page"
        ADMIN = "admin", "Admin"
        JOB = "job", "Deletion job"
        CAMPAIGN = "campaign", "Campaign"

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    identifier_type = models.CharField(max_length=8, choices=IdentifierType.choices)
    # Emails are kept lowercased: they are case-insensitive identifiers.
    value = models.CharField(max_length=254)
    # The identifiers of one suppressed person share a group, so unsuppressing one of
    # them frees the others too. It is a random token, not personal data.
    group = models.CharField(max_length=32, db_index=True)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)

    objects = SuppressionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "identifier_type", "value"], name="suppression_unique_value"
            ),
        ]
        permissions = [("unsuppress_suppression", "Can unsuppress identifiers")]

    def __str__(self):
        return f"{self.identifier_type}: {self.value}"


class Activity(models.Model):
    """What happened to a person, kept by cio_id so that it outlives the profile."""

    class Kind(models.TextChoices):
        CREATED = "created", "Created"
        ATTRIBUTES_CHANGED = "attributes_changed", "Attributes changed"
        IDENTIFIERS_CHANGED = "identifiers_changed", "Identifiers changed"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        RESUBSCRIBED = "resubscribed", "Resubscribed"
        EVENTS_LINKED = "events_linked", "Anonymous events linked"
        DEVICE_ADDED = "device_added", "Device added"
        DEVICE_REMOVED = "device_removed", "Device removed"
        MERGED = "merged", "Merged"
        UPDATE_FAILED = "update_failed", "Attribute update failure"
        DELETED = "deleted", "Deleted"
        SUPPRESSED = "suppressed", "Deleted and suppressed"
        # What the person did with an email (the first time per message).
        EMAIL_OPENED = "email_opened", "Opened an email"
        EMAIL_CLICKED = "email_clicked", "Clicked a link in an email"
        EMAIL_BOUNCED = "email_bounced", "Email bounced"
        EMAIL_COMPLAINED = "email_complained", "Marked an email as spam"

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    # Null once the person is forgotten (deleted and suppressed).
    cio_id = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001 - NULL: forgotten
    kind = models.CharField(max_length=24, choices=Kind.choices)
    data = models.JSONField(default=dict, blank=True)
    forgotten = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "activities"
        indexes = [
            models.Index(fields=["workspace", "cio_id", "-created_at"], name="activity_person_idx"),
            models.Index(fields=["workspace", "-created_at"], name="activity_recent_idx"),
        ]

    def __str__(self):
        who = "forgotten (anonymous)" if self.forgotten else f"cio_{self.cio_id}"
        return f"{self.get_kind_display()} - {who}"


class DeletionJob(BackgroundJob):
    """A deletion of many people, run in batches in the background."""

    task = "people.tasks.run_deletion_job"
    batch_size = FromSetting("ENGAGE_DELETE_BATCH_SIZE")

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    source = models.CharField(
        max_length=10, choices=Suppression.Source.choices, default=Suppression.Source.UI
    )
    suppress = models.BooleanField(default=False)
    deleted = models.PositiveIntegerField(default=0)
    suppressed = models.PositiveIntegerField(default=0, help_text="Identifiers suppressed.")
    already_gone = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["workspace", "-created_at"], name="deletionjob_recent_idx")]

    def __str__(self):
        return f"Deletion job {self.pk} ({self.state})"


class DeletionJobItem(JobItem):
    job = models.ForeignKey(DeletionJob, on_delete=models.CASCADE, related_name="items")
