"""Workflow edits: the pure changes of the block tree, and applying them by version."""

import copy

import pytest
from django.utils import timezone

from campaigns import editing, services
from campaigns.definition import DefinitionError
from campaigns.editing import EditError, Slot
from campaigns.models import Campaign, Journey
from tests.factories import make_person


def tree():
    """A workflow with a branch holding a random split holding an email."""
    return [
        {"id": "wait", "type": "delay", "name": "", "duration": {"days": 1}},
        {"id": "check", "type": "branch", "name": "", "condition": None, "paths": [
            {"key": "true", "steps": [
                {"id": "split", "type": "random_split", "name": "", "paths": [
                    {"key": "A", "weight": 50, "steps": [{"id": "mail", "type": "email"}]},
                    {"key": "B", "weight": 50, "steps": []}]}]},
            {"key": "false", "steps": [{"id": "bye", "type": "exit"}]}]},
        {"id": "end", "type": "exit"},
    ]


def ids(steps):
    return editing.step_ids(steps)


def path(steps, *keys_and_ids):
    """Return the steps of a nested path: path(steps, "check", "true", "split", "A")."""
    sequence = steps
    for step_id, key in zip(keys_and_ids[::2], keys_and_ids[1::2], strict=True):
        block = next(step for step in sequence if step["id"] == step_id)
        sequence = next(p for p in block["paths"] if p["key"] == key)["steps"]
    return sequence


# --- the pure changes ----------------------------------------------------------------------


def test_add_puts_a_step_with_its_defaults_at_a_slot_of_a_nested_path():
    before = tree()
    after = editing.add_step(before, "webhook", Slot("split", "B", 0), step_id="hook")

    assert before == tree()  # the input is never changed
    added = path(after, "check", "true", "split", "B")[0]
    assert added == {"id": "hook", "type": "webhook", "name": "", "method": "POST",
                     "url": None, "headers": {}, "body": None, "sending": "automatic",
                     "response": []}
    top = editing.add_step(before, "delay", Slot(None, None, 3), step_id="last")
    assert ids(top)[-1] == "last"


def test_blocks_come_with_their_paths():
    steps = editing.add_step([], "branch", Slot(None, None, 0), step_id="b")
    steps = editing.add_step(steps, "wait_until", Slot(None, None, 1), step_id="w")
    steps = editing.add_step(steps, "random_split", Slot(None, None, 2), step_id="r")
    assert [[p["key"] for p in step["paths"]] for step in steps] == [
        ["true", "false"], ["met", "max_time"], ["A", "B"]]
    assert [p["weight"] for p in steps[2]["paths"]] == [50, 50]


def test_adding_the_same_step_id_again_changes_nothing():
    once = editing.add_step(tree(), "delay", Slot(None, None, 0), step_id="twice")
    assert editing.add_step(once, "delay", Slot(None, None, 0), step_id="twice") == once
    assert ids(once).count("twice") == 1


@pytest.mark.parametrize("slot, message", [
    (Slot(None, None, 4), "no position 4"),
    (Slot("check", "maybe", 0), "no path 'maybe'"),
    (Slot("ghost", "true", 0), "no step ghost"),
])
def test_add_refuses_slots_that_are_not_there(slot, message):
    with pytest.raises(EditError, match=message):
        editing.add_step(tree(), "delay", slot, step_id="new")


def test_add_refuses_unknown_types_and_bad_ids():
    with pytest.raises(EditError, match="no step type"):
        editing.add_step(tree(), "sms", Slot(None, None, 0), step_id="new")
    with pytest.raises(EditError, match="step id"):
        editing.add_step(tree(), "delay", Slot(None, None, 0), step_id="no spaces")


def test_moving_a_block_carries_its_contents_and_keeps_every_id():
    after = editing.move_step(tree(), "split", Slot("check", "false", 1))

    assert path(after, "check", "true") == []
    moved = path(after, "check", "false")
    assert [step["id"] for step in moved] == ["bye", "split"]
    assert path(after, "check", "false", "split", "A") == [{"id": "mail", "type": "email"}]
    assert sorted(ids(after)) == sorted(ids(tree()))


