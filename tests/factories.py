"""Factories that build state through the services, as every surface does."""

import factory
from django.contrib.auth import get_user_model

from engage.models import Membership, Workspace
from engage.services import create_workspace
from people import services
from people.models import Person


def make_workspace(name: str = "Acme", *, mode: str = Workspace.IdentifierMode.EMAIL_OR_ID,
                   **options) -> Workspace:
    """Create a workspace (keys kept on it as ``track_api_key`` / ``app_api_key``)."""
    workspace, credentials = create_workspace(name=name, identifier_mode=mode)
    for key, value in options.items():
        setattr(workspace, key, value)
    if options:
        workspace.save(update_fields=list(options))
    workspace.track_api_key = credentials.track_api_key
    workspace.app_api_key = credentials.app_api_key
    return workspace


def make_person(workspace: Workspace, customer_id: str | None = None, **attributes) -> Person:
    """Identify a person by id (or by email when only ``email`` is given)."""
    if customer_id is not None:
        ref = services.Ref("id", customer_id)
    else:
        ref = services.Ref("email", attributes["email"])
    result = services.identify_person(workspace, ref, attributes)
    assert result.person is not None, result
    return result.person


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


def make_member(workspace: Workspace, role: str = Membership.Role.EDITOR, **kwargs):
    user = UserFactory(**kwargs)
    Membership.objects.create(user=user, workspace=workspace, role=role)
    return user
