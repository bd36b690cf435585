"""Any identifier and attributes either round-trip through identify and the attributes
read, or get a 400 and change nothing."""

import json
from urllib.parse import quote

from django.core.cache import cache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from people.api import _as_text
from people.models import Person
from tests.api.conftest import basic
from tests.factories import make_workspace

identifiers = st.text(min_size=1, max_size=160).filter(
    lambda s: not s.startswith("cio_") and "@" not in s
)
names = st.text(min_size=1, max_size=160).filter(
    lambda s: s not in {"id", "email", "cio_id", "anonymous_id", "_update", "_timestamp",
                        "unsubscribed", "cio_relationships", "created_at"}
    and not s.startswith("cio_subscription_preferences.")
)
values = st.one_of(
    st.text(min_size=1, max_size=1100),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.booleans(),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(identifier=identifiers, attributes=st.dictionaries(names, values, max_size=4))
def test_identify_round_trips_or_is_refused_whole(db, identifier, attributes):
    workspace = make_workspace("Property")
    track, app = APIClient(), APIClient()
    track.credentials(HTTP_AUTHORIZATION=basic(workspace.site_id, workspace.track_api_key))
    app.credentials(HTTP_AUTHORIZATION=f"Bearer {workspace.app_api_key}")
    cache.clear()
    path = quote(identifier, safe="")

    response = track.put(f"/api/v1/customers/{path}", data=json.dumps(attributes),
                         content_type="application/json")

    if response.status_code == 400:
        assert response.json()["meta"]["errors"]
        assert not Person.objects.filter(workspace=workspace).exists()
        return
    assert response.status_code == 200, response.content
    read = app.get(f"/v1/customers/{path}/attributes")
    assert read.status_code == 200
    stored = read.json()["customer"]["attributes"]
    assert stored["id"] == identifier
    for name, value in attributes.items():
        if value == "":
            assert name not in stored  # an empty value removes an attribute
        elif isinstance(value, dict):
            assert json.loads(stored[name]) == value  # key order is not kept
        else:
            assert stored[name] == _as_text(value)
