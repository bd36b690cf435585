"""The settings pages about people, included into Settings' URLs (namespace ``settings``)."""

from django.urls import path

from people import settings_views as views

urlpatterns = [
    path("identifiers/", views.identifiers, name="identifiers"),
    path("suppressions/", views.suppression_list, name="suppression-list"),
]
