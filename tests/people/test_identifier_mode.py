"""Switching a workspace's identifier mode: conflicts, batches, resuming, retrying."""

import pytest

from engage.models import IdentifierModeChange, Workspace
from people import identifier_mode
from people import services as people
from people.errors import InvalidInput
from people.models import Activity, Person
from tests.factories import make_person

EMAIL_OR_ID = Workspace.IdentifierMode.EMAIL_OR_ID
ID = Workspace.IdentifierMode.ID


def with_emails(workspace, *names):
    """People named ``names``, each with their own email (name@example.com)."""
    for name in names:
        make_person(workspace, name, email=f"{name}@example.com")


def email_keys(workspace) -> dict:
    return dict(Person.objects.in_workspace(workspace).values_list("customer_id", "email_key"))


def test_conflicts_are_emails_several_people_share_ignoring_case(id_workspace, workspace):
    ada1 = make_person(id_workspace, "ada1", email="Ada@Example.com")
    ada2 = make_person(id_workspace, "ada2", email="ada@example.com")
    bob1 = make_person(id_workspace, "bob1", email="bob@example.com")
    bob2 = make_person(id_workspace, "bob2", email="bob@example.com")
    bob3 = make_person(id_workspace, "bob3", email="BOB@example.com")
    make_person(id_workspace, "cy", email="cy@example.com")
    make_person(id_workspace, "dee")
    make_person(id_workspace, "eve")  # people without an email never conflict
    make_person(workspace, "zed1", email="zed@example.com")  # another workspace's

    conflicts = identifier_mode.identifier_conflicts(id_workspace)

    assert conflicts.total == 2
    assert [(d.email, d.count) for d in conflicts.duplicates] == [
        ("ada@example.com", 2), ("bob@example.com", 3)]
    assert [p.pk for p in conflicts.duplicates[0].people] == [ada1.pk, ada2.pk]
    assert [p.pk for p in conflicts.duplicates[1].people] == [bob1.pk, bob2.pk, bob3.pk]


def test_conflicts_are_bounded_but_counted(id_workspace):
    for letter in "abc":
        for number in range(4):
            make_person(id_workspace, f"{letter}{number}", email=f"{letter}@example.com")

    conflicts = identifier_mode.identifier_conflicts(id_workspace, limit=2, people_per_email=3)

    assert conflicts.total == 3
    assert [d.email for d in conflicts.duplicates] == ["a@example.com", "b@example.com"]
    assert [(d.count, len(d.people)) for d in conflicts.duplicates] == [(4, 3), (4, 3)]


def test_switching_to_email_or_id_is_refused_while_emails_are_shared(id_workspace):
    make_person(id_workspace, "ada1", email="ada@example.com")
    make_person(id_workspace, "ada2", email="ADA@example.com")
    make_person(id_workspace, "bob", email="bob@example.com")

    with pytest.raises(identifier_mode.IdentifierModeError) as refusal:
        identifier_mode.set_identifier_mode(id_workspace, EMAIL_OR_ID)

    assert "1 email is shared by several people" in str(refusal.value)
    assert refusal.value.conflicts.duplicates[0].email == "ada@example.com"
    id_workspace.refresh_from_db()
    assert id_workspace.identifier_mode == ID
    assert set(email_keys(id_workspace).values()) == {None}


