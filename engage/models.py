from typing import ClassVar

from django.conf import settings
from django.db import models

from engage.keys import key_matches


class WorkspaceQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(memberships__user=user)


class Workspace(models.Model):
    class IdentifierMode(models.TextChoices):
        ID = "id", "ID only"
        EMAIL_OR_ID = "email_or_id", "Email or ID"

    name = models.CharField(max_length=200)
    site_id = models.CharField(max_length=40, unique=True, editable=False)
    track_key_prefix = models.CharField(max_length=16, editable=False)
    track_key_hash = models.CharField(max_length=64, editable=False)
    app_key_prefix = models.CharField(max_length=16, editable=False)
    app_key_hash = models.CharField(max_length=64, unique=True, editable=False)
    identifier_mode = models.CharField(
        max_length=16, choices=IdentifierMode.choices, default=IdentifierMode.EMAIL_OR_ID
    )
    allow_email_update_by_id = models.BooleanField(
        default=False,
        help_text="Let an identify addressed by id change the person's email.",
    )
    timezone = models.CharField(max_length=64, default="UTC")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = WorkspaceQuerySet.as_manager()

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self):
        return self.name

    @property
    def email_is_identifier(self) -> bool:
        return self.identifier_mode == self.IdentifierMode.EMAIL_OR_ID

    def check_track_key(self, key: str) -> bool:
        return key_matches(key, self.track_key_hash)


class Membership(models.Model):
    class Role(models.TextChoices):
        VIEWER = "viewer", "Viewer"
        EDITOR = "editor", "Editor"
        ADMIN = "admin", "Admin"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "workspace"], name="membership_unique_user"),
        ]

    def __str__(self):
        return f"{self.user} in {self.workspace} ({self.role})"

    @property
    def can_edit(self) -> bool:
        return self.role in {self.Role.EDITOR, self.Role.ADMIN}

    @property
    def is_admin(self) -> bool:
        return self.role == self.Role.ADMIN


class FromSetting:
    """A class attribute read from a Django setting each time it is used, so it can be tuned."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, instance, owner):
        return getattr(settings, self.name)


class BackgroundJob(models.Model):
    """Work over many people, done in batches by a worker, with progress a page can show.

    A job's batches each commit with their counts, so a job whose worker died resumes from
    where it stopped and counts nothing twice.

    A kind of job is a concrete subclass that declares ``task`` (and, where the defaults
    do not fit, ``batch_size`` and ``walks``); ``engage.jobs`` starts, runs, retries and
    resumes every kind from these alone. A kind that snapshots its people also has a
    ``JobItem`` subclass whose ``job`` foreign key is named ``items`` in reverse.
    """

    #: The django-q2 task (dotted path) that runs a job of this kind, given the job's id.
    task: ClassVar[str]
    #: People handled per batch, in one transaction.
    batch_size: ClassVar[int] = 1000
    #: Walk the people as they are when each batch runs, in primary-key order from
    #: ``cursor``, instead of taking a snapshot of them into ``items`` at the start.
    walks: ClassVar[bool] = False
    # What a walking job's ``walk`` yields and its cursor follows: the people's primary
    # key, or another query's column holding them (each person once, in its order).
    walk_key: ClassVar[str] = "pk"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    description = models.CharField(
        max_length=300, help_text="Which people, in words free of personal data."
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()
    # The worker running the job holds it until then, renewed with every batch; once the
    # lease lapses the worker is taken for dead and the job is handed out again.
    leased_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=32, blank=True)

    class Meta:
        abstract = True

    @property
    def progress(self) -> int:
        """Return how far the job is, in percent."""
        if not self.total:
            return 100 if self.state == self.State.DONE else 0
        return min(100, self.done * 100 // self.total)

    @property
    def is_finished(self) -> bool:
        return self.state in {self.State.DONE, self.State.FAILED}


class JobItem(models.Model):
    """One person of a job's confirmed set; removed once that person is handled.

    A subclass adds ``job = models.ForeignKey(<kind>, on_delete=models.CASCADE,
    related_name="items")``.
    """

    person_pk = models.BigIntegerField()

    class Meta:
        abstract = True
        constraints = [
            models.UniqueConstraint(fields=["job", "person_pk"], name="%(class)s_unique"),
        ]


class IdentifierModeChange(BackgroundJob):
    """A workspace's switch of identifier mode, carried out over its people in batches.

    To Email or ID: every person's email key (the lowercased email) is filled, then the
    mode switches, provided no two people share an email by then. To ID only: the mode
    switches at once and the email keys are cleared after.
    """

    task = "people.tasks.run_identifier_mode_change"
    batch_size = 2000
    walks = True

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE,
                                  related_name="identifier_mode_changes", db_index=False)
    mode = models.CharField(max_length=16, choices=Workspace.IdentifierMode.choices)
    cursor = models.BigIntegerField(
        default=0, help_text="The last person (primary key) handled: batches walk on from it.")

    class Meta:
        indexes = [models.Index(fields=["workspace", "-created_at"],
                                name="modechange_recent_idx")]

    def __str__(self):
        return f"Identifier mode change {self.pk} to {self.mode} ({self.state})"
