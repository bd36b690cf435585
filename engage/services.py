"""Workspace operations: creation, API keys, identifier mode and members."""

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Count, F, Window
from django.db.models.functions import Lower, RowNumber

from engage.keys import generate_key, generate_site_id, hash_key, key_prefix
from engage.models import Membership, Workspace
from people.models import Person


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


# --- identifier mode -------------------------------------------------------------------

# People whose email_key is filled per statement when email becomes an identifier.
EMAIL_KEY_BATCH = 2000


@dataclass(frozen=True)
class DuplicateEmail:
    """An email (lowercased) that several people of a workspace share."""

    email: str
    count: int
    people: list  # the first few of them, oldest first


@dataclass(frozen=True)
class IdentifierConflicts:
    """The duplicate emails that keep email from becoming an identifier."""

    duplicates: list[DuplicateEmail]
    total: int  # duplicate emails in all, of which ``duplicates`` holds the first

    def __bool__(self):
        return self.total > 0


class IdentifierModeError(Exception):
    """The workspace cannot switch to the identifier mode asked for."""

    def __init__(self, message: str, conflicts: IdentifierConflicts | None = None):
        super().__init__(message)
        self.conflicts = conflicts


def identifier_conflicts(workspace: Workspace, *, limit: int = 50,
                         people_per_email: int = 10) -> IdentifierConflicts:
    """Return the emails shared by several of the workspace's people (case-insensitively).

    Lists the first ``limit`` such emails in order, each with its number of people and
    the first ``people_per_email`` of them; ``total`` counts them all.
    """
    shared = (Person.objects.in_workspace(workspace).filter(email__isnull=False)
              .values(key=Lower("email")).annotate(people=Count("pk")).filter(people__gt=1))
    total = shared.count()
    if not total:
        return IdentifierConflicts([], 0)
    groups = list(shared.order_by("key")[:limit])
    keys = [group["key"] for group in groups]
    holders: dict[str, list] = {key: [] for key in keys}
    people = (Person.objects.in_workspace(workspace).annotate(key=Lower("email"))
              .filter(key__in=keys)
              .annotate(rank=Window(RowNumber(), partition_by=[Lower("email")],
                                    order_by=[F("pk").asc()]))
              .filter(rank__lte=people_per_email)
              .only("cio_id", "customer_id", "email", "created_at").order_by("key", "pk"))
    for person in people:
        holders[person.key].append(person)
    return IdentifierConflicts(
        [DuplicateEmail(group["key"], group["people"], holders[group["key"]]) for group in groups],
        total,
    )


def _fill_email_keys(workspace: Workspace) -> None:
    """Give every person with an email its email_key, in bounded batches by pk."""
    people = Person.objects.in_workspace(workspace).filter(email__isnull=False).order_by("pk")
    last = 0
    while True:
        batch = list(people.filter(pk__gt=last).values_list("pk", "email")[:EMAIL_KEY_BATCH])
        if not batch:
            return
        # Lowercased in Python, as every lookup of email_key is: SQL's LOWER leaves
        # non-ASCII letters alone on SQLite and under some PostgreSQL locales.
        Person.objects.bulk_update(
            [Person(pk=pk, email_key=email.lower()) for pk, email in batch], ["email_key"])
        last = batch[-1][0]


@transaction.atomic
def set_identifier_mode(workspace: Workspace, mode: str) -> Workspace:
    """Make ``mode`` the workspace's identifier mode; return the workspace.

    Email becomes an identifier only when no two people share one: otherwise this raises
    IdentifierModeError with the conflicts and changes nothing.
    """
    if mode not in Workspace.IdentifierMode.values:
        raise ValueError(f"unknown identifier mode {mode!r}")
    locked = Workspace.objects.select_for_update().get(pk=workspace.pk)
    if locked.identifier_mode != mode:
        if mode == Workspace.IdentifierMode.EMAIL_OR_ID:
            conflicts = identifier_conflicts(locked)
            if conflicts:
                raise IdentifierModeError(
                    f"{conflicts.total} {'email is' if conflicts.total == 1 else 'emails are'} "
                    "shared by several people: give each person their own email first.",
                    conflicts)
            try:
                with transaction.atomic():
                    _fill_email_keys(locked)
            except IntegrityError as error:
                # Someone gave a person a taken email meanwhile, or two emails differ only
                # in the case of non-ASCII letters (which the database's LOWER missed).
                raise IdentifierModeError(
                    "Some people share an email that differs only in letter case: give each "
                    "person their own email first.", identifier_conflicts(locked)) from error
        else:
            Person.objects.in_workspace(locked).filter(email_key__isnull=False).update(
                email_key=None)
        locked.identifier_mode = mode
        locked.save(update_fields=["identifier_mode"])
    workspace.identifier_mode = mode
    return workspace


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
