import pytest

from tests.factories import make_workspace


@pytest.fixture
def workspace(db):
    return make_workspace("Acme")


@pytest.fixture
def id_workspace(db):
    return make_workspace("Classic", mode="id")


@pytest.fixture
def other_workspace(db):
    return make_workspace("Other")
