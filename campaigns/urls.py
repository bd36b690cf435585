"""App API routes for campaigns, and a person's journeys."""

from django.urls import path, re_path

from campaigns import api, send_api, tracking_api

app_name = "campaigns_app_v1"

urlpatterns = [
    path("campaigns", api.CampaignListView.as_view(), name="campaign-list"),
    path("campaigns/<int:campaign_id>", api.CampaignDetailView.as_view(),
         name="campaign-detail"),
    path("campaigns/<int:campaign_id>/definition", api.CampaignDefinitionView.as_view(),
         name="campaign-definition"),
    path("campaigns/<int:campaign_id>/metrics", api.CampaignMetricsView.as_view(),
         name="campaign-metrics"),
    path("campaigns/<int:campaign_id>/actions", api.CampaignActionsView.as_view(),
         name="campaign-actions"),
    path("campaigns/<int:campaign_id>/start", api.StartView.as_view(), name="campaign-start"),
    path("campaigns/<int:campaign_id>/stop", api.StopView.as_view(), name="campaign-stop"),
    path("campaigns/<int:campaign_id>/archive", api.ArchiveView.as_view(),
         name="campaign-archive"),
    path("campaigns/<int:campaign_id>/unarchive", api.UnarchiveView.as_view(),
         name="campaign-unarchive"),
    path("bounces", tracking_api.BounceView.as_view(), name="bounce-create"),
    path("campaigns/<int:campaign_id>/triggers", send_api.BroadcastTriggerView.as_view(),
         name="campaign-trigger-list"),
    path("campaigns/<int:campaign_id>/triggers/<int:trigger_id>",
         send_api.BroadcastTriggerStatusView.as_view(), name="campaign-trigger-detail"),
    path("send/email", send_api.SendEmailView.as_view(), name="send-email"),
    re_path(r"^customers/(?P<customer_id>[\s\S]+)/journeys$", api.CustomerJourneysView.as_view(),
            name="customer-journeys"),
]
