"""Workspace operations: creation, API keys, email updates by id, and members."""

from dataclasses import dataclass

from django.db import transaction

from engage.keys import generate_key, generate_site_id, hash_key, key_prefix
from engage.models import Membership, Workspace


@dataclass(frozen=True)
class WorkspaceCredentials:
    """Keys in clear, returned once when made; only their hashes are stored."""

    site_id: str
    track_api_key: str | None = None
    app_api_key: str | None = None


def _set_key(workspace: Workspace, kind: str) -> str:
    key = generate_key("trk" if kind == "track" else "app")
    setattr(workspace, f"{kind}_key_prefix", key_prefix(key))
    setattr(workspace, f"{kind}_key_hash", hash_key(key))
    return key


@transaction.atomic
def create_workspace(
    *,
    name: str,
    identifier_mode: str = Workspace.IdentifierMode.EMAIL_OR_ID,
    timezone: str = "UTC",
    owner=None,
) -> tuple[Workspace, WorkspaceCredentials]:
    """Create a workspace with fresh API keys; return it and the keys in clear."""
    workspace = Workspace(
        name=name, identifier_mode=identifier_mode, timezone=timezone, site_id=generate_site_id()
    )
    track_key = _set_key(workspace, "track")
    app_key = _set_key(workspace, "app")
    workspace.save()
    if owner is not None:
        Membership.objects.create(user=owner, workspace=workspace, role=Membership.Role.ADMIN)
    return workspace, WorkspaceCredentials(workspace.site_id, track_key, app_key)


def regenerate_api_key(workspace: Workspace, *, kind: str) -> str:
    """Replace the workspace's ``track`` or ``app`` key; return the new key in clear."""
    if kind not in {"track", "app"}:
        raise ValueError(f"unknown key kind {kind!r}")
    key = _set_key(workspace, kind)
    workspace.save(update_fields=[f"{kind}_key_prefix", f"{kind}_key_hash"])
    return key


def set_membership(workspace: Workspace, user, *, role: str) -> Membership:
    """Give ``user`` the ``role`` in ``workspace``."""
    membership, _ = Membership.objects.update_or_create(
        workspace=workspace, user=user, defaults={"role": role}
    )
    return membership


# --- identifier mode (switching it rewrites people: people.identifier_mode) ------------


def set_email_update_by_id(workspace: Workspace, *, allowed: bool) -> Workspace:
    """Let (or stop) an identify addressed by id change a person's email."""
    workspace.allow_email_update_by_id = allowed
    workspace.save(update_fields=["allow_email_update_by_id"])
    return workspace


# --- members ---------------------------------------------------------------------------


class LastAdminError(Exception):
    """The change would leave the workspace without an admin."""


def _keep_an_admin(membership: Membership) -> None:
    """Refuse to take the admin role from the workspace's only admin."""
    admins = list(Membership.objects.select_for_update()
                  .filter(workspace_id=membership.workspace_id, role=Membership.Role.ADMIN)
                  .values_list("pk", flat=True))
    if admins == [membership.pk]:
        raise LastAdminError(
            f"{membership.user} is the last admin of {membership.workspace}: "
            "make another member an admin first.")


@transaction.atomic
def change_member_role(membership: Membership, *, role: str) -> Membership:
    """Give a member another role, keeping at least one admin in the workspace."""
    if role not in Membership.Role.values:
        raise ValueError(f"unknown role {role!r}")
    if role != Membership.Role.ADMIN:
        _keep_an_admin(membership)
    return set_membership(membership.workspace, membership.user, role=role)


@transaction.atomic
def remove_member(membership: Membership) -> None:
    """Take a member out of the workspace, keeping at least one admin in it."""
    _keep_an_admin(membership)
    membership.delete()
