"""Campaign pages: see ``campaigns.ui_urls``. What a campaign did and would do: its
overview (metrics, chart, CSV), journeys, the people at a step, deliveries, drafts and
test mode; and the journeys section of a person's page."""

from django.urls import path

from campaigns import insights_views as views

urlpatterns = [
    path("<int:pk>/overview/", views.overview, name="overview"),
    path("<int:pk>/overview.csv", views.overview_csv, name="overview-csv"),
    path("<int:pk>/journeys/", views.journey_list, name="journey-list"),
    path("<int:pk>/steps/<str:step_id>/people/", views.step_people, name="step-people"),
    path("<int:pk>/steps/<str:step_id>/deliveries/", views.step_deliveries,
         name="step-deliveries"),
    path("<int:pk>/deliveries/<int:delivery_pk>/", views.delivery_detail,
         name="delivery-detail"),
    path("<int:pk>/drafts/", views.draft_list, name="draft-list"),
    path("<int:pk>/drafts/act/", views.draft_bulk, name="draft-bulk"),
    path("<int:pk>/drafts/<int:delivery_pk>/edit/", views.draft_update, name="draft-update"),
    path("<int:pk>/test/", views.test_mode, name="test"),
    path("people/<str:cio_id>/journeys/", views.person_journeys, name="person-journeys"),
]
