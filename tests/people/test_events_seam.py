"""The events seam: every path that stores a person's event announces it once, after
commit, with the person, the event and its name, so campaigns can trigger on it."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from people import batch, services
from people.models import Event
from people.services import Ref
from people.signals import StoredEvent, events_stored


@pytest.fixture
def stored():
    """Each events_stored send, as (workspace_id, events)."""
    sends = []

    def receiver(sender, workspace_id, events, **kwargs):
        sends.append((workspace_id, events))

    events_stored.connect(receiver)
    yield sends
    events_stored.disconnect(receiver)


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Run, as a commit would, the callbacks of what is done inside ``with commit():``."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def as_stored(*events):
    return [StoredEvent(event.person_id, event.pk, event.name) for event in events]


def test_a_tracked_event_is_announced_after_commit(workspace, stored,
                                                  django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        services.track_event(workspace, Ref("id", "u1"), name="purchase", data={"total": 3})
    assert stored == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert stored == [(workspace.pk, as_stored(Event.objects.get()))]


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_page_and_screen_views_are_announced(workspace, stored, commit, kind):
    with commit():
        services.track_event(workspace, Ref("id", "u1"), name="/pricing", type=kind)
    assert stored == [(workspace.pk, as_stored(Event.objects.get(type=kind)))]


def test_a_repeated_event_id_is_announced_once(workspace, stored, commit):
    for _ in range(2):
        with commit():
            services.track_event(workspace, Ref("id", "u1"), name="purchase", dedup_id="e1")
    assert stored == [(workspace.pk, as_stored(Event.objects.get()))]


def test_a_rolled_back_event_is_not_announced(workspace, stored, commit):
    with commit(), pytest.raises(RuntimeError), transaction.atomic():
        services.track_event(workspace, Ref("id", "u1"), name="purchase")
        raise RuntimeError("the caller's transaction fails")
    assert stored == [] and not Event.objects.exists()


def test_anonymous_events_are_announced_when_identify_links_them(workspace, stored, commit):
    with commit():
        services.track_anonymous_event(workspace, anonymous_id="anon-1", name="visit")
        services.track_anonymous_event(workspace, anonymous_id="anon-1", name="signup")
    assert stored == []  # nobody's yet

    with commit():
        services.identify_person(workspace, Ref("id", "u1"), {"anonymous_id": "anon-1"})

    visit, signup = Event.objects.order_by("pk")
    assert visit.person_id is not None
    assert stored == [(workspace.pk, as_stored(visit, signup))]

    stored.clear()  # a later anonymous event of that visitor is the person's at once
    with commit():
        services.track_anonymous_event(workspace, anonymous_id="anon-1", name="return")
    assert stored == [(workspace.pk, as_stored(Event.objects.get(name="return")))]


def test_identify_announces_only_the_events_it_links(workspace, stored, commit):
    too_old = timezone.now() - services.LINK_WINDOW - timedelta(days=1)
    services.track_anonymous_event(workspace, anonymous_id="anon-1", name="old",
                                   timestamp=int(too_old.timestamp()))
    services.track_anonymous_event(workspace, anonymous_id="anon-2", name="someone else")
    services.identify_person(workspace, Ref("id", "u1"), {})
    services.track_anonymous_event(workspace, anonymous_id="anon-1", name="recent")

    with commit():
        services.identify_person(workspace, Ref("id", "u1"), {"anonymous_id": "anon-1"})

    assert stored == [(workspace.pk, as_stored(Event.objects.get(name="recent")))]


def test_a_batch_run_announces_its_events_in_one_send(workspace, stored, commit):
    services.track_event(workspace, Ref("id", "u0"), name="buy", dedup_id="seen")
    operations = [{"type": "person", "action": action, "identifiers": {"id": f"u{n % 3}"},
                   "name": f"name-{n}", "id": f"e{n}"}
                  for n, action in enumerate(["event", "page", "screen"] * 10)]
    operations.append({"type": "person", "action": "event", "identifiers": {"id": "u0"},
                       "name": "buy", "id": "seen"})

    with commit():
        batch.apply_batch(workspace, operations)

    assert stored == [(workspace.pk, as_stored(*Event.objects.exclude(dedup_id="seen")
                                               .order_by("pk")))]
    assert len(stored[0][1]) == 30
