"""The membership log: one writer, an announcement after commit, and a reader's cursor."""

import json

import pytest
from django.db import connection, transaction

from people import services as people
from people.services import Ref
from segments import log, services
from segments.models import MembershipChange, Segment
from segments.signals import memberships_changed
from tests.factories import make_person, make_workspace
from tests.segments.test_races import race, replayed

PRO = {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}}


@pytest.fixture
def announced():
    """Collect the memberships_changed signals sent, as (workspace_id, segment_ids)."""
    sent = []

    def receiver(sender, workspace_id, segment_ids, **kwargs):
        sent.append((workspace_id, segment_ids))

    memberships_changed.connect(receiver, dispatch_uid="test-log-announced")
    yield sent
    memberships_changed.disconnect(dispatch_uid="test-log-announced")


def test_changes_are_announced_on_commit_only(workspace, announced,
                                              django_capture_on_commit_callbacks):
    manual = services.create_segment(workspace, name="Beta")
    ada = make_person(workspace, "ada")

    with django_capture_on_commit_callbacks(execute=True):
        services.add_to_segment(manual, [ada.pk])
        assert announced == []  # not before commit
    assert announced == [(workspace.pk, [manual.pk])]

    with django_capture_on_commit_callbacks(execute=True):
        assert services.add_to_segment(manual, [ada.pk]) == 0  # nothing changed
    assert announced == [(workspace.pk, [manual.pk])]


def test_every_writer_logs_through_the_one_function(workspace, monkeypatch,
                                                    django_capture_on_commit_callbacks):
    """Recompute, real-time evaluation, manual changes, merges and deletions all log."""
    writes = []
    write_changes = log.write_changes

    def spy(workspace_id, segment_ids, **kwargs):
        written = write_changes(workspace_id, segment_ids, **kwargs)
        writes.append(written)
        return written

    monkeypatch.setattr(log, "write_changes", spy)
    with django_capture_on_commit_callbacks(execute=True):
        pro = services.create_segment(workspace, name="Pro", conditions_tree=PRO)
    manual = services.create_segment(workspace, name="Beta")
    with django_capture_on_commit_callbacks(execute=True):
        ada = make_person(workspace, "ada", plan="pro")
    bob = make_person(workspace, "bob")
    services.add_to_segment(manual, [bob.pk])
    people.merge_people(workspace, primary=Ref("id", "ada"), secondary=Ref("id", "bob"))
    people.delete_people(workspace, [ada], suppress=False)

    assert MembershipChange.objects.count() == sum(writes)
    assert sum(writes) == 6  # ada into Pro; bob into Beta; ada into Beta, bob out; ada out of both
    assert replayed(pro) == set() and replayed(manual) == set()


def test_writing_the_log_outside_a_transaction_is_refused(transactional_db):
    workspace = make_workspace("Acme")
    segment = services.create_segment(workspace, name="Beta")
    with pytest.raises(RuntimeError):
        log.write_changes(workspace.pk, [segment.pk], at=None, rows=[(segment.pk, 1, "entered")])


def test_read_changes_pages_through_each_segment_with_a_cursor(workspace, other_workspace):
    beta = services.create_segment(workspace, name="Beta")
    gamma = services.create_segment(workspace, name="Gamma")
    theirs = services.create_segment(other_workspace, name="Theirs")
    ada, bob = make_person(workspace, "ada"), make_person(workspace, "bob")
    services.add_to_segment(beta, [ada.pk, bob.pk])
    services.add_to_segment(gamma, [ada.pk])
    services.remove_from_segment(beta, [ada.pk])
    services.add_to_segment(theirs, [make_person(other_workspace, "eve").pk])

    first = log.read_changes(workspace, [beta.pk, gamma.pk], limit=2)
    assert [(c.segment_id, c.person_id, c.change) for c in first.changes] == [
        (beta.pk, ada.pk, "entered"), (beta.pk, bob.pk, "entered")]
    # The cursor survives a trip through JSON (its keys become strings).
    stored = json.loads(json.dumps(first.cursor))
    second = log.read_changes(workspace, [beta.pk, gamma.pk], after=stored, limit=10)
    assert [(c.segment_id, c.person_id, c.change) for c in second.changes] == [
        (gamma.pk, ada.pk, "entered"), (beta.pk, ada.pk, "exited")]
    assert log.read_changes(workspace, [beta.pk, gamma.pk], after=second.cursor).changes == []
    # Another workspace's segment reads as empty.
    assert log.read_changes(workspace, [theirs.pk]).changes == []


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="concurrent writers need PostgreSQL; SQLite runs one at a time")
def test_a_reader_racing_writers_reads_every_entry_once(transactional_db):
    workspace = make_workspace("Race")
    pro = services.create_segment(workspace, name="Pro", conditions_tree=PRO)
    manual = services.create_segment(workspace, name="Beta")
    dependent = services.create_segment(workspace, name="Pro or beta", conditions_tree={
        "or": [{"segment": {"id": pro.pk}}, {"segment": {"id": manual.pk}}]})
    ids = [make_person(workspace, f"p{number}").pk for number in range(30)]
    segment_ids = [pro.pk, manual.pk, dependent.pk]
    read, cursor = [], {}

    def flip(rng):
        people.identify_person(workspace, Ref("id", f"p{rng.randrange(30)}"),
                               {"plan": rng.choice(["pro", "free"])})

    def manual_change(rng):
        chosen = rng.sample(ids, 5)
        if rng.random() < 0.5:
            services.add_to_segment(Segment.objects.get(pk=manual.pk), chosen)
        else:
            services.remove_from_segment(Segment.objects.get(pk=manual.pk), chosen)

    def recompute(rng):
        services.recompute_segment(Segment.objects.get(pk=rng.choice([pro.pk, dependent.pk])))

    def reader(rng):
        with transaction.atomic():
            page = log.read_changes(workspace, segment_ids, after=cursor, limit=7)
        read.extend(change.pk for change in page.changes)
        cursor.update(page.cursor)

    errors = race(flip, flip, manual_change, recompute, alongside=[reader])
    assert errors == []
    while page := log.read_changes(workspace, segment_ids, after=cursor).changes:
        read.extend(change.pk for change in page)
        cursor.update({change.segment_id: change.pk for change in page})

    logged = list(MembershipChange.objects.filter(segment_id__in=segment_ids)
                  .order_by("pk").values_list("pk", flat=True))
    assert len(logged) > 30  # the writers really wrote while the reader read
    assert len(read) == len(set(read))  # nothing read twice
    assert sorted(read) == logged  # nothing skipped
    for segment_id in segment_ids:
        replayed(Segment.objects.get(pk=segment_id))  # entries and exits alternate
