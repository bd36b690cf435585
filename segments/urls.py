"""The segments app's API routes: the Track API's manual membership, the App API's segments,
searches and exports, and the download of an export's file. Its pages are ``ui_urls``."""

from django.urls import include, path, re_path

from segments import api

track_v1_patterns = [
    path("segments/<int:segment_id>/add_customers",
         api.ManualMembershipView.as_view(add=True), name="segment-add"),
    path("segments/<int:segment_id>/remove_customers",
         api.ManualMembershipView.as_view(add=False), name="segment-remove"),
]

app_api_patterns = [
    path("customers", api.CustomersView.as_view(), name="customers"),
    re_path(r"^customers/(?P<customer_id>[\s\S]+)/segments$", api.CustomerSegmentsView.as_view(),
            name="customer-segments"),
    path("segments", api.SegmentListView.as_view(), name="segment-list"),
    path("segments/<int:segment_id>", api.SegmentDetailView.as_view(), name="segment-detail"),
    path("segments/<int:segment_id>/membership", api.SegmentMembershipView.as_view(),
         name="segment-membership"),
    path("exports/customers", api.CustomerExportView.as_view(), name="export-create"),
    path("exports", api.ExportListView.as_view(), name="export-list"),
    path("exports/<int:export_id>", api.ExportDetailView.as_view(), name="export-detail"),
    path("exports/<int:export_id>/download", api.ExportDownloadView.as_view(),
         name="export-download"),
]

urlpatterns = [
    path("api/v1/", include((track_v1_patterns, "segments_track_v1"))),
    path("v1/", include((app_api_patterns, "segments_app_v1"))),
    path("exports/<str:token>/people.csv", api.export_file, name="export-file"),
]
