"""The project's routes. Each app's routes are included by dotted name: the core imports no
app, and each app keeps its own routes (``people.urls``, ``segments.urls``)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from engage import views

urlpatterns = [
    # The APIs first (in each app's routes): integrators' calls are most of the traffic,
    # and Django tries the patterns in order.
    path("", include("segments.urls")),
    path("api/v1/", include("campaigns.track_urls")),
    path("", include("people.urls")),
    path("v1/", include("campaigns.urls")),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("workspace/", views.switch, name="workspace-switch"),
    path("segments/", include("segments.ui_urls")),
    path("campaigns/", include("campaigns.ui_urls")),
    path("settings/", include("engage.settings_urls")),
    # Opens, clicks and unsubscribes of sent emails, and the ESPs' tracking webhooks.
    path("t/", include("campaigns.tracking_urls")),
    path("admin/", admin.site.urls),
    # Open to all, whatever credentials a client sends along (a Track client's Basic
    # header is not a Django user's).
    path("api/schema/", SpectacularAPIView.as_view(authentication_classes=[]),
         name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema",
                                                     authentication_classes=[]),
         name="api-docs"),
]

handler400 = "engage.api.bad_request"
handler404 = "engage.api.page_not_found"
handler500 = "engage.api.server_error"
