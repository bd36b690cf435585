"""Workspace settings pages: identifier mode, API credentials, suppressions, members."""

app_name = "settings"

urlpatterns: list = []