def test_moving_within_a_sequence_puts_the_step_at_its_new_index():
    assert [s["id"] for s in editing.move_step(tree(), "wait", Slot(None, None, 2))] == [
        "check", "end", "wait"]
    assert [s["id"] for s in editing.move_step(tree(), "end", Slot(None, None, 0))] == [
        "end", "wait", "check"]
    assert editing.move_step(tree(), "wait", Slot(None, None, 0)) == tree()


def test_moving_out_of_a_nested_path_to_the_top():
    after = editing.move_step(tree(), "mail", Slot(None, None, 0))
    assert ids(after)[0] == "mail"
    assert path(after, "check", "true", "split", "A") == []


@pytest.mark.parametrize("slot", [Slot("check", "true", 0), Slot("split", "B", 0)])
def test_a_block_cannot_move_into_itself(slot):
    with pytest.raises(EditError, match="into itself"):
        editing.move_step(tree(), "check", slot)


def test_delete_removes_a_nested_step_or_a_block_with_everything_on_it():
    assert "mail" not in ids(editing.delete_step(tree(), "mail"))
    assert ids(editing.delete_step(tree(), "check")) == ["wait", "end"]
    with pytest.raises(EditError):
        editing.delete_step(tree(), "ghost")


def test_update_replaces_settings_but_never_identity_or_structure():
    after = editing.update_step(tree(), "mail", {"subject": "Hi", "name": "Hello"})
    mail = path(after, "check", "true", "split", "A")[0]
    assert mail == {"id": "mail", "type": "email", "subject": "Hi", "name": "Hello"}
    for settings in ({"id": "x"}, {"type": "delay"}, {"paths": []}):
        with pytest.raises(EditError, match="cannot change"):
            editing.update_step(tree(), "mail", settings)
    with pytest.raises(EditError, match="has no url"):
        editing.update_step(tree(), "mail", {"url": "https://example.com"})


def test_split_weights_and_paths():
    weighted = editing.update_step(tree(), "split", {"weights": {"A": 30, "B": 70}})
    assert [p["weight"] for p in path(weighted, "check", "true")[0]["paths"]] == [30, 70]

    three = editing.add_path(weighted, "split")
    split = path(three, "check", "true")[0]
    assert [(p["key"], p["weight"]) for p in split["paths"]] == [("A", 34), ("B", 33),
                                                                   ("C", 33)]
    two = editing.remove_path(three, "split", "A")
    split = path(two, "check", "true")[0]
    assert [(p["key"], p["weight"]) for p in split["paths"]] == [("B", 50), ("C", 50)]
    assert "mail" not in ids(two)  # the path's steps went with it
    with pytest.raises(EditError, match="at least 2"):
        editing.remove_path(two, "split", "B")
    with pytest.raises(EditError, match="only a random split"):
        editing.add_path(tree(), "check")
    full = tree()
    for _ in range(8):
        full = editing.add_path(full, "split")
    with pytest.raises(EditError, match="at most 10"):
        editing.add_path(full, "split")


# --- applying edits to a campaign --------------------------------------------------------


def valid_tree():
    steps = copy.deepcopy(tree())
    steps[1]["condition"] = {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}}
    steps[1]["paths"][0]["steps"][0]["paths"][0]["steps"][0].update(
        {"from": "team@example.com", "subject": "Hi", "body_html": "<p>Hi</p>"})
    return steps


@pytest.fixture
def campaign(workspace):
    return services.create_campaign(workspace, {
        "name": "Nurture", "trigger": {"event": {"name": "signed_up"}},
        "workflow": {"steps": valid_tree()}})