def test_switching_to_email_or_id_once_resolved_makes_email_an_identifier(id_workspace,
                                                                          monkeypatch):
    monkeypatch.setattr(IdentifierModeChange, "batch_size", 2)  # several batches
    make_person(id_workspace, "ada1", email="Ada@Example.com")
    make_person(id_workspace, "ada2", email="ada@example.com")
    for name in ["bob", "cy", "dee"]:
        make_person(id_workspace, name, email=f"{name.title()}@example.com")
    make_person(id_workspace, "eve")
    people.identify_person(id_workspace, people.Ref("id", "ada2"), {"email": "ada2@example.com"})
    assert not identifier_mode.identifier_conflicts(id_workspace)

    change = identifier_mode.set_identifier_mode(id_workspace, EMAIL_OR_ID)
    # More people than a batch: a worker's job, and the mode is unchanged until it is done.
    assert (change.state, change.total, change.mode) == ("pending", 6, EMAIL_OR_ID)
    id_workspace.refresh_from_db()
    assert id_workspace.identifier_mode == ID
    identifier_mode.run_identifier_mode_change(change.pk)

    change.refresh_from_db()
    assert (change.state, change.done) == ("done", 6)
    id_workspace.refresh_from_db()
    assert id_workspace.identifier_mode == EMAIL_OR_ID
    assert email_keys(id_workspace) == {
        "ada1": "ada@example.com", "ada2": "ada2@example.com", "bob": "bob@example.com",
        "cy": "cy@example.com", "dee": "dee@example.com", "eve": None}
    # Email now names people, and stays unique.
    result = people.identify_person(id_workspace, people.Ref("email", "BOB@example.com"),
                                    {"plan": "pro"})
    assert result.outcome == "updated" and result.person.customer_id == "bob"
    clash = people.identify_person(id_workspace, people.Ref("id", "new"),
                                   {"email": "cy@example.com"})
    assert clash.outcome == "conflict"
    assert not Person.objects.filter(customer_id="new").exists()


def test_email_keys_are_lowercased_as_lookups_lowercase_them(id_workspace):
    make_person(id_workspace, "emile", email="ÉMILE@Example.com")

    identifier_mode.set_identifier_mode(id_workspace, EMAIL_OR_ID)

    assert email_keys(id_workspace) == {"emile": "émile@example.com"}
    found = Person.objects.with_identifier(id_workspace, "email", "Émile@example.com")
    assert [p.customer_id for p in found] == ["emile"]


def test_emails_differing_only_in_non_ascii_case_are_refused_too(id_workspace):
    # Whether the database's LOWER sees these as one email or not, the switch is refused.
    make_person(id_workspace, "e1", email="ÉMILE@example.com")
    make_person(id_workspace, "e2", email="émile@example.com")

    with pytest.raises(identifier_mode.IdentifierModeError):
        identifier_mode.set_identifier_mode(id_workspace, EMAIL_OR_ID)

    id_workspace.refresh_from_db()
    assert id_workspace.identifier_mode == ID
    assert set(email_keys(id_workspace).values()) == {None}


def test_switching_back_to_id_frees_email(workspace):
    make_person(workspace, "ada", email="Ada@example.com")

    identifier_mode.set_identifier_mode(workspace, ID)

    workspace.refresh_from_db()
    assert workspace.identifier_mode == ID
    assert email_keys(workspace) == {"ada": None}
    assert Person.objects.get().email == "Ada@example.com"
    with pytest.raises(InvalidInput):
        people.make_ref(workspace, "email", "ada@example.com")
    # Several people may share an email again.
    make_person(workspace, "ada2", email="ada@example.com")
    assert identifier_mode.identifier_conflicts(workspace).total == 1


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(IdentifierModeChange, "batch_size", 2)


def test_a_change_resumes_where_it_stopped_and_keys_people_added_meanwhile(
        id_workspace, small_batches):
    for name in ["ada", "bob", "cy", "dee"]:
        make_person(id_workspace, name, email=f"{name.title()}@example.com")
    change = identifier_mode.set_identifier_mode(id_workspace, EMAIL_OR_ID)

    identifier_mode.run_identifier_mode_change(change.pk, max_batches=1)  # then the worker dies
    change.refresh_from_db()
    assert (change.state, change.done, change.total) == ("running", 2, 4)
    assert email_keys(id_workspace) == {"ada": "ada@example.com", "bob": "bob@example.com",
                                        "cy": None, "dee": None}
    # Meanwhile, in ID only: a new person, and a handled one whose email changes.
    people.identify_person(id_workspace, people.Ref("id", "eve"), {"email": "Eve@example.com"})
    people.identify_person(id_workspace, people.Ref("id", "ada"), {"email": "ada2@example.com"})

    identifier_mode.run_identifier_mode_change(change.pk)  # any worker carries on

    change.refresh_from_db()
    assert (change.state, change.done) == ("done", 5)  # eve, added meanwhile, too
    id_workspace.refresh_from_db()
    assert id_workspace.identifier_mode == EMAIL_OR_ID
    assert email_keys(id_workspace) == {
        "ada": "ada2@example.com", "bob": "bob@example.com", "cy": "cy@example.com",
        "dee": "dee@example.com", "eve": "eve@example.com"}


