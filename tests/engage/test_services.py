from engage import services
from engage.keys import hash_key
from engage.models import Membership, Workspace
from tests.factories import UserFactory


def test_create_workspace_stores_only_hashes_of_its_keys(db):
    owner = UserFactory()

    workspace, credentials = services.create_workspace(name="Acme", owner=owner)

    assert credentials.track_api_key.startswith("trk_")
    assert credentials.app_api_key.startswith("app_")
    stored = Workspace.objects.filter(pk=workspace.pk).values().get()
    assert credentials.track_api_key not in str(stored)
    assert credentials.app_api_key not in str(stored)
    assert stored["track_key_hash"] == hash_key(credentials.track_api_key)
    assert stored["track_key_prefix"] == credentials.track_api_key[:10]
    assert workspace.check_track_key(credentials.track_api_key)
    assert not workspace.check_track_key(credentials.app_api_key)
    assert Membership.objects.get(workspace=workspace).role == Membership.Role.ADMIN
    assert workspace.identifier_mode == Workspace.IdentifierMode.EMAIL_OR_ID


def test_regenerated_key_replaces_the_old_one(workspace):
    old = workspace.track_api_key

    new = services.regenerate_api_key(workspace, kind="track")

    workspace.refresh_from_db()
    assert new != old
    assert workspace.check_track_key(new)
    assert not workspace.check_track_key(old)


def test_site_ids_and_keys_differ_between_workspaces(db):
    first, a = services.create_workspace(name="A")
    second, b = services.create_workspace(name="B")
    assert first.site_id != second.site_id
    assert a.track_api_key != b.track_api_key


def test_roles(workspace):
    viewer = services.set_membership(workspace, UserFactory(), role=Membership.Role.VIEWER)
    editor = services.set_membership(workspace, UserFactory(), role=Membership.Role.EDITOR)
    admin = services.set_membership(workspace, UserFactory(), role=Membership.Role.ADMIN)
    assert (viewer.can_edit, editor.can_edit, admin.can_edit) == (False, True, True)
    assert (viewer.is_admin, editor.is_admin, admin.is_admin) == (False, False, True)
    assert set(Workspace.objects.for_user(editor.user)) == {workspace}
