"""The public URLs in sent emails (under ``/t/``), and the ESPs' tracking webhooks."""

from django.urls import include, path

from campaigns import tracking_views as views

app_name = "tracking"

urlpatterns = [
    path("o/<str:token>", views.open_pixel, name="open"),
    path("c/<str:token>", views.click, name="click"),
    path("u/<str:token>/", views.unsubscribe, name="unsubscribe"),
    # django-anymail's webhooks: /t/esp/<esp>/tracking/ (their events reach
    # campaigns.bounces.on_tracking_event through anymail's tracking signal).
    path("esp/", include("anymail.urls")),
]
