"""Sign-in, the home page, workspace switching and roles."""

from django.urls import reverse

from engage.models import Membership
from people import services
from tests.factories import make_member, make_person


def test_login_and_logout(client, workspace):
    make_member(workspace, Membership.Role.VIEWER, username="vera")
    response = client.post(reverse("login"), {"username": "vera",
                                              "password": "correct horse battery staple"})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert client.get(reverse("home")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("home")).status_code == 302


def test_home_shows_profiles_and_this_months_deletions(client, workspace):
    client.force_login(make_member(workspace, Membership.Role.VIEWER))
    people = [make_person(workspace, f"u{n}") for n in range(4)]
    services.delete_people(workspace, people[:1], suppress=False)
    services.delete_people(workspace, people[1:2], suppress=True)

    response = client.get(reverse("home"))

    assert response.context["profile_count"] == 2
    assert response.context["deleted_this_month"] == 1
    assert response.context["suppressed_this_month"] == 1


def test_switching_workspaces(client, workspace, other_workspace):
    user = make_member(workspace, Membership.Role.VIEWER)
    client.force_login(user)
    assert client.get(reverse("home")).context["workspace"] == workspace

    client.post(reverse("workspace-switch"), {"workspace": other_workspace.pk})
    assert client.get(reverse("home")).context["workspace"] == workspace  # not a member

    Membership.objects.create(user=user, workspace=other_workspace, role="viewer")
    client.post(reverse("workspace-switch"), {"workspace": other_workspace.pk})
    assert client.get(reverse("home")).context["workspace"] == other_workspace


def test_people_without_a_workspace_are_refused(client, db):
    from tests.factories import UserFactory

    client.force_login(UserFactory())
    assert client.get(reverse("home")).status_code == 403


def test_the_switcher_needs_csrf(workspace, other_workspace):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    user = make_member(workspace, Membership.Role.VIEWER)
    Membership.objects.create(user=user, workspace=other_workspace, role="viewer")
    client.force_login(user)
    assert client.post(reverse("workspace-switch"),
                       {"workspace": other_workspace.pk}).status_code == 403
