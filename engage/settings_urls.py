"""Workspace settings pages: overview, email updates by id, API credentials, members; the
people app adds the identifier mode and the suppression list (people.settings_urls)."""

from django.urls import include, path

from engage import settings_views as views

app_name = "settings"

urlpatterns = [
    path("", views.index, name="index"),
    # The identifier mode and suppression list pages are the people app's.
    path("", include("people.settings_urls")),
    # Email > Suppression list is the campaigns app's.
    path("", include("campaigns.settings_urls")),
    path("identifiers/email-update/", views.email_update, name="email-update"),
    path("credentials/", views.credentials, name="credentials"),
    path("credentials/<str:kind>/regenerate/", views.credentials_regenerate,
         name="credentials-regenerate"),
    path("members/", views.member_list, name="member-list"),
    path("members/add/", views.member_add, name="member-add"),
    path("members/<int:pk>/role/", views.member_role, name="member-role"),
    path("members/<int:pk>/remove/", views.member_remove, name="member-delete"),
]