def test_an_email_shared_while_the_change_runs_fails_it_and_nothing_stays(
        id_workspace, small_batches):
    with_emails(id_workspace, "ada", "bob", "cy")
    change = identifier_mode.set_identifier_mode(id_workspace, EMAIL_OR_ID)
    identifier_mode.run_identifier_mode_change(change.pk, max_batches=1)
    make_person(id_workspace, "ada-again", email="ADA@example.com")  # allowed in ID only

    identifier_mode.run_identifier_mode_change(change.pk)

    change.refresh_from_db()
    assert change.state == "failed" and "share an email" in change.error
    id_workspace.refresh_from_db()
    assert id_workspace.identifier_mode == ID
    assert set(email_keys(id_workspace).values()) == {None}
    # Once the people are told apart, a new switch goes through.
    people.identify_person(id_workspace, people.Ref("id", "ada-again"),
                           {"email": "ada.2@example.com"})
    change = identifier_mode.set_identifier_mode(id_workspace, EMAIL_OR_ID)
    identifier_mode.run_identifier_mode_change(change.pk)
    id_workspace.refresh_from_db()
    assert id_workspace.identifier_mode == EMAIL_OR_ID


def test_one_change_at_a_time(id_workspace, small_batches):
    with_emails(id_workspace, "ada", "bob", "cy")
    change = identifier_mode.set_identifier_mode(id_workspace, EMAIL_OR_ID)
    assert identifier_mode.running_mode_change(id_workspace) == change

    for mode in (EMAIL_OR_ID, ID):
        with pytest.raises(identifier_mode.IdentifierModeError, match="being changed already"):
            identifier_mode.set_identifier_mode(id_workspace, mode)
    assert identifier_mode.running_mode_change(id_workspace) == change


def test_switching_to_id_frees_email_at_once_and_clears_keys_in_batches(
        workspace, small_batches):
    with_emails(workspace, "ada", "bob", "cy")
    make_person(workspace, "dee")

    change = identifier_mode.set_identifier_mode(workspace, ID)

    workspace.refresh_from_db()
    assert workspace.identifier_mode == ID and change.total == 4
    make_person(workspace, "ada2", email="ada@example.com")  # email is free already
    identifier_mode.run_identifier_mode_change(change.pk)
    change.refresh_from_db()
    assert (change.state, change.done) == ("done", 5)
    assert set(email_keys(workspace).values()) == {None}


