from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from people.urls import app_api_patterns

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/v1/", include("people.urls")),
    path("v1/", include((app_api_patterns, "app_v1"))),
]
