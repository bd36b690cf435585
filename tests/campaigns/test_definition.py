"""The campaign definition contract: normalised, or refused with the place of every problem."""

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns import definition as d
from segments.services import create_segment

pytestmark = pytest.mark.django_db


@pytest.fixture
def manual(workspace):
    return create_segment(workspace, name="VIP")


@pytest.fixture
def driven(workspace):
    return create_segment(workspace, name="Pro", conditions_tree={
        "attribute": {"field": "plan", "operator": "eq", "value": "pro"}})


def places(error: d.DefinitionError) -> dict[str, str]:
    return {problem.place: problem.message for problem in error.problems}


def refused(definition, workspace, **options) -> dict[str, str]:
    with pytest.raises(d.DefinitionError) as error:
        d.validate(definition, workspace=workspace, **options)
    return places(error.value)


def segment_campaign(segment, steps=(), **extra):
    return {"name": "Welcome", "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
            "workflow": {"steps": list(steps)}, **extra}


def email(**fields):
    return {"type": "email", "from": "team@example.com", "subject": "Hi",
            "body_html": "<p>Hi {{customer.first_name}}</p>", **fields}


def test_a_minimal_draft_gets_its_defaults(workspace, manual):
    result = d.validate(segment_campaign(manual), workspace=workspace)

    assert result == {
        "name": "Welcome", "description": "", "tags": [],
        "trigger": {"segments": {"match": "all", "segments": [{"id": manual.pk, "in": True}]}},
        "filters": None, "frequency": {"mode": "once"}, "goal": None, "exit": "unmatch",
        "send_to_unsubscribed": False,
        "grace_period": {"days": 0, "hours": 0, "minutes": 0, "seconds": 0},
        "workflow": {"steps": []},
    }


def test_every_step_gets_a_stable_unique_id(workspace, manual):
    steps = [email(), {"type": "delay", "duration": {"days": 1}},
             {"type": "branch", "condition": {"attribute": {"field": "plan", "operator": "exists"}},
              "paths": [{"key": "true", "steps": [email(id="kept")]},
                        {"key": "false", "steps": [{"type": "exit"}]}]}]

    first = d.validate(segment_campaign(manual, steps), workspace=workspace)
    again = d.validate(first, workspace=workspace)

    ids = [step["id"] for _, step in d.iter_steps(first["workflow"]["steps"])]
    assert len(ids) == len(set(ids)) == 5
    assert "kept" in ids
    assert again == first  # validating a normalised definition changes nothing


def test_problems_name_their_place_deep_in_the_tree(workspace, manual):
    steps = [email(), {"type": "delay", "duration": {"days": 1}},
             {"type": "branch", "condition": {"attribute": {"field": "plan", "operator": "eq",
                                                            "value": "pro"}},
              "paths": [{"key": "true", "steps": []},
                        {"key": "false", "steps": [{"type": "webhook", "url": "ftp://x"}]}]}]

    problems = refused(segment_campaign(manual, steps), workspace)

    assert problems == {"workflow.steps[2].paths[1].steps[0].url":
                        "must start with http:// or https://"}


def test_condition_problems_are_placed_inside_the_step(workspace, manual):
    steps = [{"type": "branch", "condition": {"and": [
        {"attribute": {"field": "plan", "operator": "bigger", "value": 1}}]}}]

    problems = refused(segment_campaign(manual, steps), workspace)

    assert list(problems) == ["workflow.steps[0].condition.and[0].attribute.operator"]


def test_a_draft_may_hold_unconfigured_steps_but_starting_refuses_them(workspace, manual):
    steps = [{"type": "email"}, {"type": "delay"},
             {"type": "wait_until", "paths": [{"key": "met", "steps": [{"type": "webhook"}]},
                                              {"key": "max_time", "steps": []}]},
             {"type": "update_attributes"}, {"type": "segment_membership"},
             {"type": "create_event"}]
    draft = d.validate(segment_campaign(manual, steps), workspace=workspace)

    problems = refused(draft, workspace, starting=True)

    assert set(problems) == {
        "workflow.steps[0].from", "workflow.steps[0].subject", "workflow.steps[0].body_html",
        "workflow.steps[1].duration", "workflow.steps[2].condition", "workflow.steps[2].max",
        "workflow.steps[2].paths[0].steps[0].url", "workflow.steps[3].set",
        "workflow.steps[4].segment", "workflow.steps[5].name"}
    assert [p.place for p in d.unconfigured(draft, workspace=workspace)] == list(problems)


