"""The people app's routes: the Track API (v1 and v2), the App API reads of people, the
home page, the People pages and deletion jobs.

Identifiers arrive percent-decoded (``/``, spaces, ``+`` and ``@`` included), so they
are matched with regular expressions that take everything up to a known suffix.
"""

from django.urls import include, path, re_path

from people import api, views

track_v1_patterns = [
    path("events", api.AnonymousEventView.as_view(), name="anonymous-event"),
    path("merge_customers", api.MergeView.as_view(), name="merge"),
    path("accounts/region", api.RegionView.as_view(), name="region"),
    re_path(r"^customers/(?P<identifier>[\s\S]+)/events$", api.CustomerEventView.as_view(),
            name="customer-events"),
    re_path(r"^customers/(?P<identifier>[\s\S]+?)/devices/(?P<token>[\s\S]+)$",
            api.DeviceDeleteView.as_view(), name="customer-device"),
    re_path(r"^customers/(?P<identifier>[\s\S]+)/devices$", api.DeviceView.as_view(),
            name="customer-devices"),
    re_path(r"^customers/(?P<identifier>[\s\S]+)/suppress$", api.SuppressView.as_view(),
            name="customer-suppress"),
    re_path(r"^customers/(?P<identifier>[\s\S]+)/unsuppress$", api.UnsuppressView.as_view(),
            name="customer-unsuppress"),
    re_path(r"^customers/(?P<identifier>[\s\S]+)$", api.CustomerView.as_view(), name="customer"),
]

app_api_patterns = [
    path("customers/attributes", api.CustomersAttributesView.as_view(),
         name="customers-attributes"),
    re_path(r"^customers/(?P<customer_id>[\s\S]+)/attributes$",
            api.CustomerAttributesView.as_view(), name="customer-attributes"),
]

track_v2_patterns = [
    path("entity", api.EntityView.as_view(), name="entity"),
    path("batch", api.BatchView.as_view(), name="batch"),
]

urlpatterns = [
    # The APIs first: integrators' calls are most of the traffic, and Django tries the
    # patterns in order.
    path("api/v1/", include((track_v1_patterns, "track_v1"))),
    path("api/v2/", include((track_v2_patterns, "track_v2"))),
    path("v1/", include((app_api_patterns, "app_v1"))),
    path("", views.home, name="home"),
    path("people/", views.person_list, name="person-list"),
    path("people/delete/", views.person_bulk_delete, name="person-bulk-delete"),
    path("people/delete/confirm/", views.person_bulk_delete_confirm,
         name="person-bulk-delete-confirm"),
    path("people/<str:cio_id>/", views.person_detail, name="person-detail"),
    path("people/<str:cio_id>/attributes/", views.person_set_attribute,
         name="person-set-attribute"),
    path("people/<str:cio_id>/delete/", views.person_delete, name="person-delete"),
    path("deletions/", views.deletion_job_list, name="deletionjob-list"),
    path("deletions/<int:pk>/", views.deletion_job_detail, name="deletionjob-detail"),
]
