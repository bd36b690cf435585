"""Edits of a campaign's workflow, as the visual editor makes them, one small change each.

The pure functions (``add_step``, ``move_step``, ``delete_step``, ``update_step``,
``add_path``, ``remove_path``) take the workflow's block tree (``definition["workflow"]
["steps"]``) and return a changed copy, or raise ``EditError``; they never touch the
input. A place in the tree is a ``Slot``: the block step and path holding a sequence
(none for the top level) and a position in it.

The services (``add``, ``move``, ``delete``, ``update``, ``add_split_path``,
``remove_split_path``) apply one such change to a campaign with one call to
``campaigns.services.update_campaign`` and the version the editor saw, so an edit made
against an older version is refused (``StaleEdit``) rather than overwriting someone
else's. A repeated request (a double drop, a double click) changes nothing the second
time: an added step carries an id chosen before the request, and an edit that would
leave the workflow as it is saves nothing.
"""

import copy
from collections.abc import Callable
from dataclasses import dataclass

from campaigns import definition as definitions
from campaigns import services
from campaigns.models import Campaign, Journey

# Keys a settings edit may not change: the step's identity and its block structure.
FIXED_KEYS = {"id", "type", "paths"}
SPLIT_KEYS = "ABCDEFGHIJ"


class EditError(Exception):
    """An edit that does not fit the workflow as it is (a missing step, a bad slot)."""


class PeopleWaiting(Exception):  # noqa: N818 - a question to the editor, not a fault
    """The edit removes steps where people wait: say whether they move on or exit."""

    def __init__(self, count: int, step_ids: list[str]):
        self.count = count
        self.step_ids = step_ids
        super().__init__(f"{count} people wait at the steps this edit removes")


@dataclass(frozen=True)
class Slot:
    """A position in a sequence: top level (``parent`` None) or a block's path."""

    parent: str | None
    path: str | None
    index: int


# --- the block tree ------------------------------------------------------------------------


def _find(steps: list[dict], step_id: str) -> tuple[list[dict], int]:
    """Return the sequence holding ``step_id`` and its index there."""
    for index, step in enumerate(steps):
        if step.get("id") == step_id:
            return steps, index
        for path in step.get("paths") or []:
            found = _find(path["steps"], step_id)
            if found[0] is not None:
                return found
    return None, -1


def find_step(steps: list[dict], step_id: str) -> dict:
    """Return the step ``step_id`` of the tree, or raise EditError."""
    sequence, index = _find(steps, step_id)
    if sequence is None:
        raise EditError(f"there is no step {step_id} in this workflow")
    return sequence[index]


def step_ids(steps: list[dict]) -> list[str]:
    """Return the id of every step in ``steps`` and the blocks inside them, in order."""
    return [step["id"] for _, step in definitions.iter_steps(steps)]


def _sequence(steps: list[dict], parent: str | None, path: str | None) -> list[dict]:
    if parent is None:
        return steps
    block = find_step(steps, parent)
    for candidate in block.get("paths") or []:
        if candidate["key"] == path:
            return candidate["steps"]
    raise EditError(f"step {parent} has no path {path!r}")


def _insert(sequence: list[dict], index: int, step: dict) -> None:
    if not 0 <= index <= len(sequence):
        raise EditError(f"there is no position {index} on that path")
    sequence.insert(index, step)


def new_step(kind: str, step_id: str) -> dict:
    """Return a step of ``kind`` with its defaults: configured later, in its settings."""
    if kind not in definitions.STEP_FIELDS:
        raise EditError(f"there is no step type {kind!r}")
    if not definitions.STEP_ID.match(step_id or ""):
        raise EditError("a step id is 1 to 64 letters, digits, '_' or '-'")
    step = {"id": step_id, "type": kind, "name": "",
            **copy.deepcopy(definitions.STEP_FIELDS[kind])}
    if kind in definitions.FIXED_PATHS:
        step["paths"] = [{"key": key, "steps": []} for key in definitions.FIXED_PATHS[kind]]
    elif kind == "random_split":
        step["paths"] = [{"key": "A", "weight": 50, "steps": []},
                         {"key": "B", "weight": 50, "steps": []}]
    if kind == "create_event":
        step["name"] = None  # the event's name: a create_event step has no other
    return step


