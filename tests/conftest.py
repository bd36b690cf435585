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


@pytest.fixture
def smtp_sink(settings):
    """A real SMTP server on a free port, with engage's email settings pointing at it.

    ``.messages`` holds what it received (parsed ``email.message.EmailMessage``),
    ``.replies`` chooses the answer to a recipient (``{"a@b.c": "550 5.1.1 unknown"}``),
    ``.connections`` counts SMTP connections and ``.env`` points another process at it.
    """
    from tests.smtp_sink import SmtpSink

    sink = SmtpSink().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = sink.host, sink.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 10
    try:
        yield sink
    finally:
        sink.stop()
