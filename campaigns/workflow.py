"""Moving through a workflow's block tree: what comes first, after a step, on a path.

A workflow is a sequence of steps; a step with ``paths`` holds one sequence per path,
and when a path ends the journey goes on after that step. ``next`` is never stored: it
is the next sibling, or what follows the enclosing block.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class _Place:
    step: dict
    siblings: list
    index: int
    parent: str | None  # the id of the block step whose path holds this step


class Workflow:
    def __init__(self, steps: list[dict]):
        self.steps = steps
        self._places: dict[str, _Place] = {}
        self._index(steps, None)

    def _index(self, steps: list[dict], parent: str | None) -> None:
        for index, step in enumerate(steps):
            self._places[step["id"]] = _Place(step, steps, index, parent)
            for path in step.get("paths") or []:
                self._index(path["steps"], step["id"])

    def __contains__(self, step_id: str) -> bool:
        return step_id in self._places

    def get(self, step_id: str) -> dict | None:
        place = self._places.get(step_id)
        return place.step if place else None

    def first(self) -> dict | None:
        return self.steps[0] if self.steps else None

    def after(self, step_id: str) -> dict | None:
        """Return the step that follows ``step_id`` once it is done, or None at the end."""
        place = self._places[step_id]
        while True:
            if place.index + 1 < len(place.siblings):
                return place.siblings[place.index + 1]
            if place.parent is None:
                return None
            place = self._places[place.parent]

    def on_path(self, step_id: str, key: str) -> dict | None:
        """Return the first step of the block's path ``key`` (or what follows an empty path)."""
        for path in self._places[step_id].step.get("paths") or []:
            if path["key"] == key:
                return path["steps"][0] if path["steps"] else self.after(step_id)
        raise KeyError(f"step {step_id} has no path {key!r}")

    def ids(self) -> list[str]:
        """Return every step id, in the order of the tree (depth first)."""
        return list(self._places)

    def successor_in(self, other: "Workflow", step_id: str) -> str | None:
        """Return the step of ``other`` a journey at ``step_id`` (gone from ``other``) goes on
        to: the first step after it here that ``other`` still has; None for the end."""
        step = self.after(step_id)
        while step is not None and step["id"] not in other:
            step = self.after(step["id"])
        return step["id"] if step else None
