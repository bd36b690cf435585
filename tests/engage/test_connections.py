"""A database connection that PostgreSQL dropped is replaced before a request uses it."""

import psycopg
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.test import RequestFactory

from tests.factories import make_workspace

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="terminating another session's connection is a PostgreSQL feature")


def list_segments(workspace) -> int:
    """Serve GET /v1/segments as a gunicorn worker does: one thread, its connection kept."""
    environ = RequestFactory().get(
        "/v1/segments", HTTP_AUTHORIZATION=f"Bearer {workspace.app_api_key}").environ
    statuses = []
    response = WSGIHandler()(environ, lambda status, headers: statuses.append(status))
    response.close()  # request_finished: the connection is kept for the next request
    return int(statuses[0].split()[0])


def test_the_request_after_the_server_dropped_the_connection_succeeds(transactional_db):
    workspace = make_workspace()
    assert list_segments(workspace) == 200
    assert connection.connection is not None  # kept between requests (CONN_MAX_AGE)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()

    db = connection.settings_dict  # as PostgreSQL's idle session timeout would:
    with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"],
                         password=db["PASSWORD"] or None, dbname=db["NAME"],
                         autocommit=True) as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)

    assert list_segments(workspace) == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone() != (pid,)
