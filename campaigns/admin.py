"""Campaigns, journeys and deliveries as support staff see them in the Django admin.

Read-only, like the people and segments admin: a campaign changes through the marketers'
pages, the App API or the services, and the only actions here (stop, archive, unarchive)
call the lifecycle services.
"""

from django import forms
from django.contrib import admin, messages
from django.db.models import Q

from campaigns import bounces, broadcasts, services, transactional
from campaigns.models import (
    BroadcastTrigger,
    Campaign,
    CampaignEntryJob,
    Delivery,
    EmailSuppression,
    Journey,
    JourneyStep,
    TransactionalMessage,
)
from engage import jobs
from engage.admin_base import JobAdmin, ReadOnlyAdmin, pretty_json


def _by_cio_id(queryset, search_term):
    """Find rows by an exact cio_id, with or without its ``cio_`` prefix."""
    term = search_term.strip()
    if not term:
        return queryset, False
    return queryset.filter(cio_id=term.removeprefix("cio_")), False


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyAdmin):
    list_display = ["name", "workspace", "state", "trigger", "version", "first_started_at",
                    "updated_at"]
    list_filter = ["workspace", "state", "trigger"]
    list_select_related = ["workspace"]
    search_fields = ["name"]
    fields = ["workspace", "name", "description", "tags", "state", "trigger", "version",
              "created_at", "updated_at", "first_started_at", "started_at", "stopped_at",
              "definition_display"]
    readonly_fields = fields
    actions = ["stop", "stop_letting_finish", "archive", "unarchive"]

    @admin.display(description="Definition")
    def definition_display(self, campaign):
        return pretty_json(campaign.definition)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_manage_permission(self, request):
        return request.user.has_perm("campaigns.change_campaign")

    @admin.action(description="Stop (everyone in them exits now)", permissions=["manage"])
    def stop(self, request, queryset):
        self._stop(request, queryset, journeys="exit")

    @admin.action(description="Stop (let the people in them finish)", permissions=["manage"])
    def stop_letting_finish(self, request, queryset):
        self._stop(request, queryset, journeys="finish")

    def _stop(self, request, queryset, *, journeys):
        running = queryset.filter(state__in=[Campaign.State.RUNNING, Campaign.State.STOPPING])
        stopped = [services.stop_campaign(campaign, journeys=journeys) for campaign in running]
        self._report(request, "Stopped", len(stopped), queryset.count() - len(stopped),
                     "they are not running")

    @admin.action(description="Archive (everyone exits, unsent drafts go)",
                  permissions=["manage"])
    def archive(self, request, queryset):
        live = queryset.exclude(state=Campaign.State.ARCHIVED)
        archived = [services.archive_campaign(campaign) for campaign in live]
        self._report(request, "Archived", len(archived), queryset.count() - len(archived),
                     "already archived")

    @admin.action(description="Unarchive (back as stopped)", permissions=["manage"])
    def unarchive(self, request, queryset):
        archived = queryset.filter(state=Campaign.State.ARCHIVED)
        back = [services.unarchive_campaign(campaign) for campaign in archived]
        self._report(request, "Unarchived", len(back), queryset.count() - len(back),
                     "they are not archived")

    def _report(self, request, verb, done, skipped, why):
        self.message_user(request, f"{verb} {done} campaigns.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Left {skipped} alone: {why}.", messages.WARNING)


class JourneyStepInline(admin.TabularInline):
    model = JourneyStep
    fields = ["seq", "step_id", "step_type", "outcome", "data", "created_at"]
    readonly_fields = fields
    ordering = ["seq"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Journey)
class JourneyAdmin(ReadOnlyAdmin):
    list_display = ["pk", "campaign", "who", "state", "step_id", "exit_reason", "entered_at",
                    "ended_at", "workspace"]
    list_filter = ["workspace", "state"]
    list_select_related = ["campaign", "workspace"]
    search_fields = ["=cio_id"]
    search_help_text = "Exact cio_id (with or without the cio_ prefix)."
    fields = ["workspace", "campaign", "person", "cio_id", "entry_key", "state",
              "exit_reason", "step_id", "step_data_display", "seq", "next_run_at",
              "lease_until", "context_display", "entered_at", "ended_at", "converted_at"]
    readonly_fields = fields
    inlines = [JourneyStepInline]

    def get_search_results(self, request, queryset, search_term):
        return _by_cio_id(queryset, search_term)

    @admin.display(description="Person")
    def who(self, journey):
        return f"cio_{journey.cio_id}" if journey.cio_id else "forgotten (anonymous)"

    @admin.display(description="Step data")
    def step_data_display(self, journey):
        return pretty_json(journey.step_data)

    @admin.display(description="Trigger data")
    def context_display(self, journey):
        return pretty_json(journey.context)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["pk", "kind", "campaign", "step_id", "state", "recipient", "attempts",
                    "created_at", "sent_at", "workspace"]
    list_filter = ["workspace", "kind", "state"]
    list_select_related = ["campaign", "workspace"]
    search_fields = ["=cio_id", "=recipient"]
    search_help_text = "Exact cio_id (with or without the cio_ prefix) or recipient."
    fields = ["workspace", "campaign", "journey", "journey_seq", "step_id", "kind", "state",
              "cio_id", "recipient", "reason", "attempts", "next_attempt_at", "created_at",
              "sent_at", "opened_at", "clicked_at", "converted_at", "bounced_at",
              "unsubscribed_at", "payload_display"]
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(cio_id=term.removeprefix("cio_")) | Q(recipient=term)), False

    @admin.display(description="Payload")
    def payload_display(self, delivery):
        return pretty_json(delivery.payload)


