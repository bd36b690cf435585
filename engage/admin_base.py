"""What every app's admin builds on: read-only pages and background jobs with a retry."""

import json

from django.contrib import admin, messages
from django.utils.html import format_html


class ReadOnlyAdmin(admin.ModelAdmin):
    """Support staff look; every change goes through the services, as actions."""

    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def pretty_json(value) -> str:
    return format_html("<pre style='white-space: pre-wrap'>{}</pre>",
                       json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


class JobAdmin(ReadOnlyAdmin):
    """Background jobs (engage.models.BackgroundJob): progress, and retry where they stopped."""

    actions = ["retry"]
    retry_permission = ""  # the permission a user needs to retry, as "app.codename"

    @staticmethod
    def retry_job(job) -> bool | None:
        """Run the job again where it stopped; False if it may not be retried now."""
        raise NotImplementedError

    @admin.display(description="Progress")
    def progress_display(self, job):
        return f"{job.done} / {job.total} ({job.progress}%)"

    def has_retry_permission(self, request):
        return request.user.has_perm(self.retry_permission)

    @admin.action(description="Retry (continue where it stopped)", permissions=["retry"])
    def retry(self, request, queryset):
        jobs = list(queryset.exclude(state=self.model.State.DONE))
        retried = [job for job in jobs if self.retry_job(job) is not False]
        self.message_user(request, f"Retrying {len(retried)} jobs.", messages.SUCCESS)
        if len(retried) < len(jobs):
            self.message_user(request, f"Left {len(jobs) - len(retried)} alone: a later job "
                                       "superseded them or another is running.",
                              messages.WARNING)
