"""Track API v1 routes, and the App API routes for people.

Identifiers arrive percent-decoded (``/``, spaces, ``+`` and ``@`` included), so they
are matched with regular expressions that take everything up to a known suffix.
"""

from django.urls import path, re_path

from people import api

app_name = "track_v1"

urlpatterns = [
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
    re_path(r"^customers/(?P<customer_id>[\s\S]+)/attributes$", api.CustomerAttributesView.as_view(),
            name="customer-attributes"),
]

track_v2_patterns = [
    path("entity", api.EntityView.as_view(), name="entity"),
    path("batch", api.BatchView.as_view(), name="batch"),
]
