"""Switching a workspace's identifier mode: every person's email key is filled, or cleared.

The mode is the workspace's (``engage.models.Workspace``), the change a background job
(``engage.models.IdentifierModeChange``); the people it rewrites are this app's.
"""

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Count, F, Window
from django.db.models.functions import Lower, RowNumber

from engage import jobs
from engage.models import IdentifierModeChange, Workspace
from engage.sql import update_rows
from people.models import Person, Suppression
from people.services import forget_suppressed_emails
from people.validation import email_key


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
    # A suppressed email is dropped by the switch (see _fill_email_keys): never a conflict.
    suppressed = Suppression.objects.filter(
        workspace=workspace, identifier_type=Suppression.IdentifierType.EMAIL).values("value")
    shared = (Person.objects.in_workspace(workspace).filter(email__isnull=False)
              .values(key=Lower("email")).exclude(key__in=suppressed)
              .annotate(people=Count("pk")).filter(people__gt=1))
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


SHARED_EMAILS = ("Some people share an email (perhaps differing only in letter case): give "
                 "each person their own email first.")
SUPERSEDED = "A later change of identifier mode superseded this one."


def running_mode_change(workspace: Workspace) -> IdentifierModeChange | None:
    """Return the workspace's identifier mode change that is not finished, if any."""
    return (IdentifierModeChange.objects.filter(workspace=workspace)
            .exclude(state__in=[IdentifierModeChange.State.DONE, IdentifierModeChange.State.FAILED])
            .order_by("-created_at").first())


def set_identifier_mode(workspace: Workspace, mode: str, *,
                        actor=None) -> IdentifierModeChange | None:
    """Switch the workspace to identifier ``mode``; return the change, or None if the
    workspace is in that mode already.

    Email becomes an identifier only when no two people share one: otherwise this raises
    IdentifierModeError with the conflicts and changes nothing. The people are then
    handled in batches (on a worker when there are more than one batch of them): to Email
    or ID, the mode switches when every email key is filled; to ID only, at once.
    """
    if mode not in Workspace.IdentifierMode.values:
        raise ValueError(f"unknown identifier mode {mode!r}")
    with transaction.atomic():
        # no_key: people and activity rows may still be written meanwhile (their foreign
        # key's lock on the workspace does not wait for this one).
        locked = Workspace.objects.select_for_update(no_key=True).get(pk=workspace.pk)
        if running_mode_change(locked) is not None:
            raise IdentifierModeError("The identifier mode is being changed already: wait "
                                      "until that change is done.")
        if locked.identifier_mode == mode:
            workspace.identifier_mode = mode
            return None
        people = Person.objects.in_workspace(locked)
        change = IdentifierModeChange(workspace=locked, mode=mode, requested_by=actor)
        if mode == Workspace.IdentifierMode.EMAIL_OR_ID:
            conflicts = identifier_conflicts(locked)
            if conflicts:
                raise IdentifierModeError(
                    f"{conflicts.total} {'email is' if conflicts.total == 1 else 'emails are'} "
                    "shared by several people: give each person their own email first.",
                    conflicts)
            change.description = ("Email becomes an identifier: every email key is filled; "
                                  "suppressed emails are removed from profiles")
        else:
            change.description = "Email stops being an identifier: email keys are cleared"
            locked.identifier_mode = mode
            locked.save(update_fields=["identifier_mode"])
        change = jobs.start(change, people, queue_over=change.batch_size)
        if change.is_finished:  # nobody to handle
            _switch_to_email(change, locked)
            if change.state == change.State.FAILED:
                raise IdentifierModeError(change.error, identifier_conflicts(locked))
        elif change.total <= change.batch_size:
            change = run_identifier_mode_change(change.pk)
            if change.state == change.State.FAILED:
                # Handled here and now: refused as a whole, nothing kept.
                raise IdentifierModeError(change.error, identifier_conflicts(locked))
    workspace.identifier_mode = Workspace.objects.values_list(
        "identifier_mode", flat=True).get(pk=workspace.pk)
    return change


def run_identifier_mode_change(change_id: int, *,
                               max_batches: int | None = None) -> IdentifierModeChange | None:
    """Carry out an identifier mode change; safe to call again after any interruption."""
    return jobs.run(IdentifierModeChange, change_id, _change_batch,
                    max_batches=max_batches, finish=_finish_mode_change,
                    select_related=("workspace",), walk=_mode_change_people)