def add_step(steps: list[dict], kind: str, slot: Slot, *, step_id: str) -> list[dict]:
    """Return ``steps`` with a new ``kind`` step at ``slot``; unchanged if ``step_id`` is in
    it already (the same add, repeated)."""
    steps = copy.deepcopy(steps)
    if _find(steps, step_id)[0] is not None:
        return steps
    _insert(_sequence(steps, slot.parent, slot.path), slot.index, new_step(kind, step_id))
    return steps


def move_step(steps: list[dict], step_id: str, slot: Slot) -> list[dict]:
    """Return ``steps`` with ``step_id`` (and a block's contents) at ``slot``.

    ``slot.index`` is the position the step has once moved. A block cannot move into one
    of its own paths.
    """
    steps = copy.deepcopy(steps)
    sequence, index = _find(steps, step_id)
    if sequence is None:
        raise EditError(f"there is no step {step_id} in this workflow")
    step = sequence[index]
    if slot.parent is not None and slot.parent in step_ids([step]):
        raise EditError("a block cannot move into itself")
    target = _sequence(steps, slot.parent, slot.path)
    del sequence[index]
    _insert(target, slot.index, step)
    return steps


def delete_step(steps: list[dict], step_id: str) -> list[dict]:
    """Return ``steps`` without ``step_id`` (a block goes with everything on its paths)."""
    steps = copy.deepcopy(steps)
    sequence, index = _find(steps, step_id)
    if sequence is None:
        raise EditError(f"there is no step {step_id} in this workflow")
    del sequence[index]
    return steps


def update_step(steps: list[dict], step_id: str, settings: dict) -> list[dict]:
    """Return ``steps`` with ``settings`` replacing the step's fields of the same name.

    A random split's path weights come as ``{"weights": {key: weight}}``.
    """
    fixed = FIXED_KEYS & set(settings)
    if fixed:
        raise EditError(f"settings cannot change {', '.join(sorted(fixed))}")
    steps = copy.deepcopy(steps)
    step = find_step(steps, step_id)
    settings = copy.deepcopy(settings)
    weights = settings.pop("weights", None)
    if weights is not None:
        if step["type"] != "random_split":
            raise EditError("only a random split has weights")
        for path in step["paths"]:
            if path["key"] in weights:
                path["weight"] = weights[path["key"]]
    allowed = {"name", "person", *definitions.STEP_FIELDS[step["type"]]}
    unknown = set(settings) - allowed
    if unknown:
        raise EditError(f"a {step['type']} step has no {', '.join(sorted(unknown))}")
    step.update(settings)
    return steps


def _even_weights(paths: list[dict]) -> None:
    share, extra = divmod(100, len(paths))
    for index, path in enumerate(paths):
        path["weight"] = share + (1 if index < extra else 0)


def add_path(steps: list[dict], step_id: str) -> list[dict]:
    """Return ``steps`` with one more path on the random split ``step_id``, weights even."""
    steps = copy.deepcopy(steps)
    step = find_step(steps, step_id)
    if step["type"] != "random_split":
        raise EditError("only a random split takes more paths")
    if len(step["paths"]) >= definitions.MAX_PATHS:
        raise EditError(f"a random split has at most {definitions.MAX_PATHS} paths")
    taken = {path["key"] for path in step["paths"]}
    key = next(key for key in SPLIT_KEYS if key not in taken)
    step["paths"].append({"key": key, "weight": 0, "steps": []})
    _even_weights(step["paths"])
    return steps


