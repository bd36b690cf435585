"""Campaigns, the journeys of people through them, the journey step log and deliveries.

A campaign keeps its definition (``campaigns.definition``) as one JSON document. A
journey is one person's way through one campaign, entered once per entry key. The
journey step log is append-only: one row per step a journey took, unique per (journey,
sequence number), written in the same transaction as the step's effect, so a replayed
step finds its row and does nothing. A delivery is the outbox row of a message or
webhook step, unique per journey step.
"""

from django.conf import settings
from django.db import connection, models
from django.db.models import Q

from engage.models import BackgroundJob, JobItem, Workspace
from engage.sql import in_ids, select_models
from people.models import Person


class CampaignQuerySet(models.QuerySet):
    def in_workspace(self, workspace):
        return self.filter(workspace=workspace)

    def active(self):
        return self.exclude(state=Campaign.State.ARCHIVED)

    def entering(self):
        """Campaigns that people may enter now."""
        return self.filter(state=Campaign.State.RUNNING)


class Campaign(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        RUNNING = "running", "Running"
        STOPPING = "stopping", "Stopping"  # nobody enters; journeys in it finish
        STOPPED = "stopped", "Stopped"
        ARCHIVED = "archived", "Archived"

    class Trigger(models.TextChoices):
        SEGMENTS = "segments", "They meet conditions"
        EVENT = "event", "They perform an event"
        DATE = "date", "A particular date"
        FORM = "form", "They fill out a form"
        WEBHOOK = "webhook", "Data arrives via webhook"
        API = "api", "API-triggered broadcast"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="campaigns",
                                  db_index=False)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.DRAFT)
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    # What finds a campaign for what just happened, without reading every definition.
    trigger_event = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 - NULL: no event trigger
    trigger_form = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001 - NULL: no form trigger
    # The secret of a webhook-triggered campaign's URL (campaigns.triggers); NULL otherwise.
    webhook_token = models.CharField(max_length=64, null=True, blank=True, unique=True)  # noqa: DJ001 - NULL: no URL
    definition = models.JSONField()
    # Segments trigger: how far the membership log has been read (segment id -> last log
    # id, ``segments.log.read_changes``'s cursor).
    log_cursor = models.JSONField(default=dict, blank=True)
    # A goal of entering or leaving a segment: how far that segment's log has been read.
    goal_cursor = models.JSONField(default=dict, blank=True)
    # Raised by every saved edit: an edit made against an older version is refused, so
    # two editors never overwrite each other silently.
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    # A start scheduled for later, and the audience it starts with.
    starts_at = models.DateTimeField(null=True, blank=True)
    start_audience = models.CharField(max_length=20, blank=True)
    first_started_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    objects = CampaignQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["workspace", "state"], name="campaign_state_idx"),
            models.Index(fields=["workspace", "trigger_event"], name="campaign_event_idx",
                         condition=Q(trigger_event__isnull=False)),
        ]

    def __str__(self):
        return self.name


def load_campaigns(ids) -> dict[int, "Campaign"]:
    """Return the campaigns ``ids`` by id, each with its workspace, in two fixed
    statements: one instance per campaign, for all the rows of a batch to share (a join
    would build, and parse the definition of, one per row)."""
    campaigns = {c.pk: c for c in select_models(Campaign, *in_ids("id", sorted(set(ids))))}
    workspaces = {w.pk: w for w in select_models(
        Workspace, *in_ids("id", sorted({c.workspace_id for c in campaigns.values()})))}
    for campaign in campaigns.values():
        Campaign.workspace.field.set_cached_value(campaign, workspaces[campaign.workspace_id])
    return campaigns


def settle_stopping(ids) -> int:
    """Mark stopped every campaign of ``ids`` that is stopping and has no active journey
    left, in one fixed statement (the journey engine asks after every batch); return how
    many were."""
    where, params = in_ids("id", sorted(set(ids)))
    campaign, journey = Campaign._meta.db_table, Journey._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {campaign} SET state = %s WHERE {where} AND state = %s AND NOT EXISTS "
            f"(SELECT 1 FROM {journey} j WHERE j.campaign_id = {campaign}.id "
            "AND j.state = %s)",
            [Campaign.State.STOPPED, *params, Campaign.State.STOPPING, Journey.State.ACTIVE])
        return cursor.rowcount


