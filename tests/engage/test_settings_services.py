"""Workspace settings as services: email updates by id, and keeping an admin."""

import pytest

from engage import services
from engage.models import Membership
from tests.factories import UserFactory


def test_the_email_update_option(workspace):
    services.set_email_update_by_id(workspace, allowed=True)
    workspace.refresh_from_db()
    assert workspace.allow_email_update_by_id


def test_the_last_admin_cannot_be_demoted_or_removed(workspace):
    admin = services.set_membership(workspace, UserFactory(), role=Membership.Role.ADMIN)
    editor = services.set_membership(workspace, UserFactory(), role=Membership.Role.EDITOR)

    with pytest.raises(services.LastAdminError, match="last admin"):
        services.change_member_role(admin, role=Membership.Role.EDITOR)
    with pytest.raises(services.LastAdminError):
        services.remove_member(admin)
    assert Membership.objects.get(pk=admin.pk).role == Membership.Role.ADMIN

    services.change_member_role(editor, role=Membership.Role.ADMIN)
    services.change_member_role(admin, role=Membership.Role.VIEWER)
    assert Membership.objects.get(pk=admin.pk).role == Membership.Role.VIEWER
    services.remove_member(Membership.objects.get(pk=admin.pk))
    assert list(Membership.objects.filter(workspace=workspace)) == [editor]
    with pytest.raises(services.LastAdminError):
        services.remove_member(Membership.objects.get(pk=editor.pk))
