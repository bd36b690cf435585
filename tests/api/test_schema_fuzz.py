"""The schema says what the APIs do: generated calls to every operation, checked against it.

Schemathesis reads engage's own OpenAPI schema, sends each operation a bounded number of
generated requests (with a workspace's real keys, so the authenticated paths run), and
fails on any 5xx, an undocumented status code or a body that does not match the schema.
"""

import pytest
import schemathesis
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from segments.services import create_segment
from tests.api.conftest import basic
from tests.factories import make_person

# Bounded so the whole run stays well under two minutes on two busy cores.
EXAMPLES_PER_OPERATION = 8


def _load_schema():
    """Return engage's schema as /api/schema/ serves it, calling the app in process."""
    from drf_spectacular.generators import SchemaGenerator

    loaded = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(public=True))
    loaded.app = WSGIHandler()
    return loaded


schema = _load_schema()


@pytest.fixture
def in_process_requests():
    """Keep the test's database connection across requests, as Django's test client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def known_data(workspace, in_process_requests):
    make_person(workspace, "u1", email="ada@example.com", plan="pro")
    create_segment(workspace, name="VIP", conditions_tree=None)


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_answers_as_its_schema_says(case, workspace, known_data):
    if case.path.startswith("/api/"):
        authorization = basic(workspace.site_id, workspace.track_api_key)
    else:
        authorization = f"Bearer {workspace.app_api_key}"
    cache.clear()  # the throttles would answer 429 to a long run
    case.call_and_validate(
        headers={"Authorization": authorization},
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
    )