class JourneyQuerySet(models.QuerySet):
    def in_workspace(self, workspace):
        return self.filter(workspace=workspace)

    def active(self):
        return self.filter(state=Journey.State.ACTIVE)


class Journey(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        FINISHED = "finished", "Finished"  # reached the end of the workflow
        EXITED = "exited", "Exited"  # left early: exit rule, stop, archive, deletion

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+",
                                  db_index=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="journeys",
                                 db_index=False)
    # NULL once the person is deleted (their journeys end in the same transaction), and
    # for data campaigns, whose journeys follow data rather than a person.
    person = models.ForeignKey(Person, on_delete=models.DO_NOTHING, null=True, blank=True,
                               related_name="+", db_index=False)
    # Kept for metrics after a deletion; removed when the person is suppressed.
    cio_id = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001 - NULL: forgotten
    # What entered the journey: a membership log entry, an event id, a date occurrence, a
    # form submission. Unique per campaign, so a replayed trigger never starts a second
    # journey.
    entry_key = models.CharField(max_length=200)
    state = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    exit_reason = models.CharField(max_length=40, blank=True)
    # The step the journey is at (a step id of the definition); empty before the first.
    step_id = models.CharField(max_length=64, blank=True)
    # What the current step keeps while the journey is at it: a delay's end, a wait's
    # deadline, the delivery a webhook step waits for. Emptied when the journey moves on.
    step_data = models.JSONField(default=dict, blank=True)
    # Step log rows written so far; the next row is number ``seq + 1``.
    seq = models.PositiveIntegerField(default=0)
    # When the journey is next due; NULL while it waits for something else (a delivery).
    next_run_at = models.DateTimeField(null=True, blank=True)
    # A worker that claimed the journey holds it until then; a dead worker's claim lapses.
    lease_until = models.DateTimeField(null=True, blank=True)
    # The trigger's data: the event (name, id, data), the webhook's or broadcast's JSON.
    context = models.JSONField(default=dict, blank=True)
    entered_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)

    objects = JourneyQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "entry_key"], name="journey_entry_unique"),
        ]
        indexes = [
            models.Index(fields=["campaign", "state"], name="journey_campaign_state_idx"),
            models.Index(fields=["next_run_at"], name="journey_due_idx",
                         condition=Q(state="active", next_run_at__isnull=False)),
            models.Index(fields=["person", "campaign"], name="journey_person_idx",
                         condition=Q(person__isnull=False)),
        ]

    def __str__(self):
        return f"{self.campaign_id}:{self.entry_key}"


