import base64

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient


def basic(site_id: str, key: str) -> str:
    return "Basic " + base64.b64encode(f"{site_id}:{key}".encode()).decode()


@pytest.fixture
def track(workspace):
    """A Track API client with the workspace's credentials."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic(workspace.site_id, workspace.track_api_key))
    return client


@pytest.fixture
def app(workspace):
    """An App API client with the workspace's key, its throttle counts cleared."""
    cache.clear()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {workspace.app_api_key}")
    yield client
    cache.clear()