def test_wrong_values_are_refused_even_in_a_draft(workspace, manual):
    steps = [email(subject=12, sending="later", tracking="yes"),
             {"type": "delay", "duration": {"days": -1}},
             {"type": "time_window", "days": ["mon", "someday"], "start": "9am",
              "timezone": "Mars/Olympus"},
             {"type": "random_split", "paths": [{"key": "A", "weight": 30, "steps": []},
                                                {"key": "B", "weight": 30, "steps": []}]},
             {"type": "teleport"}]

    problems = refused(segment_campaign(manual, steps), workspace)

    assert set(problems) == {
        "workflow.steps[0].subject", "workflow.steps[0].sending", "workflow.steps[0].tracking",
        "workflow.steps[1].duration.days", "workflow.steps[2].days", "workflow.steps[2].start",
        "workflow.steps[2].timezone", "workflow.steps[3].paths", "workflow.steps[4].type"}
    assert problems["workflow.steps[3].paths"] == "the weights add up to 60, not 100"


def test_a_typo_in_a_field_name_is_refused_not_ignored(workspace, manual):
    steps = [{"type": "webhook", "url": "https://example.com", "metod": "DELETE"}]

    problems = refused(segment_campaign(manual, steps, exits="never"), workspace)

    assert problems == {"exits": "unknown field 'exits'",
                        "workflow.steps[0].metod": "unknown field 'metod'"}


def test_step_ids_must_be_unique_and_well_formed(workspace, manual):
    steps = [email(id="a"), email(id="a"), email(id="no spaces")]

    problems = refused(segment_campaign(manual, steps), workspace)

    assert problems == {"workflow.steps[1].id": "another step already has the id 'a'",
                        "workflow.steps[2].id": "must be 1 to 64 letters, digits, '_' or '-'"}


@pytest.mark.parametrize("trigger, place", [
    (None, "trigger"),
    ({"segments": {}, "event": {}}, "trigger"),
    ({"segments": {"segments": [{"id": 99999}]}}, "trigger.segments.segments[0].id"),
    ({"segments": {"match": "most", "segments": [{"id": 1}]}}, "trigger.segments.match"),
    ({"event": {"name": "x" * 101}}, "trigger.event.name"),
    ({"event": {"name": "buy", "filters": [{"field": "sku", "operator": "like"}]}},
     "trigger.event.filters[0].operator"),
    ({"date": {"attribute": "renewal_at", "time": "25:00"}}, "trigger.date.time"),
    ({"date": {"attribute": "renewal_at", "offset_days": 400}}, "trigger.date.offset_days"),
    ({"date": {"attribute": "renewal_at", "recurrence": "weekly"}}, "trigger.date.recurrence"),
    ({"date": {"attribute": "a..b"}}, "trigger.date.attribute"),
    ({"form": {"id": "news letter"}}, "trigger.form.id"),
    ({"webhook": {"secret": "x"}}, "trigger.webhook.secret"),
])
def test_trigger_problems(workspace, trigger, place):
    problems = refused({"name": "x", "trigger": trigger}, workspace)
    assert place in problems, problems


def test_segments_of_another_workspace_are_unknown(workspace, other_workspace):
    theirs = create_segment(other_workspace, name="Theirs")

    problems = refused(segment_campaign(theirs), workspace)

    assert problems == {"trigger.segments.segments[0].id":
                        f"there is no segment {theirs.pk} in this workspace"}


def test_nobody_enters_on_only_not_being_in_segments(workspace, manual):
    campaign = {"name": "x", "trigger": {"segments": {"segments": [{"id": manual.pk,
                                                                    "in": False}]}}}
    assert "trigger.segments.segments" in refused(campaign, workspace)


def test_frequency_follows_the_trigger(workspace, manual):
    assert d.validate({"name": "x", "trigger": {"event": {"name": "buy"}}},
                      workspace=workspace)["frequency"] == {"mode": "every"}
    every_week = d.validate(segment_campaign(manual, frequency={"mode": "interval", "days": 7}),
                            workspace=workspace)
    assert every_week["frequency"] == {"mode": "interval", "days": 7}

    assert "frequency.mode" in refused(segment_campaign(manual, frequency={"mode": "every"}),
                                       workspace)
    assert "frequency.days" in refused(
        segment_campaign(manual, frequency={"mode": "interval", "days": 0}), workspace)
    assert "frequency.hours" in refused(
        {"name": "x", "trigger": {"event": {"name": "buy"}},
         "frequency": {"mode": "at_most_once"}}, workspace)
    assert "frequency" in refused(
        {"name": "x", "trigger": {"date": {"attribute": "renewal_at"}},
         "frequency": {"mode": "once"}}, workspace)


def test_a_campaign_with_filters_keeps_the_default_frequency(workspace, manual):
    filters = {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}}
    assert d.validate(segment_campaign(manual, filters=filters),
                      workspace=workspace)["filters"] == filters

    problems = refused(segment_campaign(manual, filters=filters, frequency={"mode": "rematch"}),
                       workspace)

    assert list(problems) == ["frequency"]


