"""Segment list and segment pages (members, actions, Delete Profiles, archive)."""

from django.urls import path

from segments import views

urlpatterns = [
    path("", views.segment_list, name="list"),
    path("<int:pk>/", views.segment_detail, name="detail"),
    path("<int:pk>/delete-profiles/", views.segment_delete_profiles, name="delete-profiles"),
    path("<int:pk>/archive/", views.segment_archive, {"archived": True}, name="archive"),
    path("<int:pk>/unarchive/", views.segment_archive, {"archived": False}, name="unarchive"),
    # The People page's (and a segment page's) selection, added to or removed from a
    # manual segment.
    path("people/add/confirm/", views.people_change_confirm, {"add": True},
         name="people-add-confirm"),
    path("people/add/", views.people_change, {"add": True}, name="people-add"),
    path("people/remove/confirm/", views.people_change_confirm, {"add": False},
         name="people-remove-confirm"),
    path("people/remove/", views.people_change, {"add": False}, name="people-remove"),
    path("jobs/<int:pk>/", views.membership_job_detail, name="job"),
]
