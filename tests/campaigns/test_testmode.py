"""Test mode: a dry run of a campaign's workflow for a person, on a virtual clock,
rendering messages and requests and writing nothing."""

from datetime import timedelta

import pytest
from django.db import connection

from campaigns import services, testmode
from campaigns.models import Delivery, Journey, JourneyStep
from people.models import Event, Person
from people.services import Ref, track_event
from segments.models import Membership
from segments.services import add_to_segment, create_segment
from tests.campaigns.insights_support import START
from tests.factories import make_person

pytestmark = pytest.mark.django_db

PRO = {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}}
MAIL = {"id": "mail", "type": "email", "name": "Welcome", "from": "team@example.com",
        "to": "{{customer.email}}", "subject": "Hi {{customer.first_name}}",
        "body_html": "<p>Your plan: {{customer.plan | default: 'none'}}</p>"}
HOOK = {"id": "hook", "type": "webhook", "name": "Tell CRM", "method": "POST",
        "url": "https://crm.example.com/people/{{customer.id}}",
        "headers": {"X-Plan": "{{customer.plan}}", "Authorization": "Bearer s3cret"},
        "body": {"email": "{{customer.email}}"}}


def campaign_with(workspace, steps, **definition):
    segment = create_segment(workspace, name="Trigger")
    campaign = services.create_campaign(workspace, {
        "name": "Onboarding", "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "exit": "never", "workflow": {"steps": steps}, **definition})
    campaign.trigger_segment = segment
    return campaign


@pytest.fixture
def ada(workspace):
    return make_person(workspace, "ada", email="ada@example.com", first_name="Ada")


class Writes:
    """Every INSERT, UPDATE or DELETE that runs while it is open."""

    def __init__(self):
        self.statements = []

    def __call__(self, execute, sql, params, many, context):
        if sql.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            self.statements.append(sql)
        return execute(sql, params, many, context)


def counts():
    return [model.objects.count() for model in (Person, Event, Membership, Journey,
                                                  JourneyStep, Delivery)]


def run(campaign, person, now=START):
    before, writes = counts(), Writes()
    person.refresh_from_db()
    stored = dict(person.attributes)
    with connection.execute_wrapper(writes):
        result = testmode.dry_run(campaign, person, now=now)
    assert writes.statements == []
    assert counts() == before
    person.refresh_from_db()
    assert person.attributes == stored
    return result


def outcomes(result):
    return [(moment.step_id, moment.at - START) for moment in result.moments]


def test_delays_and_time_windows_move_the_virtual_clock(workspace, ada):
    campaign = campaign_with(workspace, [
        {"id": "wait", "type": "delay", "duration": {"days": 2, "hours": 3}},
        {"id": "window", "type": "time_window", "days": ["mon", "tue", "wed", "thu", "fri"],
         "start": "09:00", "end": "17:00", "timezone": "UTC"},
        MAIL])

    result = run(campaign, ada)  # START: Monday 08:00 UTC

    assert outcomes(result) == [("wait", timedelta(0)), ("window", timedelta(days=2, hours=3)),
                                ("mail", timedelta(days=2, hours=3))]
    assert "goes on at once" in result.moments[1].outcome  # Wednesday 11:00 is inside

    friday_evening = START + timedelta(days=4, hours=10)
    result = run(campaign, ada, now=friday_evening)
    mail = result.moments[-1]
    assert mail.at == START + timedelta(days=7, hours=1)  # Sunday 21:00 waits for Monday 09:00
    assert "Outside the time window" in result.moments[1].outcome
    assert result.ended == "Finishes the workflow."


def test_a_time_window_in_the_persons_time_zone(workspace):
    tokyo = make_person(workspace, "tk", email="tk@example.com", timezone="Asia/Tokyo")
    campaign = campaign_with(workspace, [
        {"id": "window", "type": "time_window", "days": ["mon"], "start": "09:00",
         "end": "10:00", "timezone": "person", "fallback_timezone": "UTC"}, MAIL])

    result = run(campaign, tokyo)  # Monday 17:00 in Tokyo: next Monday 09:00 there

    assert result.moments[-1].at == START + timedelta(days=7, hours=-8)  # 00:00 UTC


def test_branches_see_attributes_an_earlier_step_set_in_memory(workspace, ada):
    campaign = campaign_with(workspace, [
        {"id": "before", "type": "branch", "condition": PRO, "paths": [
            {"key": "true", "steps": [{"id": "early_pro", "type": "exit"}]},
            {"key": "false", "steps": []}]},
        {"id": "upgrade", "type": "update_attributes", "set": {"plan": "pro"},
         "unset": ["first_name"]},
        {"id": "after", "type": "branch", "condition": PRO, "paths": [
            {"key": "true", "steps": [MAIL]}, {"key": "false", "steps": []}]}])

    result = run(campaign, ada)

    assert [moment.step_id for moment in result.moments] == ["before", "upgrade", "after",
                                                            "mail"]
    assert "false" in result.moments[0].outcome and "true" in result.moments[2].outcome
    assert result.moments[1].changes == {"plan": "pro", "first_name": None}
    assert result.attributes == {"email": "ada@example.com", "plan": "pro"}
    # The email sees the new attributes: the removed first name fails its subject.
    assert result.moments[3].email["subject"] is None
    assert result.moments[3].email["body_html"] == "<p>Your plan: pro</p>"
    assert result.moments[3].email["error"].startswith("subject:")
    assert result.moments[3].outcome.startswith("Would fail: subject:")


def test_a_wait_until_takes_the_met_path_or_its_longest_wait(workspace, ada):
    wait = {"id": "wait", "type": "wait_until", "condition": PRO, "max": {"days": 3},
            "paths": [{"key": "met", "steps": [{"id": "yes", "type": "exit"}]},
                      {"key": "max_time", "steps": [MAIL]}]}
    campaign = campaign_with(workspace, [wait])

    waited = run(campaign, ada)
    ada.attributes["plan"] = "pro"
    Person.objects.filter(pk=ada.pk).update(attributes={**ada.attributes})
    met = run(campaign, ada)

    assert outcomes(waited) == [("wait", timedelta(0)), ("mail", timedelta(days=3))]
    assert [moment.step_id for moment in met.moments] == ["wait", "yes"]
    assert met.ended == "Exits at an exit step."


def test_branches_read_events_and_segments_as_they_are(workspace, ada):
    track_event(workspace, Ref("id", "ada"), name="purchase", data={"total": 30})
    campaign = campaign_with(workspace, [
        {"id": "bought", "type": "branch", "condition": {"event": {"name": "purchase"}},
         "paths": [{"key": "true", "steps": [MAIL]}, {"key": "false", "steps": []}]}])

    result = run(campaign, ada)

    assert [moment.step_id for moment in result.moments] == ["bought", "mail"]


def test_emails_and_webhooks_are_rendered_not_sent(workspace, ada):
    campaign = campaign_with(workspace, [
        {"id": "plan", "type": "update_attributes", "set": {"plan": "team"}, "unset": []},
        MAIL, HOOK, {**MAIL, "id": "draft", "sending": "draft"}])

    result = run(campaign, ada)

    mail, hook, draft = result.moments[1:]
    assert mail.email == {"from": "team@example.com", "to": "ada@example.com",
                          "reply_to": None, "subject": "Hi Ada",
                          "body_html": "<p>Your plan: team</p>", "body_text": None,
                          "error": None}
    assert mail.outcome == "Would be sent (not sent in a test)."
    assert hook.webhook["url"] == "https://crm.example.com/people/ada"
    assert hook.webhook["headers"] == {"X-Plan": "team", "Authorization": "(hidden)"}
    assert '"email": "ada@example.com"' in hook.webhook["body"]
    assert hook.webhook["method"] == "POST"
    assert draft.outcome == "Would be drafted for an editor to send."


def test_an_unsubscribed_person_is_skipped_unless_the_step_allows(workspace):
    cy = make_person(workspace, "cy", email="cy@example.com", first_name="Cy",
                     unsubscribed=True)
    campaign = campaign_with(workspace, [MAIL, {**MAIL, "id": "legal",
                                                "send_to_unsubscribed": True}])

    result = run(campaign, cy)

    assert result.moments[0].outcome == "Would be skipped: the person is unsubscribed."
    assert result.moments[1].outcome == "Would be sent (not sent in a test)."


def test_filters_stop_entry_or_skip_a_message_as_the_engine_does(workspace, ada):
    campaign = campaign_with(workspace, [
        MAIL, {"id": "drop", "type": "update_attributes", "set": {}, "unset": ["plan"]},
        {**MAIL, "id": "second"}], filters=PRO)

    outside = run(campaign, ada)
    Person.objects.filter(pk=ada.pk).update(attributes={**ada.attributes, "plan": "pro"})
    inside = run(campaign, ada)

    assert outside.moments == []
    assert outside.ended.startswith("Would not enter: they do not match the campaign's filters")
    assert inside.moments[0].outcome == "Would be sent (not sent in a test)."
    assert inside.moments[2].outcome == ("Would be skipped: the person no longer matches the "
                                         "campaign's filters.")


def test_the_exit_rule_says_where_they_would_leave(workspace, ada):
    campaign = campaign_with(workspace, [
        {"id": "wait", "type": "delay", "duration": {"hours": 1}}, MAIL, HOOK],
        exit="unmatch")

    gone = run(campaign, ada)
    add_to_segment(campaign.trigger_segment, [ada.pk])
    stays = run(campaign, ada)

    assert "They do not meet the trigger now" in gone.notes[0]
    assert [moment.step_id for moment in gone.moments] == ["wait", "mail"]
    assert gone.moments[-1].stops and "exit here" in gone.moments[-1].outcome
    assert gone.ended == "Exits: no longer matching."
    assert [moment.step_id for moment in stays.moments] == ["wait", "mail", "hook"]
    assert stays.notes == []


def test_the_exit_rule_and_the_filters_apply_before_a_webhook_too(workspace, ada):
    gone = run(campaign_with(workspace, [
        {"id": "wait", "type": "delay", "duration": {"hours": 1}}, HOOK], exit="unmatch"), ada)
    Person.objects.filter(pk=ada.pk).update(attributes={**ada.attributes, "plan": "pro"})
    skipped = run(campaign_with(workspace, [
        {"id": "drop", "type": "update_attributes", "set": {}, "unset": ["plan"]}, HOOK],
        filters=PRO), ada)

    assert [moment.step_id for moment in gone.moments] == ["wait", "hook"]
    assert gone.moments[-1].stops and "exit here" in gone.moments[-1].outcome
    assert gone.ended == "Exits: no longer matching."
    assert skipped.moments[-1].outcome == ("Would be skipped: the person no longer matches "
                                           "the campaign's filters.")


def test_exit_and_delete_steps_end_the_run(workspace, ada):
    campaign = campaign_with(workspace, [{"id": "bye", "type": "delete_person",
                                          "suppress": True}, MAIL])

    result = run(campaign, ada)

    assert [moment.step_id for moment in result.moments] == ["bye"]
    assert result.ended == "Exits: the campaign would delete and suppress them."


def test_random_splits_segment_changes_and_events_are_only_described(workspace, ada):
    manual = create_segment(workspace, name="VIP")
    campaign = campaign_with(workspace, [
        {"id": "split", "type": "random_split", "paths": [
            {"key": "A", "weight": 50, "steps": []}, {"key": "B", "weight": 50, "steps": []}]},
        {"id": "vip", "type": "segment_membership", "action": "add", "segment": manual.pk},
        {"id": "note", "type": "create_event", "name": "onboarded",
         "data": {"who": "{{customer.first_name}}"}}])

    result = run(campaign, ada)

    assert result.moments[0].outcome.startswith("A random split: shown taking path ")
    assert result.moments[1].outcome.startswith("Would add them to VIP")
    assert result.moments[2].outcome == 'Would record the event onboarded with {"who": "Ada"}.'


def test_event_triggers_use_the_persons_latest_such_event(workspace, ada):
    track_event(workspace, Ref("id", "ada"), name="signup", data={"source": "ads"},
                timestamp=int(START.timestamp()) - 60)
    campaign = services.create_campaign(workspace, {
        "name": "On signup", "trigger": {"event": {"name": "signup"}},
        "workflow": {"steps": [{**MAIL, "subject": "From {{event.source}}"}]}})

    result = run(campaign, ada)

    assert result.moments[0].email["subject"] == "From ads"
    assert "latest signup event" in result.notes[0]


def test_finding_and_sampling_people(workspace, other_workspace, ada):
    bob = make_person(workspace, "bob", email="bob@example.com")
    make_person(other_workspace, "eve", email="eve@example.com")

    assert testmode.find_person(workspace, "ADA@example.com") == ada
    assert testmode.find_person(workspace, "bob") == bob
    assert testmode.find_person(workspace, ada.cio_id) == ada
    assert testmode.find_person(workspace, "eve@example.com") is None
    assert testmode.find_person(workspace, "  ") is None
    sample = testmode.sample_people(workspace, 5)
    assert 1 <= len(sample) <= 2 and set(sample) <= {ada, bob}
    assert testmode.sample_people(other_workspace, 1)[0].customer_id == "eve"


def test_someone_who_already_meets_the_goal_would_exit_on_entry(workspace, ada):
    customers = create_segment(workspace, name="Customers")
    add_to_segment(customers, [ada.pk])
    campaign = campaign_with(workspace, [MAIL], goal={"enters_segment": customers.pk,
                                                     "within_days": 7}, exit="goal")

    result = run(campaign, ada)

    assert result.moments == []
    assert result.ended.startswith("Would exit on entry: they already meet the campaign's goal")


def test_a_grace_period_is_named_where_they_would_leave(workspace, ada):
    campaign = campaign_with(workspace, [MAIL], exit="unmatch", grace_period={"hours": 6})

    result = run(campaign, ada)

    assert "after a grace period of 6 hours they would exit here" in result.moments[0].outcome


def test_a_draft_campaign_stops_at_its_first_unconfigured_step(workspace, ada):
    campaign = campaign_with(workspace, [
        {"id": "ok", "type": "delay", "duration": {"hours": 1}},
        {"id": "todo", "type": "branch", "condition": None, "paths": None}, MAIL])

    result = run(campaign, ada)

    assert [moment.step_id for moment in result.moments] == ["ok", "todo"]
    assert result.moments[-1].outcome.startswith("Not configured yet: condition: ")
    assert result.ended == "Stops at a step that is not configured yet."


def test_a_data_campaign_renders_with_the_trigger_data_given(workspace, ada):
    campaign = services.create_campaign(workspace, {
        "name": "Orders", "trigger": {"webhook": {}}, "workflow": {"steps": [
            {**MAIL, "person": {"id": "{{trigger.customer}}"},
             "subject": "Order {{trigger.order}}"}]}})

    given = testmode.dry_run(campaign, ada, now=START, trigger={"order": 7, "customer": "ada"})
    without = run(campaign, ada)

    assert given.moments[0].email["subject"] == "Order 7"
    assert without.moments[0].outcome.startswith("Would fail: subject:")
