"""Browser pages for campaigns: the list, creation and settings (``pages_urls``), the
workflow editor (``editor_urls``), and what a campaign did (``insights_urls``: metrics,
journeys, deliveries, drafts and test mode)."""

from django.urls import include, path

from campaigns import editor_urls, insights_urls, pages_urls

app_name = "campaigns"

urlpatterns = [
    path("", include(pages_urls)),
    path("", include(editor_urls)),
    path("", include(insights_urls)),
]
