import json

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Q
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join

from engage.admin_base import JobAdmin, ReadOnlyAdmin, pretty_json
from engage.models import IdentifierModeChange, Workspace
from people import identifier_mode, services
from people.models import Activity, DeletionJob, Event, Person, Suppression
from people.validation import email_key


@admin.register(Person)
class PersonAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "cio_id", "customer_id", "email", "workspace", "unsubscribed",
                    "created_at"]
    list_filter = ["workspace", "unsubscribed", "created_at"]
    list_select_related = ["workspace"]
    search_fields = ["customer_id"]
    search_help_text = "Exact id, email or cio_id (with or without the cio_ prefix)."
    fields = ["workspace", "cio_id", "customer_id", "email", "unsubscribed", "created_at",
              "updated_at", "attributes_display", "devices_display", "recent_events"]
    readonly_fields = fields
    actions = ["delete_forever", "delete_and_suppress"]

    def get_search_results(self, request, queryset, search_term):
        """Find people by an exact identifier, with lookups the indexes serve."""
        term = search_term.strip()
        if not term:
            return queryset, False
        cio_id = term[4:] if term.startswith("cio_") else term
        condition = Q(customer_id=term) | Q(cio_id=cio_id)
        if "@" in term:
            condition |= Q(email_key=email_key(term)) | Q(email__iexact=term)
        return queryset.filter(condition), False

    @admin.display(description="Attributes")
    def attributes_display(self, person):
        return pretty_json(person.attributes)

    @admin.display(description="Devices")
    def devices_display(self, person):
        devices = person.devices.order_by("-last_used")
        return format_html_join(
            "", "<div>{} {} (last used {})</div>",
            ((d.platform, d.token, d.last_used or "never") for d in devices),
        ) or "-"

    @admin.display(description="Recent events")
    def recent_events(self, person):
        events = person.events.order_by("-timestamp")[:20]
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            ((e.timestamp, e.type, e.name, json.dumps(e.data)[:200]) for e in events),
        )
        if not rows:
            return "-"
        return format_html("<table><tr><th>When</th><th>Type</th><th>Name</th>"
                           "<th>Data</th></tr>{}</table>", rows)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_forget_permission(self, request):
        return request.user.has_perm("people.delete_person")

    @admin.action(description="Delete forever", permissions=["forget"])
    def delete_forever(self, request, queryset):
        return self._delete(request, queryset, suppress=False)

    @admin.action(description="Delete and suppress their identifiers", permissions=["forget"])
    def delete_and_suppress(self, request, queryset):
        return self._delete(request, queryset, suppress=True)

    def _delete(self, request, queryset, *, suppress):
        count = queryset.count()
        if request.POST.get("confirmed") != "yes":
            return TemplateResponse(request, "admin/people/person/delete_confirmation.html", {
                **self.admin_site.each_context(request),
                "title": "Delete and suppress people?" if suppress else "Delete people forever?",
                "opts": self.model._meta,
                "count": count,
                "suppress": suppress,
                "queryset": queryset[:20],
                "action": request.POST.get("action"),
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                "select_across": request.POST.get("select_across", "0"),
                "media": self.media,
            })
        # order_by(): the changelist's ordering (-pk) would otherwise join the DISTINCT
        # and repeat a workspace once per person.
        by_workspace = queryset.order_by().values_list("workspace", flat=True).distinct()
        for workspace in Workspace.objects.filter(pk__in=list(by_workspace)):
            people = queryset.filter(workspace=workspace)
            if people.count() > settings.ENGAGE_SYNC_DELETE_LIMIT:
                job = services.start_deletion_job(
                    workspace, people, suppress=suppress, actor=request.user,
                    source=Suppression.Source.ADMIN,
                    description=f"Admin selection in {workspace.name}",
                )
                self.message_user(
                    request, f"Deletion job {job.pk} started for {job.total} people in "
                    f"{workspace.name}; follow it under Deletion jobs.", messages.INFO)
            else:
                result = services.delete_people(
                    workspace, people, suppress=suppress, actor=request.user,
                    source=Suppression.Source.ADMIN,
                )
                message = f"Deleted {result.deleted} people in {workspace.name}"
                if suppress:
                    message += f" and suppressed {result.suppressed} identifiers"
                self.message_user(request, message + ".", messages.SUCCESS)
        return None


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["name", "type", "person", "anonymous_id", "timestamp", "workspace"]
    list_filter = ["workspace", "type"]
    list_select_related = ["person", "workspace"]
    search_fields = ["=name", "=anonymous_id"]
    readonly_fields = ["workspace", "person", "anonymous_id", "name", "type", "timestamp",
                       "dedup_id", "received_at", "data_display"]
    fields = readonly_fields

    @admin.display(description="Data")
    def data_display(self, event):
        return pretty_json(event.data)


@admin.register(Suppression)
class SuppressionAdmin(ReadOnlyAdmin):
    list_display = ["value", "identifier_type", "workspace", "created_at", "created_by", "source"]
    list_filter = ["workspace", "identifier_type", "source"]
    list_select_related = ["workspace", "created_by"]
    search_fields = ["=value"]
    actions = ["unsuppress"]

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(value=term) | Q(value=email_key(term))), False

    def has_unsuppress_permission(self, request):
        return request.user.has_perm("people.unsuppress_suppression")

    @admin.action(description="Unsuppress (allow these identifiers again)",
                  permissions=["unsuppress"])
    def unsuppress(self, request, queryset):
        freed = 0
        for suppression in queryset.select_related("workspace"):
            freed += services.unsuppress_identifier(
                suppression.workspace, services.Ref(suppression.identifier_type, suppression.value)
            )
        self.message_user(request, f"Unsuppressed {freed} identifiers.", messages.SUCCESS)


@admin.register(Activity)
class ActivityAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "who", "workspace"]
    list_filter = ["workspace", "kind", "forgotten"]
    list_select_related = ["workspace"]
    search_fields = ["=cio_id"]
    readonly_fields = ["workspace", "cio_id", "kind", "forgotten", "created_at", "data_display"]
    fields = readonly_fields

    @admin.display(description="Person")
    def who(self, activity):
        return "forgotten (anonymous)" if activity.forgotten else f"cio_{activity.cio_id}"

    @admin.display(description="Data")
    def data_display(self, activity):
        return pretty_json(activity.data)


@admin.register(DeletionJob)
class DeletionJobAdmin(JobAdmin):
    list_display = ["pk", "workspace", "description", "state", "progress_display", "deleted",
                    "suppressed", "already_gone", "requested_by", "created_at", "finished_at"]
    list_filter = ["workspace", "state", "suppress", "source"]
    list_select_related = ["workspace", "requested_by"]
    retry_permission = "people.delete_person"
    retry_job = staticmethod(services.retry_deletion_job)


@admin.register(IdentifierModeChange)
class IdentifierModeChangeAdmin(JobAdmin):
    list_display = ["pk", "workspace", "mode", "state", "progress_display", "requested_by",
                    "created_at", "finished_at", "error"]
    list_filter = ["workspace", "state", "mode"]
    list_select_related = ["workspace", "requested_by"]
    retry_permission = "engage.change_workspace"

    retry_job = staticmethod(identifier_mode.retry_identifier_mode_change)
