from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from people.urls import app_api_patterns, track_v2_patterns
from segments import urls as segment_urls
from segments.api import export_file

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include((segment_urls.track_v1_patterns, "segments_track_v1"))),
    path("api/v1/", include("people.urls")),
    path("api/v2/", include((track_v2_patterns, "track_v2"))),
    path("exports/<str:token>/people.csv", export_file, name="export-file"),
    path("v1/", include((segment_urls.app_api_patterns, "segments_app_v1"))),
    path("v1/", include((app_api_patterns, "app_v1"))),
]
