"""The data-driven segment builder: new, edit, live preview."""

from django.urls import path

from segments import builder

urlpatterns = [
    path("new/", builder.segment_new, name="new"),
    path("<int:pk>/edit/", builder.segment_edit, name="edit"),
    path("preview/", builder.segment_preview, name="preview"),
]