def remove_path(steps: list[dict], step_id: str, key: str) -> list[dict]:
    """Return ``steps`` without the path ``key`` of the random split ``step_id`` (and its
    steps), weights even again."""
    steps = copy.deepcopy(steps)
    step = find_step(steps, step_id)
    if step["type"] != "random_split":
        raise EditError("only a random split's paths can be removed")
    kept = [path for path in step["paths"] if path["key"] != key]
    if len(kept) == len(step["paths"]):
        raise EditError(f"step {step_id} has no path {key!r}")
    if len(kept) < 2:
        raise EditError("a random split keeps at least 2 paths")
    step["paths"] = kept
    _even_weights(kept)
    return steps


# --- applying an edit to a campaign --------------------------------------------------------


def waiting_at(campaign: Campaign, ids: list[str]) -> int:
    """Return how many active journeys of ``campaign`` are at one of the steps ``ids``."""
    if not ids:
        return 0
    return Journey.objects.filter(campaign=campaign, state=Journey.State.ACTIVE,
                                  step_id__in=ids).count()


def _apply(campaign: Campaign, change: Callable[[list], list], *, version: int,
           removed_steps: str | None = "move_on") -> Campaign:
    """Save ``change`` of the campaign's workflow if ``version`` is still the saved one.

    A change that leaves the workflow as it is saves nothing (a repeated request). With
    ``removed_steps=None``, removing steps where people wait raises PeopleWaiting.
    """
    for attempt in range(2):
        steps = campaign.definition["workflow"]["steps"]
        changed = change(steps)
        if changed == steps:
            return campaign
        if campaign.version != version:
            raise services.StaleEdit(campaign)
        if removed_steps is None:
            kept = set(step_ids(changed))
            removed = [step_id for step_id in step_ids(steps) if step_id not in kept]
            count = waiting_at(campaign, removed)
            if count:
                raise PeopleWaiting(count, removed)
        definition = {**campaign.definition, "workflow": {"steps": changed}}
        try:
            return services.update_campaign(campaign, definition, version=version,
                                            removed_steps=removed_steps or "move_on")
        except services.StaleEdit as stale:
            if attempt:
                raise
            # Saved meanwhile: by this very request's twin, or by someone else. Look again.
            campaign = stale.campaign
    raise AssertionError("unreachable")


def add(campaign: Campaign, *, kind: str, slot: Slot, step_id: str, version: int) -> Campaign:
    """Add a ``kind`` step with the id ``step_id`` at ``slot``; return the campaign."""
    return _apply(campaign, lambda steps: add_step(steps, kind, slot, step_id=step_id),
                  version=version)


def move(campaign: Campaign, *, step_id: str, slot: Slot, version: int) -> Campaign:
    """Move the step ``step_id`` (a block with its contents) to ``slot``."""
    return _apply(campaign, lambda steps: move_step(steps, step_id, slot), version=version)


def delete(campaign: Campaign, *, step_id: str, version: int,
           removed_steps: str | None = None) -> Campaign:
    """Delete the step ``step_id``; people at it move on or exit (``removed_steps``).

    With ``removed_steps`` None, raise PeopleWaiting if anyone is at a removed step.
    """
    return _apply(campaign, lambda steps: delete_step(steps, step_id), version=version,
                  removed_steps=removed_steps)


def update(campaign: Campaign, *, step_id: str, settings: dict, version: int) -> Campaign:
    """Replace settings of the step ``step_id``."""
    return _apply(campaign, lambda steps: update_step(steps, step_id, settings),
                  version=version)


def add_split_path(campaign: Campaign, *, step_id: str, version: int) -> Campaign:
    """Add a path to the random split ``step_id``."""
    return _apply(campaign, lambda steps: add_path(steps, step_id), version=version)


def remove_split_path(campaign: Campaign, *, step_id: str, key: str, version: int,
                      removed_steps: str | None = None) -> Campaign:
    """Remove the path ``key`` of the random split ``step_id``, with its steps."""
    return _apply(campaign, lambda steps: remove_path(steps, step_id, key), version=version,
                  removed_steps=removed_steps)
