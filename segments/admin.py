"""Segments and their background work, as support staff see them in the Django admin.

Read-only, like the people admin: a segment changes through the marketers' pages or the
services, and the only actions here (recompute, archive, retry a job) call the services.
"""

from django.contrib import admin, messages

from engage.admin_base import JobAdmin, ReadOnlyAdmin, pretty_json
from segments import operations, services
from segments.models import MembershipJob, Segment


@admin.register(Segment)
class SegmentAdmin(ReadOnlyAdmin):
    list_display = ["name", "workspace", "kind", "members", "archived", "computed_at",
                    "updated_at"]
    list_filter = ["workspace", "kind", "archived"]
    list_select_related = ["workspace"]
    search_fields = ["name"]
    fields = ["workspace", "name", "description", "kind", "archived", "time_relative",
              "created_at", "updated_at", "computed_at", "members", "conditions_display"]
    readonly_fields = fields
    actions = ["recompute", "archive", "unarchive"]

    def get_queryset(self, request):
        return operations.with_member_counts(super().get_queryset(request))

    @admin.display(description="Members", ordering="member_count")
    def members(self, segment):
        if segment.member_count > operations.MEMBER_COUNT_CAP:
            return f"more than {operations.MEMBER_COUNT_CAP:,}"
        return f"{segment.member_count:,}"

    @admin.display(description="Conditions")
    def conditions_display(self, segment):
        if segment.conditions is None:
            return "- (manual: members are added and removed by hand or through the API)"
        return pretty_json(segment.conditions)

    def has_manage_permission(self, request):
        return request.user.has_perm("segments.change_segment")

    @admin.action(description="Recompute membership now", permissions=["manage"])
    def recompute(self, request, queryset):
        live = list(queryset.filter(kind=Segment.Kind.DATA_DRIVEN, archived=False)
                    .values_list("pk", flat=True))
        for pk in live:
            services.enqueue_recompute(pk)
        skipped = queryset.count() - len(live)
        message = f"Queued a recompute of {len(live)} segments."
        if skipped:
            message += f" Skipped {skipped}: manual or archived segments are not computed."
        self.message_user(request, message, messages.SUCCESS)

    @admin.action(description="Archive (membership stops changing)", permissions=["manage"])
    def archive(self, request, queryset):
        self._set_archived(request, queryset, archived=True)

    @admin.action(description="Unarchive", permissions=["manage"])
    def unarchive(self, request, queryset):
        self._set_archived(request, queryset, archived=False)

    def _set_archived(self, request, queryset, *, archived):
        changed = [services.set_archived(segment, archived)
                   for segment in queryset.exclude(archived=archived)]
        verb = "Archived" if archived else "Unarchived"
        self.message_user(request, f"{verb} {len(changed)} segments.", messages.SUCCESS)


@admin.register(MembershipJob)
class MembershipJobAdmin(JobAdmin):
    list_display = ["pk", "segment", "action", "workspace", "state", "progress_display",
                    "changed", "requested_by", "created_at", "finished_at"]
    list_filter = ["workspace", "state", "action"]
    list_select_related = ["workspace", "segment", "requested_by"]
    retry_permission = "segments.change_segment"
    retry_job = staticmethod(operations.retry_membership_job)
