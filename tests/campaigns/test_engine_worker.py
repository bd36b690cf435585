"""Real workers, SIGKILLed again and again mid-run: every journey finishes, once."""

import pytest
from django.db.models import Count
from django.utils import timezone
from django_q.tasks import async_task

from campaigns import engine, services
from campaigns.models import Campaign, Journey, JourneyStep
from people.models import Event, Person
from segments.services import create_segment
from tests.workers import cluster, needs_shared_database, real_tasks, redis_url, wait_for  # noqa: F401

pytestmark = needs_shared_database

PEOPLE = 1200
# Generous bounds: on a loaded 2-core machine a cluster takes seconds to start.
ROUND_TIMEOUT = 240
KILLS = 3


@pytest.fixture(params=["orm", "redis"])
def broker(request):
    if request.param == "orm":
        return {}
    return {"REDIS_URL": request.getfixturevalue("redis_url")}


def sweep(clusters: int = 2) -> None:
    for _ in range(clusters * 2):
        async_task("campaigns.tasks.advance_journeys", 4)


def test_killed_workers_apply_every_step_exactly_once(cluster, workspace, broker):  # noqa: F811
    segment = create_segment(workspace, name="Everyone")
    campaign = services.create_campaign(workspace, {
        "name": "Under fire", "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "workflow": {"steps": [
            {"id": "first", "type": "create_event", "name": "first"},
            {"id": "pause", "type": "delay", "duration": {"seconds": 1}},
            {"id": "mark", "type": "update_attributes", "set": {"stage": "marked"}},
            {"id": "second", "type": "create_event", "name": "second"}]}})
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    campaign.refresh_from_db()
    now = timezone.now()
    Person.objects.bulk_create(
        Person(workspace=workspace, customer_id=f"u{n}", attributes={}, created_at=now,
               updated_at=now) for n in range(PEOPLE))
    engine.enter(campaign, [engine.Entry(f"p{pk}", pk, cio_id) for pk, cio_id in
                            Person.objects.values_list("pk", "cio_id")])

    steps_done = 0
    for _ in range(KILLS):
        workers = [cluster(**broker).start() for _ in range(2)]
        sweep()
        assert wait_for(lambda done=steps_done: JourneyStep.objects.count() >= done + 150,
                        timeout=ROUND_TIMEOUT)
        for worker in workers:
            worker.kill()  # SIGKILL, mid-batch
        steps_done = JourneyStep.objects.count()
        # Whatever committed is whole: an event exists exactly where its step row does.
        for name in ("first", "second"):
            assert Event.objects.filter(name=name).count() == \
                JourneyStep.objects.filter(step_id=name).count()

    workers = [cluster(**broker).start() for _ in range(2)]
    sweep()
    assert wait_for(lambda: not Journey.objects.filter(state="active").exists(), timeout=600,
                    interval=0.5), Journey.objects.filter(state="active").count()

    assert Journey.objects.filter(state="finished").count() == PEOPLE
    for name in ("first", "second"):
        per_person = Event.objects.filter(name=name).values("person").annotate(n=Count("id"))
        assert per_person.count() == PEOPLE and {row["n"] for row in per_person} == {1}
    assert JourneyStep.objects.count() == 5 * PEOPLE  # first, pause twice, mark, second
    assert Person.objects.filter(attributes__stage="marked").count() == PEOPLE