class JourneyStep(models.Model):
    """One step a journey took: append-only, unique per (journey, sequence number)."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="steps",
                                db_index=False)
    seq = models.PositiveIntegerField()
    step_id = models.CharField(max_length=64)
    step_type = models.CharField(max_length=24)
    # What happened: "done", "path:<key>", "waiting", "delivery", "exited", "skipped"...
    outcome = models.CharField(max_length=80)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["journey", "seq"], name="journeystep_seq_unique"),
        ]

    def __str__(self):
        return f"{self.journey_id}#{self.seq} {self.step_id} {self.outcome}"


class RenderedMessageId(models.Func):
    """A delivery's ``payload["rendered"]["message_id"]`` as text: its index and the
    lookups that use it (ESP reports about a message) share this one expression."""

    output_field = models.TextField()

    def __init__(self, expression="payload", **extra):
        super().__init__(expression, **extra)

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection,
                           template="((%(expressions)s -> 'rendered') ->> 'message_id')", **extra)

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection,
                           template="json_extract(%(expressions)s, '$.rendered.message_id')",
                           **extra)


class Delivery(models.Model):
    """The outbox row of one message or webhook step of one journey."""

    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        DRAFTED = "drafted", "Drafted"  # waits for an editor to send or discard it
        SENDING = "sending", "Sending"  # claimed; its fate after a crash is unknown
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        UNKNOWN = "unknown", "Unknown"  # accepted or not: never resent on plain SMTP
        SKIPPED = "skipped", "Skipped"  # unsubscribed, suppressed address, sending off
        DISCARDED = "discarded", "Discarded"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+",
                                  db_index=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="deliveries", db_index=False)
    journey = models.ForeignKey(Journey, on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="deliveries", db_index=False)
    # The journey step that made it (with ``journey``, unique), kept after the journey goes.
    journey_seq = models.PositiveIntegerField()
    step_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    # Kept for metrics after a deletion; removed (with the recipient) on suppression.
    cio_id = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001 - NULL: forgotten
    recipient = models.CharField(max_length=500, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    # A transactional send (``POST /v1/send/email``): the message it used, if any, and the
    # request's Idempotency-Key, so that a retried request finds this delivery again.
    transactional_message = models.ForeignKey(
        "TransactionalMessage", on_delete=models.SET_NULL, null=True, blank=True,
        related_name="deliveries", db_index=False)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 - NULL: none given

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["journey", "journey_seq"],
                                    name="delivery_journey_step_unique"),
            models.UniqueConstraint(fields=["workspace", "idempotency_key"],
                                    condition=Q(idempotency_key__isnull=False),
                                    name="delivery_idempotency_unique"),
        ]
        indexes = [
            models.Index(fields=["campaign", "step_id", "state"], name="delivery_step_idx"),
            models.Index(fields=["next_attempt_at"], name="delivery_due_idx",
                         condition=Q(state="queued")),
            # Engagement conditions read a person's deliveries (campaigns.engagement).
            models.Index(fields=["workspace", "cio_id"], name="delivery_person_idx",
                         condition=Q(cio_id__isnull=False)),
            # ESP events name the message they are about (campaigns.bounces).
            models.Index(RenderedMessageId(), name="delivery_message_id_idx"),
            models.Index(fields=["transactional_message"], name="delivery_transactional_idx",
                         condition=Q(transactional_message__isnull=False)),
            # Webhooks cut off while sending (a dead worker), found when their lease lapses.
            models.Index(fields=["next_attempt_at"], name="delivery_webhook_lease_idx",
                         condition=Q(state="sending", kind="webhook")),
            # Emails being sent, by the end of their claim's lease (campaigns.email).
            models.Index(fields=["next_attempt_at"], name="delivery_email_lease_idx",
                         condition=Q(state="sending", kind="email")),
        ]

    def __str__(self):
        return f"{self.kind} {self.step_id} ({self.state})"


class TransactionalMessage(models.Model):
    """A transactional email's content, sent one person at a time by ``POST /v1/send/email``.

    Its fields are Liquid templates (``{{customer.*}}``, ``{{trigger.*}}`` for the request's
    ``message_data``); a send request may override any of them.
    """

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE,
                                  related_name="transactional_messages", db_index=False)
    # Customer.io's "Trigger Name": a send may name the message by it instead of its id.
    name = models.CharField(max_length=255)
    from_address = models.CharField("from", max_length=500)
    to = models.CharField(max_length=500, default="{{customer.email}}")
    reply_to = models.CharField(max_length=500, blank=True)
    subject = models.CharField(max_length=998)
    body_html = models.TextField()
    body_text = models.TextField(blank=True)
    tracking = models.BooleanField(default=True, help_text="Track opens and clicks.")
    send_to_unsubscribed = models.BooleanField(default=True)
    queue_draft = models.BooleanField(
        default=False, help_text="Keep each message as a draft until an editor sends it.")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"],
                                    name="transactional_name_unique"),
        ]

    def __str__(self):
        return self.name


class BroadcastTrigger(BackgroundJob):
    """One ``POST /v1/campaigns/{id}/triggers`` of an API-triggered broadcast.

    Its recipients are fixed when it is made (``items``, with each person's own data) and
    entered into the campaign in batches, each journey keyed by the trigger and the
    person, so a retried batch enters nobody twice.
    """

    task = "campaigns.tasks.run_broadcast_trigger"
    batch_size = 1000

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+",
                                  db_index=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE,
                                 related_name="broadcast_triggers", db_index=False)
    # ``{{trigger.*}}`` for everyone; a recipient's own data is merged over it.
    data = models.JSONField(default=dict, blank=True)
    # How the recipients were chosen: "recipients" (with ``recipients_filter``), "ids",
    # "emails", "per_user_data" or "audience" (the campaign's own).
    audience = models.CharField(max_length=16)
    recipients_filter = models.JSONField(null=True, blank=True)
    entered = models.PositiveIntegerField(default=0, help_text="Journeys started.")
    # Recipients not entered: gone since, already entered by this trigger.
    skipped = models.PositiveIntegerField(default=0)
    # What the request named that could not be used: ids or emails nobody has.
    errors = models.JSONField(default=list, blank=True)

    class Meta:
        indexes = [models.Index(fields=["campaign", "-created_at"],
                                name="broadcast_trigger_recent_idx")]

    def __str__(self):
        return f"Broadcast trigger {self.pk} of campaign {self.campaign_id} ({self.state})"


class BroadcastTriggerItem(JobItem):
    job = models.ForeignKey(BroadcastTrigger, on_delete=models.CASCADE, related_name="items")
    # The recipient's own ``per_user_data`` data, merged over the trigger's.
    data = models.JSONField(null=True, blank=True)


class CampaignEntryJob(BackgroundJob):
    """Entering the people who match a segment-triggered campaign when it starts
    ("current people and future additions"), in batches, by a worker.

    It walks the members of the trigger's segments in the order of their people's primary
    keys (``cursor``), so a start that its process did not live to finish goes on where it
    stopped: nobody who matched is lost, and the entry keys enter nobody twice.
    """

    task = "campaigns.tasks.run_campaign_entry"
    batch_size = 10_000
    walks = True
    walk_key = "person_id"  # the walk reads segment memberships, by their unique index

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+",
                                  db_index=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE,
                                 related_name="entry_jobs")
    entered = models.PositiveIntegerField(default=0, help_text="Journeys started.")
    cursor = models.BigIntegerField(
        default=0, help_text="The last person (primary key) handled: batches walk on from it.")

    def __str__(self):
        return f"Entry job {self.pk} of campaign {self.campaign_id} ({self.state})"


class DateTriggerScan(models.Model):
    """How far the scan of a date-triggered campaign has come (``campaigns.date_triggers``).

    Occurrences firing up to ``scanned_until`` have been entered. A window being scanned
    (``scanned_until``, ``window_end``] keeps the last person id done in ``cursor``, so a
    scan cut short goes on where it stopped; ``lease_until`` keeps overlapping scans off it.
    """

    campaign = models.OneToOneField(Campaign, on_delete=models.CASCADE, primary_key=True,
                                    related_name="+")
    scanned_until = models.DateTimeField()
    window_end = models.DateTimeField(null=True, blank=True)
    cursor = models.BigIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.campaign_id} until {self.scanned_until}"


class PendingEntry(models.Model):
    """An event owed to an event-triggered campaign: entered, retried or given up.

    Written when the event is announced, before the task that enters it is queued, so
    a failed enqueue or a dead worker loses nothing: a sweeper takes rows that are due.
    A person who does not match the campaign's filters yet is retried until ``deadline``.
    """

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+",
                                  db_index=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+",
                                 db_index=False)
    # No foreign key: deleting people removes their events in bulk; a row whose event is
    # gone is dropped when it is next tried.
    event_id = models.BigIntegerField()
    next_try_at = models.DateTimeField()
    deadline = models.DateTimeField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "event_id"], name="pending_entry_unique"),
        ]
        indexes = [models.Index(fields=["next_try_at"], name="pending_entry_due_idx")]

    def __str__(self):
        return f"{self.campaign_id}:{self.event_id}"


class EmailSuppressionQuerySet(models.QuerySet):
    def in_workspace(self, workspace):
        return self.filter(workspace=workspace)


class EmailSuppression(models.Model):
    """An address the workspace sends no email to: it bounced, complained, or was added.

    Kept apart from the people's suppression list (identifiers never stored again): this
    one only stops email to an address, as an ESP's suppression list does.
    """

    class Reason(models.TextChoices):
        BOUNCE = "bounce", "Hard bounce"
        COMPLAINT = "complaint", "Spam complaint"
        MANUAL = "manual", "Added by hand"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+",
                                  db_index=False)
    # Folded with people.validation.email_key, as every email key is.
    address = models.CharField(max_length=500)
    reason = models.CharField(max_length=10, choices=Reason.choices)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                   null=True, blank=True, related_name="+")

    objects = EmailSuppressionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "address"],
                                    name="emailsuppression_unique"),
        ]

    def __str__(self):
        return f"{self.address} ({self.reason})"
