"""Random workflows over random people: every journey's path is the plain reading of the tree."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns import engine, services
from campaigns.definition import iter_steps
from campaigns.models import Campaign, Journey, JourneyStep
from people.models import Event
from segments.services import create_segment
from tests.factories import make_person

PLANS = ["free", "pro", "team"]
START = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)

counter = iter(range(10**9))


def step_id() -> str:
    return f"s{next(counter)}"


leaves = st.one_of(
    st.builds(lambda hours: {"type": "delay", "duration": {"hours": hours}},
              st.integers(1, 30)),
    st.builds(lambda plan: {"type": "update_attributes", "set": {"plan": plan}},
              st.sampled_from(PLANS)),
    st.just({"type": "create_event", "name": "passed"}),
    st.just({"type": "exit"}),
)


def blocks(children):
    return st.one_of(
        st.builds(lambda plan, yes, no: {
            "type": "branch",
            "condition": {"attribute": {"field": "plan", "operator": "eq", "value": plan}},
            "paths": [{"key": "true", "steps": yes}, {"key": "false", "steps": no}]},
            st.sampled_from(PLANS), children, children),
        st.builds(lambda weight, a, b: {
            "type": "random_split",
            "paths": [{"key": "A", "weight": weight, "steps": a},
                      {"key": "B", "weight": 100 - weight, "steps": b}]},
            st.integers(1, 99), children, children),
    )


workflows = st.recursive(st.lists(leaves, max_size=3),
                         lambda children: st.lists(st.one_of(leaves, blocks(children)),
                                                   min_size=1, max_size=4),
                         max_leaves=10)


def with_ids(steps: list[dict]) -> list[dict]:
    out = []
    for step in steps:
        step = {**step, "id": step_id()}
        if "paths" in step:
            step["paths"] = [{**path, "steps": with_ids(path["steps"])}
                             for path in step["paths"]]
        out.append(step)
    return out


def reading(steps: list[dict], plan: str | None, journey_id: int):
    """The path a person with ``plan`` takes, read straight off the tree, and whether it
    reaches the end (or exits on the way)."""
    path: list[tuple[str, str]] = []
    attributes = {"plan": plan}

    def walk(sequence) -> bool:
        for step in sequence:
            kind = step["type"]
            if kind == "delay":
                path.extend([(step["id"], "waiting"), (step["id"], "done")])
            elif kind == "update_attributes":
                unchanged = attributes["plan"] == step["set"]["plan"]
                attributes.update(step["set"])
                path.append((step["id"], "done:unchanged" if unchanged else "done"))
            elif kind == "create_event":
                path.append((step["id"], "done"))
            elif kind == "exit":
                path.append((step["id"], "exited"))
                return False
            else:
                if kind == "branch":
                    wanted = step["condition"]["attribute"]["value"]
                    key = "true" if attributes["plan"] == wanted else "false"
                else:
                    key = engine.choose_path(journey_id, step["id"], step["paths"])
                path.append((step["id"], f"path:{key}"))
                chosen = next(p for p in step["paths"] if p["key"] == key)
                if not walk(chosen["steps"]):
                    return False
        return True

    return path, walk(steps)


@pytest.mark.django_db
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(steps=workflows, plans=st.lists(st.sampled_from([*PLANS, None]), min_size=1,
                                       max_size=6))
def test_every_journey_follows_the_tree(workspace, steps, plans):
    steps = with_ids(steps)
    segment = create_segment(workspace, name=f"seg{next(counter)}")
    campaign = services.create_campaign(workspace, {
        "name": "random", "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "exit": "never", "workflow": {"steps": steps}})
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    campaign.refresh_from_db()
    people = []
    for plan in plans:
        attributes = {"plan": plan} if plan else {}
        people.append(make_person(workspace, f"p{next(counter)}", **attributes))

    with time_machine.travel(START, tick=False) as traveller:
        engine.enter(campaign, [engine.Entry(f"k{p.pk}", p.pk, p.cio_id) for p in people])
        for _ in range(200):
            while engine.advance_due():
                pass
            if not Journey.objects.filter(campaign=campaign, state="active").exists():
                break
            traveller.shift(timedelta(hours=1))

    journeys = {j.person_id: j for j in Journey.objects.filter(campaign=campaign)}
    event_steps = {step["id"] for _, step in iter_steps(steps) if step["type"] == "create_event"}
    events = 0
    for person, plan in zip(people, plans, strict=True):
        journey = journeys[person.pk]
        expected, finished = reading(steps, plan, journey.pk)
        logged = list(JourneyStep.objects.filter(journey=journey).order_by("seq")
                      .values_list("step_id", "outcome"))
        assert logged == expected
        assert journey.state == ("finished" if finished else "exited")
        assert [row.seq for row in JourneyStep.objects.filter(journey=journey)
                .order_by("seq")] == list(range(1, len(expected) + 1))
        events += sum(1 for step, _ in expected if step in event_steps)
    assert Event.objects.filter(name="passed", person__in=people).count() == events