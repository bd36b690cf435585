"""Engagement conditions: what people did with their messages, in segments and branches."""

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from campaigns import engine, tracking
from campaigns.models import Delivery, JourneyStep
from segments import services as segment_services
from segments.builder_forms import Builder
from segments.conditions import ConditionError, compile_tree, matching_people, validate
from segments.models import Segment
from tests.campaigns.test_tracking import MAIL, running_campaign, sent_delivery
from tests.factories import make_person
from tests.segments.test_builder import form_fields, problems_of, rows

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def travel():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def history(workspace, other_workspace, travel):
    """ada opened and clicked a message 3 days ago; bob's bounced 40 days ago; cy got one
    in another campaign and did nothing; dee got nothing. Another workspace's engagement
    never counts."""
    people = {name: make_person(workspace, name, email=f"{name}@example.com")
              for name in ("ada", "bob", "cy", "dee")}
    welcome = running_campaign(workspace, name="Welcome")
    other = running_campaign(workspace, name="Other")
    travel.move_to(START - timedelta(days=40))
    sent_delivery(workspace, people["bob"], campaign=welcome, message_id="bob-1")
    from campaigns import bounces

    bounces.record_bounce(kind="hard", message_id="bob-1", workspace=workspace)
    travel.move_to(START - timedelta(days=3))
    ada_mail = sent_delivery(workspace, people["ada"], campaign=welcome)
    tracking.record_click(ada_mail.pk)
    sent_delivery(workspace, people["cy"], campaign=other)
    stranger = make_person(other_workspace, "ada", email="ada@example.com")
    tracking.record_click(sent_delivery(other_workspace, stranger, key="x").pk)
    travel.move_to(START)
    return {"workspace": workspace, "welcome": welcome, "other": other, **people}


def names(workspace, tree, *, correlated):
    validate(tree, workspace=workspace)
    people = matching_people(workspace, tree, now=START, correlated=correlated)
    return set(people.values_list("customer_id", flat=True))


def test_validation_names_each_problem(workspace):
    validate({"engagement": {"metric": "opened", "channel": "email", "within_days": 30,
                             "campaign_id": 5}}, workspace=workspace)
    with pytest.raises(ConditionError) as error:
        validate({"or": [{"engagement": {"metric": "read"}},
                         {"engagement": {"metric": "sent", "within_days": 0}},
                         {"engagement": {"metric": "sent", "campaign_id": "5"}},
                         {"engagement": {"metric": "sent", "channel": "sms", "when": 1}},
                         {"engagement": "opened"}]}, workspace=workspace)
    assert error.value.problems == [
        ("or[0].engagement.metric", "metric must be one of sent, delivered, opened, clicked, "
                                    "converted, bounced, unsubscribed"),
        ("or[1].engagement.within_days",
         "within_days must be a number above 0 and at most 36500 (100 years)"),
        ("or[2].engagement.campaign_id", "campaign_id must be a campaign's id"),
        ("or[3].engagement", "unknown keys ['when']"),
        ("or[3].engagement.channel", "channel must be one of email, webhook"),
        ("or[4].engagement", "engagement needs a metric, as in {\"metric\": \"opened\"}"),
    ]


def test_within_days_makes_a_tree_time_relative(workspace):
    assert validate({"engagement": {"metric": "opened", "within_days": 7}},
                    workspace=workspace).time_relative
    assert not validate({"engagement": {"metric": "opened"}}, workspace=workspace).time_relative


@pytest.mark.parametrize("correlated", [False, True], ids=["set-wide", "correlated"])
@pytest.mark.parametrize(("body", "expected"), [
    ({"metric": "sent"}, {"ada", "bob", "cy"}),
    ({"metric": "sent", "channel": "email"}, {"ada", "bob", "cy"}),
    ({"metric": "sent", "channel": "webhook"}, set()),
    ({"metric": "delivered"}, {"ada", "cy"}),
    ({"metric": "opened"}, {"ada"}),
    ({"metric": "clicked", "within_days": 7}, {"ada"}),
    ({"metric": "clicked", "within_days": 2}, set()),
    ({"metric": "bounced"}, {"bob"}),
    ({"metric": "bounced", "within_days": 30}, set()),
    ({"metric": "sent", "within_days": 30}, {"ada", "cy"}),
    ({"metric": "unsubscribed"}, set()),
    ({"metric": "converted"}, set()),
])
def test_both_forms_select_the_same_people(history, body, expected, correlated):
    assert names(history["workspace"], {"engagement": body}, correlated=correlated) == expected