def test_goal_and_exit(workspace, manual, driven):
    goal = {"event": {"name": "purchase", "filters": [
        {"field": "total", "operator": "gt", "value": 10}]}, "within_days": 3}
    result = d.validate(segment_campaign(manual, goal=goal, exit="goal_or_unmatch"),
                        workspace=workspace)
    assert result["goal"] == goal and result["exit"] == "goal_or_unmatch"
    assert d.validate(segment_campaign(manual, goal={"enters_segment": driven.pk}),
                      workspace=workspace)["goal"] == {"enters_segment": driven.pk,
                                                       "within_days": 7}

    assert "exit" in refused(segment_campaign(manual, exit="goal"), workspace)
    assert "goal.leaves_segment" in refused(
        segment_campaign(manual, goal={"leaves_segment": 99999}), workspace)
    assert "goal.event.filters[0].value" in refused(
        segment_campaign(manual, goal={"event": {"name": "p", "filters": [
            {"field": "total", "operator": "gt", "value": "lots"}]}}), workspace)


def test_membership_steps_take_manual_segments_only(workspace, manual, driven):
    steps = [{"type": "segment_membership", "action": "add", "segment": manual.pk},
             {"type": "segment_membership", "action": "remove", "segment": driven.pk}]

    problems = refused(segment_campaign(manual, steps), workspace)

    assert list(problems) == ["workflow.steps[1].segment"]
    assert "data-driven" in problems["workflow.steps[1].segment"]


def test_data_campaign_steps_name_their_person(workspace):
    campaign = {"name": "Sync", "trigger": {"webhook": {}},
                "workflow": {"steps": [{"type": "update_attributes", "set": {"plan": "pro"}}]}}
    draft = d.validate(campaign, workspace=workspace)
    assert draft["exit"] == "never" and draft["frequency"] is None

    assert list(refused(draft, workspace, starting=True)) == ["workflow.steps[0].person"]
    campaign["workflow"]["steps"][0]["person"] = {"email": "{{trigger.email}}"}
    assert d.validate(campaign, workspace=workspace, starting=True)
    campaign["workflow"]["steps"][0]["person"] = {"phone": "1"}
    assert list(refused(campaign, workspace)) == ["workflow.steps[0].person"]
    assert "goal" in refused({**campaign, "goal": {"enters_segment": 1}}, workspace)


def test_people_campaign_steps_take_no_person(workspace, manual):
    steps = [{"type": "update_attributes", "set": {"a": 1}, "person": {"id": "x"}}]
    assert list(refused(segment_campaign(manual, steps), workspace)) == [
        "workflow.steps[0].person"]


def test_sizes_are_bounded(workspace, manual):
    many = [{"type": "exit"}] * (d.MAX_STEPS + 5)
    assert list(refused(segment_campaign(manual, many), workspace)) == [
        f"workflow.steps[{d.MAX_STEPS}]"]

    deep = []
    for _ in range(d.MAX_DEPTH + 1):
        deep = [{"type": "branch", "paths": [{"key": "true", "steps": deep},
                                             {"key": "false", "steps": []}]}]
    problems = refused(segment_campaign(manual, deep), workspace)
    assert any("nested at most" in message for message in problems.values())


def test_not_an_object(workspace):
    assert refused([], workspace) == {"(root)": "a campaign definition must be a JSON object"}


# --- property: normalising is stable -------------------------------------------------

leaf_steps = st.sampled_from([
    {"type": "delay", "duration": {"hours": 2}},
    {"type": "exit"},
    {"type": "update_attributes", "set": {"stage": "{{event.stage}}"}},
    {"type": "create_event", "name": "nudged", "data": {"n": 1}},
    {"type": "delete_person", "suppress": True},
    email(),
    {"type": "webhook", "method": "DELETE", "url": "https://example.com/{{customer.id}}"},
    {"type": "time_window", "days": ["fri", "mon"]},
])


def blocks(children):
    return st.one_of(
        st.builds(lambda t, f: {"type": "branch", "condition": {"attribute": {
            "field": "plan", "operator": "exists"}}, "paths": [{"key": "true", "steps": t},
                                                              {"key": "false", "steps": f}]},
                  children, children),
        st.builds(lambda a, b: {"type": "random_split", "paths": [
            {"key": "A", "weight": 40, "steps": a}, {"key": "B", "weight": 60, "steps": b}]},
                  children, children),
    )


workflows = st.recursive(st.lists(leaf_steps, max_size=3),
                         lambda children: st.lists(st.one_of(leaf_steps, blocks(children)),
                                                   max_size=3), max_leaves=12)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=workflows)
def test_normalising_is_stable_and_keeps_the_shape(workspace, steps):
    campaign = {"name": "x", "trigger": {"event": {"name": "buy"}},
                "workflow": {"steps": copy.deepcopy(steps)}}

    first = d.validate(campaign, workspace=workspace, starting=True)

    assert d.validate(first, workspace=workspace, starting=True) == first
    shape = [step["type"] for _, step in d.iter_steps(steps)]
    assert [step["type"] for _, step in d.iter_steps(first["workflow"]["steps"])] == shape
    ids = [step["id"] for _, step in d.iter_steps(first["workflow"]["steps"])]
    assert len(set(ids)) == len(ids)
