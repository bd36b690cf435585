from django.contrib import admin, messages

from engage import services
from engage.models import Membership, Workspace


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["name", "site_id", "identifier_mode", "timezone", "track_key_prefix",
                    "app_key_prefix", "created_at"]
    search_fields = ["name", "site_id"]
    readonly_fields = ["site_id", "track_key_prefix", "app_key_prefix", "created_at"]
    fields = ["name", "identifier_mode", "allow_email_update_by_id", "timezone", "site_id",
              "track_key_prefix", "app_key_prefix", "created_at"]
    inlines = [MembershipInline]
    actions = ["regenerate_track_key", "regenerate_app_key"]

    def get_readonly_fields(self, request, obj=None):
        # Switching the identifier mode must check for duplicate emails and fill their
        # keys: it is done on the Settings page (people.identifier_mode).
        if obj is not None:
            return [*self.readonly_fields, "identifier_mode"]
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        # Deleting a workspace would bypass the people services; it is not offered here.
        return False

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        workspace, credentials = services.create_workspace(
            name=obj.name, identifier_mode=obj.identifier_mode, timezone=obj.timezone
        )
        if obj.allow_email_update_by_id:  # not a create_workspace option: keep the form's value
            workspace.allow_email_update_by_id = True
            workspace.save(update_fields=["allow_email_update_by_id"])
        obj.pk = workspace.pk
        obj.__dict__.update(workspace.__dict__)
        self.message_user(
            request,
            f"Workspace created. Site ID {credentials.site_id}, Track API key "
            f"{credentials.track_api_key}, App API key {credentials.app_api_key}. "
            "Copy the keys now: they are not shown again.",
            messages.WARNING,
        )

    def _regenerate(self, request, queryset, kind):
        for workspace in queryset:
            key = services.regenerate_api_key(workspace, kind=kind)
            self.message_user(
                request,
                f"New {kind.title()} API key for {workspace.name}: {key} "
                "(copy it now: it is not shown again; the old key no longer works).",
                messages.WARNING,
            )

    @admin.action(description="Regenerate the Track API key", permissions=["change"])
    def regenerate_track_key(self, request, queryset):
        self._regenerate(request, queryset, "track")

    @admin.action(description="Regenerate the App API key", permissions=["change"])
    def regenerate_app_key(self, request, queryset):
        self._regenerate(request, queryset, "app")
