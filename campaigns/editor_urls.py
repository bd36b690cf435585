"""Campaign pages: see ``campaigns.ui_urls``."""

urlpatterns: list = []
