import pytest

from engage.models import Membership
from tests.factories import make_member, make_workspace
from tests.webhook_server import webhook_server  # noqa: F401 - a local HTTP server for webhooks


@pytest.fixture
def workspace(db):
    return make_workspace("Acme")


@pytest.fixture
def id_workspace(db):
    return make_workspace("Classic", mode="id")


@pytest.fixture
def other_workspace(db):
    return make_workspace("Other")


@pytest.fixture
def viewer(client, workspace):
    """A viewer of ``workspace``, signed in on ``client``."""
    user = make_member(workspace, Membership.Role.VIEWER)
    client.force_login(user)
    return user


@pytest.fixture
def editor(client, workspace):
    """An editor of ``workspace``, signed in on ``client``."""
    user = make_member(workspace, Membership.Role.EDITOR)
    client.force_login(user)
    return user