@pytest.mark.parametrize("correlated", [False, True], ids=["set-wide", "correlated"])
def test_a_campaign_and_negation(history, correlated):
    workspace, welcome, other = history["workspace"], history["welcome"], history["other"]
    assert names(workspace, {"engagement": {"metric": "sent", "campaign_id": welcome.pk}},
                 correlated=correlated) == {"ada", "bob"}
    assert names(workspace, {"engagement": {"metric": "sent", "campaign_id": other.pk}},
                 correlated=correlated) == {"cy"}
    assert names(workspace, {"not": {"engagement": {"metric": "opened"}}},
                 correlated=correlated) == {"bob", "cy", "dee"}
    assert names(workspace, {"and": [
        {"engagement": {"metric": "sent"}},
        {"attribute": {"field": "email", "operator": "starts_with", "value": "c"}}]},
        correlated=correlated) == {"cy"}


def test_each_form_reads_deliveries_by_the_persons_cio_id(workspace):
    tree = {"engagement": {"metric": "opened", "campaign_id": 4}}
    set_wide = compile_tree(tree, now=START, workspace_id=workspace.pk)
    correlated = compile_tree(tree, now=START, correlated=True, workspace_id=workspace.pk)
    assert set_wide.sql.startswith("people_person.cio_id IN (SELECT dl.cio_id FROM "
                                   "campaigns_delivery dl WHERE dl.workspace_id = %s")
    assert set_wide.params == [workspace.pk, 4]
    assert correlated.sql.startswith(
        "EXISTS (SELECT 1 FROM campaigns_delivery dl WHERE dl.workspace_id = "
        "people_person.workspace_id AND dl.cio_id = people_person.cio_id")
    assert correlated.params == [4]


def test_a_segment_preview_and_its_members(history):
    workspace = history["workspace"]
    tree = {"engagement": {"metric": "opened", "within_days": 30}}
    preview = segment_services.preview(workspace, tree)
    assert preview.count == 1 and [p.customer_id for p in preview.sample] == ["ada"]

    segment = segment_services.create_segment(workspace, name="Openers", conditions_tree=tree)
    segment_services.recompute_segment(segment)
    assert set(segment.memberships.values_list("person__customer_id", flat=True)) == {"ada"}
    segment.refresh_from_db()
    assert segment.time_relative


def test_an_open_puts_the_person_in_the_segment_in_real_time(history,
                                                             django_capture_on_commit_callbacks):
    workspace = history["workspace"]
    segment = segment_services.create_segment(workspace, name="Openers", conditions_tree={
        "engagement": {"metric": "opened"}})
    segment_services.recompute_segment(segment)
    cy_mail = Delivery.objects.get(cio_id=history["cy"].cio_id)

    with django_capture_on_commit_callbacks(execute=True):
        tracking.record_open(cy_mail.pk)
    segment_services.evaluate_pending(workspace.pk)  # what the queued task runs

    assert set(segment.memberships.values_list("person__customer_id", flat=True)) == {
        "ada", "cy"}


def test_a_branch_on_engagement(history):
    workspace = history["workspace"]
    campaign = running_campaign(workspace, name="Follow up", steps=[
        {"id": "if", "type": "branch",
         "condition": {"engagement": {"metric": "clicked", "campaign_id": history["welcome"].pk,
                                      "within_days": 7}},
         "paths": [{"key": "true", "steps": [{"id": "thanks", "type": "update_attributes",
                                              "set": {"engaged": True}}]},
                   {"key": "false", "steps": [{**MAIL, "id": "nudge"}]}]}])
    engine.enter(campaign, [engine.Entry(f"e:{history[name].pk}", history[name].pk,
                                         history[name].cio_id) for name in ("ada", "bob")])
    while engine.advance_due():
        pass

    outcomes = dict(JourneyStep.objects.filter(journey__campaign=campaign, step_id="if")
                    .values_list("journey__person__customer_id", "outcome"))
    assert outcomes == {"ada": "path:true", "bob": "path:false"}
    history["ada"].refresh_from_db()
    assert history["ada"].attributes["engaged"] is True
    assert Delivery.objects.filter(campaign=campaign, step_id="nudge").count() == 1


