from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from engage import views
from people import views as people_views
from people.urls import app_api_patterns, track_v2_patterns
from segments import urls as segment_urls
from segments.api import export_file

urlpatterns = [
    # The APIs first: integrators' calls are most of the traffic, and Django tries the
    # patterns in order.
    path("api/v1/", include((segment_urls.track_v1_patterns, "segments_track_v1"))),
    path("api/v1/", include("people.urls")),
    path("api/v2/", include((track_v2_patterns, "track_v2"))),
    path("v1/", include((segment_urls.app_api_patterns, "segments_app_v1"))),
    path("v1/", include((app_api_patterns, "app_v1"))),
    path("v1/", include("campaigns.urls")),
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("workspace/", views.switch, name="workspace-switch"),
    path("people/", people_views.person_list, name="person-list"),
    path("people/delete/", people_views.person_bulk_delete, name="person-bulk-delete"),
    path("people/delete/confirm/", people_views.person_bulk_delete_confirm,
         name="person-bulk-delete-confirm"),
    path("people/<str:cio_id>/", people_views.person_detail, name="person-detail"),
    path("people/<str:cio_id>/attributes/", people_views.person_set_attribute,
         name="person-set-attribute"),
    path("people/<str:cio_id>/delete/", people_views.person_delete, name="person-delete"),
    path("deletions/", people_views.deletion_job_list, name="deletionjob-list"),
    path("deletions/<int:pk>/", people_views.deletion_job_detail, name="deletionjob-detail"),
    path("segments/", include("segments.ui_urls")),
    path("settings/", include("engage.settings_urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("exports/<str:token>/people.csv", export_file, name="export-file"),
]
