import base64

import pytest
from rest_framework.test import APIClient


def basic(site_id: str, key: str) -> str:
    return "Basic " + base64.b64encode(f"{site_id}:{key}".encode()).decode()


@pytest.fixture
def track(workspace):
    """A Track API client with the workspace's credentials."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic(workspace.site_id, workspace.track_api_key))
    return client