def test_the_builder_edits_and_saves_an_engagement_row(client, editor, history):
    new = reverse("segments:new")
    added = client.post(new, {"op": "add:engagement:0", "name": "Engaged",
                              **rows((0, "and", None, {}))}, HTTP_HX_REQUEST="true")
    fields = form_fields(added)
    assert (fields["n-1-kind"], fields["n-1-metric"]) == ("engagement", "opened")

    welcome = str(history["welcome"].pk)
    data = rows((0, "and", None, {}), (1, "engagement", 0, {
        "metric": "sent", "channel": "email", "within_days": "", "campaign_id": welcome}))
    preview = client.post(reverse("segments:preview"), data).content.decode()
    assert re.search(r'id="preview-count" data-count="2"', preview)

    bad = rows((0, "and", None, {}), (1, "engagement", 0, {"metric": "opened",
                                                            "within_days": "soon"}))
    assert problems_of(client.post(reverse("segments:preview"), bad), 1) == [
        "within_days must be a number above 0 and at most 36500 (100 years)"]

    client.post(new, {"name": "Engaged", "kind": "data_driven", **data})
    segment = Segment.objects.get(name="Engaged")
    assert segment.conditions == {"and": [{"engagement": {
        "metric": "sent", "channel": "email", "campaign_id": int(welcome)}}]}
    edit = form_fields(client.get(reverse("segments:edit", kwargs={"pk": segment.pk})))
    assert (edit["n-1-metric"], edit["n-1-channel"], edit["n-1-campaign_id"]) == (
        "sent", "email", welcome)
    assert Builder.from_tree(segment.conditions).tree() == segment.conditions


def test_a_conversion_puts_the_person_in_a_converted_segment(workspace, travel):
    from django.utils import timezone

    from campaigns import goals
    from segments.models import PendingEvaluation

    ada = make_person(workspace, "ada", email="ada@example.com")
    campaign = running_campaign(workspace, name="Goal")
    definition = {**campaign.definition, "goal": {"event": {"name": "purchase"},
                                                  "within_days": 7}}
    type(campaign).objects.filter(pk=campaign.pk).update(definition=definition)
    campaign.refresh_from_db()
    sent_delivery(workspace, ada, campaign=campaign)
    segment = segment_services.create_segment(workspace, name="Converted", conditions_tree={
        "engagement": {"metric": "converted", "campaign_id": campaign.pk}})
    PendingEvaluation.objects.all().delete()

    # The goal is reached after the event's own change was announced (and maybe evaluated).
    assert goals.reach_goal(campaign, [(ada.pk, timezone.now())]) == 1

    assert PendingEvaluation.objects.filter(person_id=ada.pk).exists()
    segment_services.evaluate_pending(workspace.pk)
    assert list(segment.memberships.values_list("person__customer_id", flat=True)) == ["ada"]


def test_an_email_sent_puts_the_person_in_a_sent_segment_in_real_time(
        workspace, smtp_sink, django_capture_on_commit_callbacks):
    from campaigns import email
    from tests.campaigns.test_email import queue, running

    ada = make_person(workspace, "ada", email="ada@example.com")
    segment = segment_services.create_segment(workspace, name="Mailed", conditions_tree={
        "engagement": {"metric": "sent"}})
    segment_services.recompute_segment(segment)
    campaign = running(workspace, [{**MAIL, "id": "hello"}])
    queue(campaign, ada)
    assert not segment.memberships.exists()

    with django_capture_on_commit_callbacks(execute=True):
        assert email.send_due_emails() == 1
    segment_services.evaluate_pending(workspace.pk)  # what the queued task runs

    assert [m["To"] for m in smtp_sink.messages] == ["ada@example.com"]
    assert set(segment.memberships.values_list("person__customer_id", flat=True)) == {"ada"}
