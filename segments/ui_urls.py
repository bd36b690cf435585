"""Browser pages for segments: their list and pages (``pages``), and the builder."""

from django.urls import include, path

from segments import builder_urls, pages_urls

app_name = "segments"

urlpatterns = [
    path("", include(pages_urls)),
    path("", include(builder_urls)),
]