@admin.register(EmailSuppression)
class EmailSuppressionAdmin(ReadOnlyAdmin):
    """The addresses each workspace sends no email to; removed through the service."""

    list_display = ["address", "reason", "workspace", "created_at", "created_by"]
    list_filter = ["workspace", "reason"]
    list_select_related = ["workspace", "created_by"]
    search_fields = ["=address"]
    search_help_text = "Exact address (folded as stored)."
    fields = ["workspace", "address", "reason", "created_at", "created_by"]
    readonly_fields = fields
    actions = ["unsuppress"]

    def get_search_results(self, request, queryset, search_term):
        from people.validation import email_key

        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(address=email_key(term)), False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_unsuppress_permission(self, request):
        return request.user.has_perm("campaigns.delete_emailsuppression")

    @admin.action(description="Remove from the suppression list (email may go again)",
                  permissions=["unsuppress"])
    def unsuppress(self, request, queryset):
        count = 0
        for suppression in queryset[:1000]:
            bounces.unsuppress_address(suppression)
            count += 1
        self.message_user(request, f"{count} addresses may receive email again.",
                          messages.SUCCESS)
class TransactionalMessageForm(forms.ModelForm):
    TEMPLATES = ("from_address", "to", "reply_to", "subject", "body_html", "body_text")

    class Meta:
        model = TransactionalMessage
        fields = ["workspace", "name", "from_address", "to", "reply_to", "subject",
                  "body_html", "body_text", "tracking", "send_to_unsubscribed", "queue_draft"]

    def clean(self):
        cleaned = super().clean()
        for problem in transactional.template_problems(
                {name: cleaned.get(name) for name in self.TEMPLATES}):
            self.add_error(problem.field, problem.message)
        return cleaned


@admin.register(TransactionalMessage)
class TransactionalMessageAdmin(admin.ModelAdmin):
    """Transactional messages are written here (the App API only sends them)."""

    form = TransactionalMessageForm

    list_display = ["pk", "name", "workspace", "subject", "queue_draft", "updated_at"]
    list_filter = ["workspace", "queue_draft"]
    list_select_related = ["workspace"]
    search_fields = ["name"]
    fields = ["workspace", "name", "from_address", "to", "reply_to", "subject", "body_html",
              "body_text", "tracking", "send_to_unsubscribed", "queue_draft", "created_at",
              "updated_at"]
    readonly_fields = ["created_at", "updated_at"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        # A message stays in its workspace: its deliveries and their metrics are there.
        return [*self.readonly_fields, "workspace"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        transactional.save_message(obj)


@admin.register(BroadcastTrigger)
class BroadcastTriggerAdmin(JobAdmin):
    list_display = ["pk", "campaign", "workspace", "audience", "state", "progress_display",
                    "entered", "skipped", "created_at", "finished_at"]
    list_filter = ["workspace", "state"]
    list_select_related = ["campaign", "workspace"]
    fields = ["workspace", "campaign", "description", "audience", "state", "total", "done",
              "entered", "skipped", "error", "errors_display", "data_display",
              "recipients_filter", "created_at", "started_at", "finished_at"]
    readonly_fields = fields
    retry_permission = "campaigns.change_campaign"
    retry_job = staticmethod(broadcasts.retry_trigger)

    @admin.display(description="Errors")
    def errors_display(self, trigger):
        return pretty_json(trigger.errors)

    @admin.display(description="Trigger data")
    def data_display(self, trigger):
        return pretty_json(trigger.data)


@admin.register(CampaignEntryJob)
class CampaignEntryJobAdmin(JobAdmin):
    """Entering the people who matched a campaign when it started, batch by batch."""

    list_display = ["pk", "campaign", "workspace", "state", "progress_display", "entered",
                    "created_at", "finished_at"]
    list_filter = ["workspace", "state"]
    list_select_related = ["campaign", "workspace"]
    fields = ["workspace", "campaign", "description", "state", "total", "done", "entered",
              "cursor", "error", "created_at", "started_at", "finished_at"]
    readonly_fields = fields
    retry_permission = "campaigns.change_campaign"
    retry_job = staticmethod(jobs.retry)
