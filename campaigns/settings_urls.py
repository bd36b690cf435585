"""The email settings pages, included into Settings' URLs (namespace ``settings``)."""

from django.urls import path

from campaigns import settings_views as views

urlpatterns = [
    path("email/suppressions/", views.email_suppression_list,
         name="emailsuppression-list"),
    path("email/suppressions/add/", views.email_suppression_create,
         name="emailsuppression-create"),
    path("email/suppressions/<int:pk>/remove/", views.email_suppression_delete,
         name="emailsuppression-delete"),
]