@pytest.mark.django_db
def test_each_edit_saves_a_new_version(campaign):
    campaign = editing.add(campaign, kind="delay", slot=Slot("split", "B", 0),
                           step_id="pause", version=1)
    campaign = editing.move(campaign, step_id="pause", slot=Slot(None, None, 0), version=2)
    campaign = editing.update(campaign, step_id="pause",
                              settings={"duration": {"hours": 2}}, version=3)
    campaign = editing.add_split_path(campaign, step_id="split", version=4)
    campaign = editing.remove_split_path(campaign, step_id="split", key="C", version=5)
    campaign = editing.delete(campaign, step_id="pause", version=6)

    campaign.refresh_from_db()
    assert campaign.version == 7
    assert ids(campaign.definition["workflow"]["steps"]) == ids(valid_tree())


@pytest.mark.django_db
def test_an_edit_against_an_older_version_is_refused_and_saves_nothing(campaign):
    editing.add(campaign, kind="exit", slot=Slot(None, None, 0), step_id="first", version=1)
    stale_tab = Campaign.objects.get(pk=campaign.pk)  # as the other tab's request reads it
    with pytest.raises(services.StaleEdit) as stale:
        editing.add(stale_tab, kind="delay", slot=Slot(None, None, 0), step_id="other",
                    version=1)

    assert stale.value.campaign.version == 2
    campaign.refresh_from_db()
    assert campaign.version == 2 and "other" not in ids(campaign.definition["workflow"]["steps"])


@pytest.mark.django_db
def test_a_repeated_add_is_one_step_even_when_both_read_the_same_version(campaign):
    before_either = Campaign.objects.get(pk=campaign.pk)
    editing.add(campaign, kind="exit", slot=Slot(None, None, 0), step_id="once", version=1)
    # The twin read version 1 before the first was saved: its save finds version 2.
    again = editing.add(before_either, kind="exit", slot=Slot(None, None, 0),
                        step_id="once", version=1)

    assert again.version == 2
    assert ids(again.definition["workflow"]["steps"]).count("once") == 1


@pytest.mark.django_db
def test_a_running_campaign_takes_only_configured_steps(campaign):
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    campaign.refresh_from_db()
    with pytest.raises(DefinitionError):
        editing.add(campaign, kind="email", slot=Slot(None, None, 0), step_id="m",
                    version=1)
    campaign = editing.add(campaign, kind="exit", slot=Slot(None, None, 0), step_id="x",
                           version=1)
    assert campaign.version == 2


def waiting(campaign, step_id, key):
    person = make_person(campaign.workspace, key)
    now = timezone.now()
    return Journey.objects.create(workspace=campaign.workspace, campaign=campaign,
                                  person=person, cio_id=person.cio_id, entry_key=key,
                                  entered_at=now, step_id=step_id, next_run_at=now)


@pytest.mark.django_db
@pytest.mark.parametrize("choice, state, step_id", [
    ("move_on", Journey.State.ACTIVE, "end"),
    ("exit", Journey.State.EXITED, "check"),
])
def test_deleting_a_step_where_people_wait_asks_then_moves_them_on_or_exits_them(
        campaign, choice, state, step_id):
    journey = waiting(campaign, "check", "ada")
    waiting(campaign, "mail", "bob")  # inside the block: removed with it
    with pytest.raises(editing.PeopleWaiting) as asked:
        editing.delete(campaign, step_id="check", version=1)
    assert asked.value.count == 2
    assert Campaign.objects.get(pk=campaign.pk).version == 1  # nothing saved yet

    editing.delete(campaign, step_id="check", version=1, removed_steps=choice)

    journey.refresh_from_db()
    assert (journey.state, journey.step_id) == (state, step_id)
    assert Journey.objects.filter(campaign=campaign, state=state).count() == 2


@pytest.mark.django_db
def test_deleting_a_step_nobody_waits_at_asks_nothing(campaign):
    waiting(campaign, "wait", "ada")
    campaign = editing.delete(campaign, step_id="end", version=1)
    assert campaign.version == 2