def test_a_stalled_change_is_resumed_by_the_schedule(id_workspace, small_batches,
                                                     django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    from engage import jobs
    from people import tasks

    with_emails(id_workspace, "ada", "bob", "cy")
    change = identifier_mode.set_identifier_mode(id_workspace, EMAIL_OR_ID)
    identifier_mode.run_identifier_mode_change(change.pk, max_batches=1)  # then the worker dies
    type(change).objects.filter(pk=change.pk).update(
        updated_at=timezone.now() - jobs.STALLED_AFTER - timedelta(minutes=1))

    with django_capture_on_commit_callbacks(execute=True):  # the task runs (sync in tests)
        assert tasks.resume_stalled_identifier_mode_changes() == 1

    change.refresh_from_db()
    assert (change.state, change.done) == ("done", 3)
    id_workspace.refresh_from_db()
    assert id_workspace.identifier_mode == EMAIL_OR_ID


def test_an_unknown_mode_is_an_error(workspace):
    with pytest.raises(ValueError):
        identifier_mode.set_identifier_mode(workspace, "phone")


def test_only_the_latest_change_may_be_retried_and_a_failed_one_starts_over(
        id_workspace, small_batches):
    with_emails(id_workspace, "ada", "bob", "cy")
    first = identifier_mode.set_identifier_mode(id_workspace, EMAIL_OR_ID)
    identifier_mode.run_identifier_mode_change(first.pk, max_batches=1)
    make_person(id_workspace, "ada2", email="Ada@example.com")
    identifier_mode.run_identifier_mode_change(first.pk)
    first.refresh_from_db()
    assert (first.state, first.cursor, first.done) == ("failed", 0, 0)  # keys undone

    people.identify_person(id_workspace, people.Ref("id", "ada2"), {"email": "a2@example.com"})
    second = identifier_mode.set_identifier_mode(id_workspace, EMAIL_OR_ID)
    identifier_mode.run_identifier_mode_change(second.pk)
    third = identifier_mode.set_identifier_mode(id_workspace, ID)
    identifier_mode.run_identifier_mode_change(third.pk, max_batches=1)

    # Retrying the first would switch back to Email or ID behind the admin's back.
    assert identifier_mode.retry_identifier_mode_change(first) is False
    first.refresh_from_db()
    assert first.state == "failed"
    # Even if it ran (a task delivered late), it changes nothing.
    type(first).objects.filter(pk=first.pk).update(state="running", error="")
    identifier_mode.run_identifier_mode_change(first.pk)
    first.refresh_from_db()
    assert first.state == "failed" and "superseded" in first.error
    identifier_mode.run_identifier_mode_change(third.pk)
    id_workspace.refresh_from_db()
    assert id_workspace.identifier_mode == ID
    assert set(email_keys(id_workspace).values()) == {None}
    third.refresh_from_db()
    assert identifier_mode.retry_identifier_mode_change(third) is True  # the latest may be


def test_switching_to_email_or_id_drops_suppressed_emails_from_profiles(workspace):
    make_person(workspace, "ada", email="ada@example.com")
    people.suppress_identifier(workspace, people.Ref("id", "ada"))  # and ada@example.com
    identifier_mode.set_identifier_mode(workspace, ID)
    # In ID only, email is an attribute like any other: the suppression list is not asked.
    people.identify_person(workspace, people.Ref("id", "ada-2"),
                           {"email": "ADA@example.com", "plan": "pro"})
    make_person(workspace, "ada-3", email="ada@EXAMPLE.com")  # shared, but suppressed
    make_person(workspace, "bob", email="bob@example.com")

    identifier_mode.set_identifier_mode(workspace, EMAIL_OR_ID)

    workspace.refresh_from_db()
    assert workspace.identifier_mode == EMAIL_OR_ID
    assert email_keys(workspace) == {"ada-2": None, "ada-3": None, "bob": "bob@example.com"}
    ada2 = Person.objects.get(customer_id="ada-2")
    assert (ada2.email, ada2.attributes) == (None, {"plan": "pro"})
    assert people.is_suppressed(workspace, [people.Ref("email", "ada@example.com")])
    assert Activity.objects.filter(cio_id=ada2.cio_id, kind=Activity.Kind.ATTRIBUTES_CHANGED,
                                   data={"changed": {"email": None}}).exists()
    # Nobody can take the suppressed email back, in either spelling.
    again = people.identify_person(workspace, people.Ref("id", "ada-2"),
                                   {"email": "ada@example.com"})
    assert again.outcome == "suppressed"


def test_suppressed_emails_given_while_the_change_runs_are_dropped_too(workspace,
                                                                      small_batches):
    make_person(workspace, "ada", email="ada@example.com")
    people.suppress_identifier(workspace, people.Ref("id", "ada"))
    identifier_mode.set_identifier_mode(workspace, ID)
    with_emails(workspace, "bob", "cy", "dee")
    change = identifier_mode.set_identifier_mode(workspace, EMAIL_OR_ID)
    identifier_mode.run_identifier_mode_change(change.pk, max_batches=1)
    people.identify_person(workspace, people.Ref("id", "eve"), {"email": "Ada@example.com"})

    identifier_mode.run_identifier_mode_change(change.pk)

    workspace.refresh_from_db()
    assert workspace.identifier_mode == EMAIL_OR_ID
    assert email_keys(workspace) == {"bob": "bob@example.com", "cy": "cy@example.com",
                                     "dee": "dee@example.com", "eve": None}
    assert Person.objects.get(customer_id="eve").email is None