def _mode_change_people(change: IdentifierModeChange):
    """The people a change walks: all of the workspace's, in primary-key order.

    Each batch skips those with nothing to change. Narrowing the walk to people with an
    email (or a key) would let the database read that column's index and sort what is
    left of it for every batch.
    """
    return Person.objects.filter(workspace_id=change.workspace_id)


def _change_batch(change: IdentifierModeChange, person_pks: list[int]) -> None:
    if _superseded(change):
        raise jobs.Stop(SUPERSEDED)
    people = Person.objects.filter(workspace_id=change.workspace_id, pk__in=person_pks)
    if change.mode != Workspace.IdentifierMode.EMAIL_OR_ID:
        # Found by primary key and filtered here: asked for "email_key IS NOT NULL", the
        # database may read the whole partial index of email keys for every batch.
        keyed = [pk for pk, key in people.values_list("pk", "email_key") if key is not None]
        update_rows(Person, ["email_key"], [(pk, None) for pk in keyed])
        return
    try:
        _fill_email_keys(change.workspace,
                         people.filter(email__isnull=False).values_list("pk", "email"))
    except IntegrityError:
        raise jobs.Stop(SHARED_EMAILS) from None


def _fill_email_keys(workspace: Workspace, rows) -> None:
    """Give the people of ``rows`` (primary key, email) their email keys in one statement.

    Those holding a suppressed email lose it instead: a suppressed identifier is never
    stored again, and the person it was suppressed for asked to be forgotten, so it is
    dropped rather than kept until an admin acts (see forget_suppressed_emails).
    """
    # Folded in Python, as every lookup of email_key is: SQL's LOWER leaves non-ASCII
    # letters alone on SQLite and under some PostgreSQL locales.
    keys = [(pk, email_key(email)) for pk, email in rows]
    dropped = forget_suppressed_emails(workspace, keys)
    with transaction.atomic():
        update_rows(Person, ["email_key"], [(pk, key) for pk, key in keys if pk not in dropped])


def _finish_mode_change(change: IdentifierModeChange) -> None:
    """End a change to Email or ID: switch the mode, or undo the keys if it failed.

    A change that a later one superseded (it was retried after the workspace had moved
    on) touches nothing: the workspace's keys are the later change's.
    """
    if change.mode != Workspace.IdentifierMode.EMAIL_OR_ID:
        return
    workspace = Workspace.objects.select_for_update(no_key=True).get(pk=change.workspace_id)
    if _superseded(change):
        change.state = change.State.FAILED
        change.error = SUPERSEDED
        return
    if change.state == change.State.DONE:
        _switch_to_email(change, workspace)
    if change.state == change.State.FAILED:
        Person.objects.in_workspace(workspace).filter(email_key__isnull=False).update(
            email_key=None)
        change.cursor = change.done = 0  # a retry starts over: every key is gone


def _superseded(change: IdentifierModeChange) -> bool:
    return IdentifierModeChange.objects.filter(
        workspace_id=change.workspace_id, created_at__gt=change.created_at).exists()


def retry_identifier_mode_change(change: IdentifierModeChange) -> bool:
    """Run a failed or stalled change again from where it stopped; tell whether it was.

    Only the workspace's latest change may be retried, and only when no other runs: an
    older one would undo what the admin asked for since.
    """
    with transaction.atomic():
        Workspace.objects.select_for_update(no_key=True).get(pk=change.workspace_id)
        running = running_mode_change(change.workspace)
        if _superseded(change) or (running is not None and running.pk != change.pk):
            return False
        jobs.retry(change)
    return True


def _switch_to_email(change: IdentifierModeChange, workspace: Workspace) -> None:
    """Fill the keys of the people added or changed while the change ran, then switch.

    Runs with the workspace locked. Should two people share an email by now, the change
    fails instead and the workspace stays in ID only.
    """
    if change.mode != Workspace.IdentifierMode.EMAIL_OR_ID:
        return
    missing = (Person.objects.in_workspace(workspace)
               .filter(email__isnull=False, email_key__isnull=True).order_by("pk"))
    try:
        with transaction.atomic():
            last = 0
            while batch := list(missing.filter(pk__gt=last)
                                .values_list("pk", "email")[:change.batch_size]):
                _fill_email_keys(workspace, batch)
                last = batch[-1][0]
    except IntegrityError:
        change.state = change.State.FAILED
        change.error = SHARED_EMAILS
        return
    workspace.identifier_mode = Workspace.IdentifierMode.EMAIL_OR_ID
    workspace.save(update_fields=["identifier_mode"])
