"""Seams through which other apps join in changes to people.

Receivers run inside the transaction of the change, so their work commits or rolls back
with it. They must work on the whole set at once (set-based SQL), never row by row.
"""

from typing import NamedTuple

from django.dispatch import Signal


class StoredEvent(NamedTuple):
    """An event stored for a person, as ``events_stored`` announces it."""

    person_id: int
    event_id: int
    name: str


# Sent before a batch of people is deleted, while their rows still exist.
# Arguments: workspace, person_ids (list[int]), cio_ids (list[str]), suppress (bool).
# Receivers remove what they keep about these people (memberships, journeys); when
# ``suppress`` is true they also strip the cio_id and recipient from what must stay
# (message metrics), so that only anonymous figures remain.
people_deleting = Signal()

# Sent when a secondary person is merged into a primary one, before the secondary is
# deleted. Arguments: workspace, primary_id (int), secondary_id (int).
# Receivers move to the primary what the primary lacks (manual segments, journeys).
people_merging = Signal()

# Sent after commit when people's attributes, events, subscription or identifiers
# changed. Arguments: workspace_id (int), person_ids (list[int]).
people_changed = Signal()

# Sent inside the transaction of that same change, before commit. Arguments as above.
# Receivers record what the change owes (people to re-evaluate), so that it commits with
# the change; the work itself follows after commit.
people_changing = Signal()

# Sent after commit when events were stored for people (tracked, batched, or anonymous
# events linked to the person identify named). Once a commit per call or batch run, never
# once per event. Arguments: workspace_id (int), events (list[StoredEvent]).
# Anonymous events are announced when they are linked to a person, not before.
events_stored = Signal()
