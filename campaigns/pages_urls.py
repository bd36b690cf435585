"""Campaign pages: see ``campaigns.ui_urls``. The list, creation, trigger settings, review,
and the "Campaign actions" of every campaign page."""

from django.urls import path

from campaigns import views

urlpatterns = [
    path("", views.campaign_list, name="list"),
    path("new/", views.campaign_create, name="new"),
    path("<int:pk>/settings/", views.campaign_settings, name="settings"),
    path("<int:pk>/review/", views.campaign_review, name="review"),
    path("<int:pk>/start/", views.campaign_start, name="start"),
    path("<int:pk>/unschedule/", views.campaign_unschedule, name="unschedule"),
    path("<int:pk>/stop/", views.campaign_stop, name="stop"),
    path("<int:pk>/archive/", views.campaign_archive, name="archive"),
    path("<int:pk>/unarchive/", views.campaign_unarchive, name="unarchive"),
    path("<int:pk>/delete/", views.campaign_delete, name="delete"),
]
