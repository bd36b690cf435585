from django.db import models
from django.db.models import Q

from engage.models import BackgroundJob, JobItem, Workspace
from people.models import Person


class SegmentQuerySet(models.QuerySet):
    def in_workspace(self, workspace):
        return self.filter(workspace=workspace)

    def data_driven(self):
        return self.filter(kind=Segment.Kind.DATA_DRIVEN)

    def active(self):
        return self.filter(archived=False)


class Segment(models.Model):
    class Kind(models.TextChoices):
        DATA_DRIVEN = "data_driven", "Data-driven"
        MANUAL = "manual", "Manual"

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="segments", db_index=False
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    conditions = models.JSONField(null=True, blank=True)
    archived = models.BooleanField(default=False)
    # Whether the conditions depend on the current time ("in the last 7 days"), so the
    # segment must be recomputed on a schedule as well as when people change.
    time_relative = models.BooleanField(default=False, editable=False)
    # Segments whose conditions this one's conditions reference.
    depends_on = models.ManyToManyField("self", symmetrical=False, related_name="dependents",
                                        blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    computed_at = models.DateTimeField(null=True, blank=True)

    objects = SegmentQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["workspace", "kind", "archived"], name="segment_kind_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="manual", conditions__isnull=True)
                | Q(kind="data_driven", conditions__isnull=False),
                name="segment_conditions_match_kind",
            ),
        ]

    def __str__(self):
        return self.name

    @property
    def is_manual(self) -> bool:
        return self.kind == self.Kind.MANUAL


class Membership(models.Model):
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships",
                                db_index=False)
    person = models.ForeignKey(Person, on_delete=models.DO_NOTHING,
                               related_name="segment_memberships")
    entered_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["segment", "person"], name="membership_unique"),
        ]

    def __str__(self):
        return f"Person {self.person_id} in segment {self.segment_id}"


class MembershipJob(BackgroundJob):
    """People added to a manual segment or removed from it, in batches in the background."""

    task = "segments.tasks.run_membership_job"
    batch_size = 1000

    class Action(models.TextChoices):
        ADD = "add", "Add"
        REMOVE = "remove", "Remove"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+",
                                  db_index=False)
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="jobs",
                                db_index=False)
    action = models.CharField(max_length=6, choices=Action.choices)
    changed = models.PositiveIntegerField(
        default=0, help_text="People who entered (or left) the segment.")

    class Meta:
        indexes = [models.Index(fields=["segment", "-created_at"], name="membershipjob_recent_idx")]

    def __str__(self):
        return f"Membership job {self.pk} ({self.state})"

    @property
    def adds(self) -> bool:
        return self.action == self.Action.ADD

    @property
    def unchanged(self) -> int:
        """People handled who were members already (or not members, for a removal)."""
        return self.done - self.changed


class MembershipJobItem(JobItem):
    job = models.ForeignKey(MembershipJob, on_delete=models.CASCADE, related_name="items")


class MembershipChange(models.Model):
    """The durable, ordered record of entries and exits that campaigns consume."""

    class Change(models.TextChoices):
        ENTERED = "entered", "Entered"
        EXITED = "exited", "Exited"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+",
                                  db_index=False)
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="+",
                                db_index=False)
    # Not a foreign key: the record outlives the people it mentions.
    person_id = models.BigIntegerField()
    change = models.CharField(max_length=8, choices=Change.choices)
    at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["segment", "id"], name="membershipchange_segment_idx"),
            models.Index(fields=["workspace", "id"], name="membershipchange_ws_idx"),
        ]

    def __str__(self):
        return f"Person {self.person_id} {self.change} segment {self.segment_id}"


class PendingEvaluation(models.Model):
    """A person whose memberships must be re-evaluated (coalesces bursts of changes)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+",
                                  db_index=False)
    person_id = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "person_id"], name="pending_unique"),
        ]

    def __str__(self):
        return f"Person {self.person_id} awaiting evaluation"


class EvaluationTicket(models.Model):
    """When a task to evaluate the workspace's pending people was last queued.

    Empty once that task has started: a change queued from then on queues another. A
    ticket raised long ago while people are still pending means the task was lost (its
    enqueue failed after the ticket was raised): the next change, or the sweeper, queues
    it again.
    """

    workspace = models.OneToOneField(Workspace, on_delete=models.CASCADE, related_name="+")
    queued_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        state = f"queued at {self.queued_at:%Y-%m-%d %H:%M:%S}" if self.queued else "not queued"
        return f"Evaluation ticket of workspace {self.workspace_id}: {state}"

    @property
    def queued(self) -> bool:
        return self.queued_at is not None


class Export(models.Model):
    """A CSV of the people a filter matches, built in the background."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+",
                                  db_index=False)
    filters = models.JSONField()
    description = models.CharField(max_length=300, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    total = models.PositiveIntegerField(default=0)
    downloads = models.PositiveIntegerField(default=0)
    file_name = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["workspace", "-created_at"], name="export_recent_idx")]

    def __str__(self):
        return f"Export {self.pk} ({self.state})"
