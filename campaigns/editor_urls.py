"""The visual workflow editor of a campaign (``campaigns.editor_views``)."""

from django.urls import path

from campaigns import editor_views

urlpatterns = [
    path("<int:pk>/workflow/", editor_views.workflow, name="workflow"),
    path("<int:pk>/workflow/add/", editor_views.step_add, name="workflow-add"),
    path("<int:pk>/workflow/move/", editor_views.step_move, name="workflow-move"),
    path("<int:pk>/workflow/delete/", editor_views.step_delete, name="workflow-delete"),
    path("<int:pk>/workflow/paths/add/", editor_views.path_add, name="workflow-path-add"),
    path("<int:pk>/workflow/paths/remove/", editor_views.path_remove,
         name="workflow-path-remove"),
    path("<int:pk>/workflow/figures/", editor_views.figures, name="workflow-figures"),
    path("<int:pk>/workflow/steps/<str:step_id>/", editor_views.step_settings,
         name="workflow-step"),
    path("<int:pk>/workflow/steps/<str:step_id>/preview/", editor_views.email_preview,
         name="workflow-preview"),
    path("<int:pk>/workflow/steps/<str:step_id>/test-request/", editor_views.webhook_test,
         name="workflow-test-request"),
]
