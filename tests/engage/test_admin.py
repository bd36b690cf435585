"""The workspace admin: creation with API keys shown once, and key regeneration."""

import hashlib
import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from engage.keys import hash_key
from engage.models import Membership, Workspace
from tests.factories import UserFactory, make_workspace

CHANGELIST = "admin:engage_workspace_changelist"


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def message_texts(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def staff_with(*perms: str):
    user = UserFactory(is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def add_form(name="Shop", *, memberships=(), **fields):
    data = {
        "name": name,
        "identifier_mode": Workspace.IdentifierMode.EMAIL_OR_ID,
        "timezone": "UTC",
        "memberships-TOTAL_FORMS": str(len(memberships)),
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        **fields,
    }
    for n, (user, role) in enumerate(memberships):
        data[f"memberships-{n}-user"] = str(user.pk)
        data[f"memberships-{n}-role"] = role
    return data


def regenerate(client, action, workspaces):
    return client.post(reverse(CHANGELIST), {
        "action": action,
        "index": "0",
        "select_across": "0",
        ACTION_CHECKBOX_NAME: [str(w.pk) for w in workspaces],
    })


def new_key_in(messages: list[str], kind: str) -> str:
    keys = [m for text in messages for m in re.findall(rf"\b{kind}_[\w-]+", text)]
    assert len(keys) == 1, messages
    return keys[0]


@pytest.fixture
def superuser(db):
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def su_client(client, superuser):
    client.force_login(superuser)
    return client


# --- creation --------------------------------------------------------------------------


def test_add_workspace_generates_site_id_and_keys_shown_once(su_client):
    assert not Workspace.objects.exists()

    response = su_client.post(reverse("admin:engage_workspace_add"), add_form("Shop"))

    assert response.status_code == 302, response.context and response.context[
        "adminform"].form.errors
    workspace = Workspace.objects.get()
    assert workspace.name == "Shop"
    messages = message_texts(response)
    key_message = next(text for text in messages if "Copy the keys now" in text)
    track_key = new_key_in(messages, "trk")
    app_key = new_key_in(messages, "app")
    assert workspace.site_id and workspace.site_id in key_message
    assert track_key != app_key
    # Only the prefix and the SHA-256 are kept.
    assert workspace.track_key_prefix == track_key[:10]
    assert workspace.track_key_hash == sha256(track_key)
    assert workspace.app_key_prefix == app_key[:10]
    assert workspace.app_key_hash == sha256(app_key)
    assert workspace.check_track_key(track_key)
    stored = Workspace.objects.filter(pk=workspace.pk).values().get()
    for value in stored.values():
        assert track_key not in str(value) and app_key not in str(value)
    for entry in LogEntry.objects.all():
        assert track_key not in f"{entry.object_repr} {entry.change_message}"
    # The message is shown once: not on the next page, nor on the change page.
    assert track_key in su_client.get(response.url).content.decode()
    for url in [reverse(CHANGELIST),
                reverse("admin:engage_workspace_change", args=[workspace.pk])]:
        content = su_client.get(url).content.decode()
        assert track_key not in content and app_key not in content
        assert workspace.track_key_hash not in content


def test_each_new_workspace_gets_its_own_keys(su_client):
    su_client.post(reverse("admin:engage_workspace_add"), add_form("One"))
    su_client.post(reverse("admin:engage_workspace_add"), add_form("Two"))

    one, two = Workspace.objects.order_by("name")
    assert one.site_id != two.site_id
    assert one.track_key_hash != two.track_key_hash
    assert one.app_key_hash != two.app_key_hash


def test_add_workspace_keeps_the_submitted_settings(su_client):
    response = su_client.post(reverse("admin:engage_workspace_add"), add_form(
        "Classic", identifier_mode=Workspace.IdentifierMode.ID, timezone="Europe/Paris",
        allow_email_update_by_id="on",
    ))

    assert response.status_code == 302
    workspace = Workspace.objects.get()
    assert workspace.identifier_mode == Workspace.IdentifierMode.ID
    assert workspace.timezone == "Europe/Paris"
    assert workspace.allow_email_update_by_id is True


def test_add_workspace_saves_its_members(su_client):
    member = UserFactory(username="support")

    response = su_client.post(reverse("admin:engage_workspace_add"), add_form(
        "Shop", memberships=[(member, Membership.Role.ADMIN)]))

    assert response.status_code == 302
    workspace = Workspace.objects.get()
    assert list(Workspace.objects.for_user(member)) == [workspace]
    assert Membership.objects.get().role == Membership.Role.ADMIN


def test_invalid_add_form_creates_nothing(su_client):
    response = su_client.post(reverse("admin:engage_workspace_add"), add_form(""))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not Workspace.objects.exists()


# --- regeneration ----------------------------------------------------------------------


def test_regenerate_track_key(su_client):
    workspace = make_workspace("Shop")
    other = make_workspace("Other")
    old_key = workspace.track_api_key
    old_app_hash = workspace.app_key_hash
    other_hashes = (other.track_key_hash, other.app_key_hash)
    assert workspace.check_track_key(old_key)

    response = regenerate(su_client, "regenerate_track_key", [workspace])

    assert response.status_code == 302
    new_key = new_key_in(message_texts(response), "trk")
    workspace.refresh_from_db()
    assert workspace.check_track_key(old_key) is False
    assert workspace.check_track_key(new_key) is True
    assert workspace.track_key_hash == sha256(new_key)
    assert workspace.track_key_prefix == new_key[:10]
    assert workspace.app_key_hash == old_app_hash  # the other key still works
    other.refresh_from_db()
    assert (other.track_key_hash, other.app_key_hash) == other_hashes
    # Shown once, on the page after the action, then never again.
    assert new_key in su_client.get(response.url).content.decode()
    content = su_client.get(reverse("admin:engage_workspace_change",
                                    args=[workspace.pk])).content.decode()
    assert new_key not in content


def test_regenerate_app_key(su_client):
    workspace = make_workspace("Shop")
    old_key = workspace.app_api_key
    track_key = workspace.track_api_key
    old_track_hash = workspace.track_key_hash
    assert workspace.app_key_hash == hash_key(old_key)

    response = regenerate(su_client, "regenerate_app_key", [workspace])

    assert response.status_code == 302
    new_key = new_key_in(message_texts(response), "app")
    workspace.refresh_from_db()
    assert workspace.app_key_hash != hash_key(old_key)
    assert workspace.app_key_hash == sha256(new_key)
    assert workspace.app_key_prefix == new_key[:10]
    assert workspace.track_key_hash == old_track_hash
    assert workspace.check_track_key(track_key)  # the Track API key still works


def test_regenerate_several_workspaces_gives_each_a_new_key(su_client):
    first = make_workspace("First")
    second = make_workspace("Second")

    response = regenerate(su_client, "regenerate_track_key", [first, second])

    texts = message_texts(response)
    keys = {name: re.search(r"\btrk_[\w-]+", next(t for t in texts if name in t)).group(0)
            for name in ["First", "Second"]}
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.check_track_key(keys["First"]) and second.check_track_key(keys["Second"])
    assert not first.check_track_key(first.track_api_key)
    assert not second.check_track_key(second.track_api_key)


def test_view_only_staff_cannot_regenerate_keys(db, client):
    client.force_login(staff_with("engage.view_workspace"))
    workspace = make_workspace("Shop")
    old_key = workspace.track_api_key

    page = client.get(reverse(CHANGELIST))
    assert page.status_code == 200
    assert "regenerate_track_key" not in page.content.decode()
    regenerate(client, "regenerate_track_key", [workspace])
    regenerate(client, "regenerate_app_key", [workspace])

    workspace.refresh_from_db()
    assert workspace.check_track_key(old_key)
    assert workspace.app_key_hash == hash_key(workspace.app_api_key)


def test_staff_who_may_change_workspaces_can_regenerate_keys(db, client):
    client.force_login(staff_with("engage.view_workspace", "engage.change_workspace"))
    workspace = make_workspace("Shop")
    old_key = workspace.track_api_key

    regenerate(client, "regenerate_track_key", [workspace])

    workspace.refresh_from_db()
    assert not workspace.check_track_key(old_key)


def test_workspaces_cannot_be_deleted_from_the_admin(su_client, workspace):
    url = reverse("admin:engage_workspace_delete", args=[workspace.pk])
    assert su_client.post(url, {"post": "yes"}).status_code == 403
    changelist = su_client.get(reverse("admin:engage_workspace_changelist"))
    assert "delete_selected" not in changelist.content.decode()
    assert Workspace.objects.filter(pk=workspace.pk).exists()


def test_keys_shown_once_never_travel_in_a_cookie(su_client):
    response = su_client.post(reverse("admin:engage_workspace_add"), add_form("Cookie Shop"),
                              follow=False)
    assert response.status_code == 302
    assert "messages" not in response.cookies


def test_the_identifier_mode_is_switched_in_settings_not_in_the_admin(su_client):
    workspace = make_workspace(identifier_mode=Workspace.IdentifierMode.ID)
    change = reverse("admin:engage_workspace_change", args=[workspace.pk])
    data = {**add_form("Renamed", identifier_mode=Workspace.IdentifierMode.EMAIL_OR_ID),
            "memberships-INITIAL_FORMS": "0"}

    response = su_client.post(change, data)

    assert response.status_code == 302
    workspace.refresh_from_db()
    # The name changed; the mode did not: switching it checks for duplicate emails first.
    assert (workspace.name, workspace.identifier_mode) == ("Renamed",
                                                          Workspace.IdentifierMode.ID)


def test_identifier_mode_changes_are_listed_and_a_stopped_one_retried(
        client, id_workspace, monkeypatch):
    from engage.models import IdentifierModeChange
    from people import identifier_mode
    from tests.factories import make_person

    monkeypatch.setattr(IdentifierModeChange, "batch_size", 2)
    for name in ["ada", "bob", "cy"]:
        make_person(id_workspace, name, email=f"{name}@example.com")
    change = identifier_mode.set_identifier_mode(id_workspace, "email_or_id")
    IdentifierModeChange.objects.filter(pk=change.pk).update(state="failed", error="lost")
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    url = reverse("admin:engage_identifiermodechange_changelist")

    assert "0 / 3 (0%)" in client.get(url).content.decode()
    client.post(url, {"action": "retry", "index": "0", "select_across": "0",
                      ACTION_CHECKBOX_NAME: [str(change.pk)]})
    change.refresh_from_db()
    assert (change.state, change.error) == ("running", "")
