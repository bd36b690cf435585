"""Workspace operations: creation, API keys and members."""

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
