"""Track API v1 routes that trigger campaigns (included under /api/v1/)."""

from django.urls import path

from campaigns import track_api

app_name = "campaigns_track_v1"

urlpatterns = [
    path("forms/<str:form_id>/submit", track_api.FormSubmitView.as_view(), name="form-submit"),
    path("webhooks/<str:token>", track_api.WebhookTriggerView.as_view(), name="webhook"),
]
