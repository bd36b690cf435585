"""Workspace settings pages: identifier mode, API credentials, suppressions, members."""

from django.urls import path

from engage import settings_views as views

app_name = "settings"

urlpatterns = [
    path("", views.index, name="index"),
    path("identifiers/", views.identifiers, name="identifiers"),
    path("identifiers/email-update/", views.email_update, name="email-update"),
    path("credentials/", views.credentials, name="credentials"),
    path("credentials/<str:kind>/regenerate/", views.credentials_regenerate,
         name="credentials-regenerate"),
    path("suppressions/", views.suppression_list, name="suppression-list"),
    path("members/", views.member_list, name="member-list"),
    path("members/add/", views.member_add, name="member-add"),
    path("members/<int:pk>/role/", views.member_role, name="member-role"),
    path("members/<int:pk>/remove/", views.member_remove, name="member-delete"),
]
