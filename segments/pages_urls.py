"""Segment list and segment pages (members, actions, Delete Profiles, archive)."""

urlpatterns: list = []
