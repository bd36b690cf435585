"""Campaign pages of what a campaign did and would do: the overview and its CSV, the
journeys, the people at a step, a delivery, drafts, test mode and a person's journeys."""

import csv
import io

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Delivery, Journey
from engage.models import Membership
from tests.campaigns.insights_support import MAIL, START, STEPS, delivery_of, enter, running
from tests.factories import make_member, make_person

pytestmark = pytest.mark.django_db

HOOK = {"id": "hook", "type": "webhook", "name": "Tell CRM", "method": "POST",
        "url": "https://crm.example.com/{{customer.id}}", "body": {"plan": "{{customer.plan}}"}}


@pytest.fixture(autouse=True)
def travel():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def url(name, campaign, *args):
    return reverse(f"campaigns:{name}", args=[campaign.pk, *args])


def people(workspace, *names):
    return [make_person(workspace, name, email=f"{name}@example.com", first_name=name.title())
            for name in names]


@pytest.fixture
def campaign(workspace):
    return running(workspace)


@pytest.fixture
def drafted(workspace):
    campaign = running(workspace, [{**MAIL, "sending": "draft"}], name="Drafted")
    found = people(workspace, "ada", "bob", "cy")
    enter(campaign, found)
    return campaign, [delivery_of(campaign, person) for person in found]


def state_of(delivery):
    return Delivery.objects.get(pk=delivery.pk).state


# --- access -------------------------------------------------------------------------------


def test_the_pages_need_a_login_and_stay_in_their_workspace(client, workspace,
                                                           other_workspace, drafted):
    campaign, (ada, *_) = drafted
    pages = [url("overview", campaign), url("overview-csv", campaign),
             url("journey-list", campaign), url("step-people", campaign, "mail"),
             url("step-deliveries", campaign, "mail"),
             url("delivery-detail", campaign, ada.pk), url("draft-list", campaign),
             url("test", campaign)]
    for page in pages:
        assert client.get(page).status_code == 302
    client.force_login(make_member(other_workspace, Membership.Role.ADMIN))
    for page in pages:
        assert client.get(page).status_code == 404, page
    assert client.post(url("draft-bulk", campaign), {
        "delivery": [ada.pk], "action": "send"}).status_code == 404
    person = ada.journey.person
    assert client.get(reverse("campaigns:person-journeys", args=[person.cio_id])
                      ).status_code == 404


def test_a_delivery_of_another_campaign_is_not_found_under_this_one(client, viewer,
                                                                   workspace, drafted):
    campaign, (ada, *_) = drafted
    other = running(workspace, name="Other")
    assert client.get(url("delivery-detail", other, ada.pk)).status_code == 404


# --- the overview -------------------------------------------------------------------------


def test_the_overview_shows_totals_steps_and_the_chart_data(client, viewer, workspace,
                                                           campaign, travel):
    ada, bob = people(workspace, "ada", "bob")
    enter(campaign, [ada, bob])
    Delivery.objects.filter(pk=delivery_of(campaign, ada).pk).update(
        state=Delivery.State.SENT, sent_at=timezone.now(), opened_at=timezone.now())

    response = client.get(url("overview", campaign))

    assert response.status_code == 200
    assert response.context["totals"] == {"entered": 2, "active": 2, "finished": 0,
                                          "exited": 0, "converted": 0}
    steps = {row["id"]: row["metrics"] for row in response.context["steps"]}
    assert (steps["mail"]["sent"], steps["mail"]["opened"], steps["wait"]["waiting"]) == (
        1, 1, 2)
    chart = response.context["chart"]
    assert chart["days"][-1] == START.date().isoformat() and len(chart["days"]) == 30
    assert (chart["entered"][-1], chart["sent"][-1], chart["opened"][-1]) == (2, 1, 1)
    html = response.content.decode()
    assert 'id="daily-data"' in html and "uPlot.iife.min.js" in html
    assert url("step-people", campaign, "wait") in html


def test_the_overview_takes_the_same_queries_for_more_steps_and_people(
        client, viewer, workspace, django_assert_max_num_queries):
    few = running(workspace, STEPS, name="Few")
    many = running(workspace, [*STEPS, *[{"id": f"d{n}", "type": "delay",
                                          "duration": {"days": n + 1}} for n in range(15)]],
                   name="Many")
    enter(few, people(workspace, "ada"))
    enter(many, people(workspace, *[f"p{n}" for n in range(10)]))

    with django_assert_max_num_queries(12) as few_queries:
        client.get(url("overview", few))
    with django_assert_max_num_queries(len(few_queries)):
        client.get(url("overview", many))


def test_the_csv_holds_what_the_overview_shows(client, viewer, workspace, campaign):
    ada, bob = people(workspace, "ada", "bob")
    enter(campaign, [ada, bob])

    response = client.get(url("overview-csv", campaign))

    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["campaign", "entered", "active", "finished", "exited", "converted"]
    assert rows[1] == ["Welcome", "2", "2", "0", "0", "0"]
    assert rows[3][:5] == ["step_id", "step", "type", "entered", "waiting"]
    assert rows[4][:5] == ["mail", "Welcome mail", "email", "2", "0"]
    assert rows[5][:5] == ["wait", "Delay", "delay", "2", "2"]
    days = rows[rows.index(["day", "entered", "sent", "opened", "clicked", "converted"]) + 1:]
    assert len(days) == 30 and days[-1] == [START.date().isoformat(), "2", "0", "0", "0", "0"]


def test_the_csv_keeps_names_that_look_like_formulas_as_text(client, viewer, workspace):
    campaign = running(workspace, [{**MAIL, "name": "=HYPERLINK(\"x\")"}], name="+Sales")

    rows = list(csv.reader(io.StringIO(client.get(url("overview-csv", campaign))
                                       .content.decode())))

    assert rows[1][0] == "'+Sales" and rows[4][1] == "'=HYPERLINK(\"x\")"


# --- journeys, the people at a step, a person's journeys -------------------------------


def test_the_journey_list_filters_by_state_and_pages_by_key(client, viewer, workspace,
                                                           campaign, monkeypatch):
    found = people(workspace, "ada", "bob", "cy")
    enter(campaign, found)
    Journey.objects.filter(person=found[0]).update(state=Journey.State.EXITED,
                                                   exit_reason="unmatched")
    monkeypatch.setattr("campaigns.insights_views.PAGE_SIZE", 1)

    first = client.get(url("journey-list", campaign))
    second = client.get(url("journey-list", campaign), {"before": first.context["before"]},
                        HTTP_HX_REQUEST="true")
    exited = client.get(url("journey-list", campaign), {"state": "exited"})

    assert [journey.person for journey in first.context["journeys"]] == [found[2]]
    rows = second.content.decode()
    assert "<table" not in rows  # the rows only
    assert reverse("person-detail", args=[found[1].cio_id]) in rows
    assert reverse("person-detail", args=[found[2].cio_id]) not in rows
    assert [journey.person for journey in exited.context["journeys"]] == [found[0]]
    html = exited.content.decode()
    assert "unmatched" in html and reverse("person-detail", args=[found[0].cio_id]) in html
    assert "Delay" in first.content.decode()  # the step they are at


def test_the_people_waiting_at_a_step(client, viewer, workspace, campaign):
    ada, bob = people(workspace, "ada", "bob")
    enter(campaign, [ada, bob])
    Journey.objects.filter(person=bob).update(state=Journey.State.EXITED)

    response = client.get(url("step-people", campaign, "wait"))

    assert [journey.person for journey in response.context["journeys"]] == [ada]
    assert reverse("person-detail", args=[ada.cio_id]) in response.content.decode()
    assert client.get(url("step-people", campaign, "mail")).context["journeys"] == []


def test_a_persons_page_loads_their_journeys(client, viewer, workspace, campaign):
    (ada,) = people(workspace, "ada")
    enter(campaign, [ada])

    page = client.get(reverse("person-detail", args=[ada.cio_id])).content.decode()
    section = client.get(reverse("campaigns:person-journeys", args=[ada.cio_id]))

    assert reverse("campaigns:person-journeys", args=[ada.cio_id]) in page
    html = section.content.decode()
    assert "Welcome" in html and "Active" in html and "Delay" in html
    assert "Welcome mail" in html and "delivery:queued" in html
    assert url("delivery-detail", campaign, delivery_of(campaign, ada).pk) in html


# --- one delivery -------------------------------------------------------------------------


def test_a_delivery_shows_its_state_and_the_message_rendered_for_the_person(
        client, viewer, workspace, campaign):
    (ada,) = people(workspace, "ada")
    enter(campaign, [ada])
    delivery = delivery_of(campaign, ada)
    Delivery.objects.filter(pk=delivery.pk).update(
        state=Delivery.State.FAILED, reason="550 mailbox unavailable")

    response = client.get(url("delivery-detail", campaign, delivery.pk))

    html = response.content.decode()
    assert "Failed" in html and "550 mailbox unavailable" in html
    assert response.context["email"]["subject"] == "Hi Ada"
    assert "Hello Ada" in html  # in the preview's srcdoc, escaped
    assert "<p>Hello Ada</p>" not in html


def test_a_sent_delivery_shows_what_was_sent_and_a_webhook_its_response(
        client, viewer, workspace):
    campaign = running(workspace, [MAIL, HOOK], name="Hooks")
    (ada,) = people(workspace, "ada")
    enter(campaign, [ada])
    mail = Delivery.objects.get(campaign=campaign, step_id="mail")
    Delivery.objects.filter(pk=mail.pk).update(state=Delivery.State.SENT, payload={
        "rendered": {"from": "team@example.com", "to": "ada@example.com", "reply_to": None,
                     "subject": "Hi Ada (sent)", "message_id": "<m1@example.com>"}})
    enter(campaign, [])
    hook = Delivery.objects.get(campaign=campaign, step_id="hook")
    Delivery.objects.filter(pk=hook.pk).update(state=Delivery.State.SENT, payload={
        "rendered": {"method": "POST", "url": "https://crm.example.com/ada", "status": 201},
        "response": {"status": 201, "headers": {"Content-Type": "application/json"},
                     "body": '{"ok": true}'}})

    sent = client.get(url("delivery-detail", campaign, mail.pk)).content.decode()
    called = client.get(url("delivery-detail", campaign, hook.pk))

    assert "Hi Ada (sent)" in sent and "&lt;m1@example.com&gt;" in sent
    html = called.content.decode()
    assert "POST https://crm.example.com/ada" in html and "201" in html
    assert "{&quot;ok&quot;: true}" in html and "Content-Type" in html
    assert called.context["webhook"]["error"].startswith("body:")  # ada has no plan


# --- drafts -------------------------------------------------------------------------------


def test_the_drafts_list_previews_each_draft(client, viewer, drafted):
    campaign, deliveries = drafted

    response = client.get(url("draft-list", campaign))

    assert [item["delivery"] for item in response.context["items"]] == deliveries[::-1]
    assert [item["email"]["subject"] for item in response.context["items"]] == [
        "Hi Cy", "Hi Bob", "Hi Ada"]
    assert 'name="delivery"' not in response.content.decode()  # a viewer cannot choose


def test_the_drafts_list_takes_the_same_queries_for_more_drafts(
        client, viewer, workspace, django_assert_max_num_queries):
    few = running(workspace, [{**MAIL, "sending": "draft"}], name="Few")
    many = running(workspace, [{**MAIL, "sending": "draft"}], name="Many")
    enter(few, people(workspace, "ada"))
    enter(many, people(workspace, *[f"p{n}" for n in range(12)]))

    with django_assert_max_num_queries(12) as few_queries:
        client.get(url("draft-list", few))
    with django_assert_max_num_queries(len(few_queries)):
        assert len(client.get(url("draft-list", many)).context["items"]) == 12


def test_an_editor_sends_and_discards_drafts_in_bulk_once(client, editor, drafted):
    campaign, (ada, bob, cy) = drafted

    sent = client.post(url("draft-bulk", campaign), {"delivery": [ada.pk, bob.pk],
                                                     "action": "send"}, follow=True)
    again = client.post(url("draft-bulk", campaign), {"delivery": [ada.pk, bob.pk],
                                                      "action": "send"}, follow=True)
    client.post(url("draft-bulk", campaign), {"delivery": [cy.pk], "action": "discard"})

    assert [state_of(d) for d in (ada, bob, cy)] == ["queued", "queued", "discarded"]
    assert "Queued for sending: 2 drafts." in sent.content.decode()
    assert "2 drafts had been sent or discarded already" in again.content.decode()
    assert client.get(url("draft-list", campaign)).context["items"] == []


def test_a_drafts_own_buttons_act_on_it_alone(client, editor, drafted):
    campaign, (ada, bob, cy) = drafted

    client.post(url("draft-bulk", campaign), {"delivery": [ada.pk, bob.pk],
                                              "send_one": str(bob.pk)})
    client.post(url("draft-bulk", campaign), {"discard_one": str(cy.pk)})

    assert [state_of(d) for d in (ada, bob, cy)] == ["drafted", "queued", "discarded"]


def test_viewers_cannot_change_drafts_even_with_a_forged_post(client, viewer, drafted):
    campaign, (ada, *_) = drafted

    assert client.post(url("draft-bulk", campaign), {"delivery": [ada.pk],
                                                     "action": "send"}).status_code == 403
    assert client.post(url("draft-update", campaign, ada.pk), {
        "subject": "x", "body_html": "y"}).status_code == 403
    assert client.get(url("draft-update", campaign, ada.pk)).status_code == 403
    assert state_of(ada) == "drafted"


def test_an_editor_edits_a_draft_and_the_preview_follows(client, editor, drafted):
    campaign, (ada, *_) = drafted

    form = client.get(url("draft-update", campaign, ada.pk))
    saved = client.post(url("draft-update", campaign, ada.pk), {
        "subject": "Special for {{customer.first_name}}", "body_html": "<p>Edited</p>",
        "body_text": ""})

    assert form.context["form"].initial["subject"] == MAIL["subject"]
    assert saved.status_code == 302
    ada.refresh_from_db()
    assert ada.payload["message"]["subject"] == "Special for {{customer.first_name}}"
    detail = client.get(url("delivery-detail", campaign, ada.pk))
    assert detail.context["email"]["subject"] == "Special for Ada"
    assert "as edited" in detail.content.decode()
    bad = client.post(url("draft-update", campaign, ada.pk), {"subject": "x", "body_html": " "})
    assert bad.status_code == 400 and "needs an HTML or a text body" in bad.content.decode()
    client.post(url("draft-update", campaign, ada.pk), {"subject": "Plain", "body_text": "Hi"})
    ada.refresh_from_db()
    assert (ada.payload["message"]["body_html"], ada.payload["message"]["body_text"]) == (
        None, "Hi")


def test_editing_a_draft_that_was_sent_meanwhile_changes_nothing(client, editor, drafted):
    campaign, (ada, *_) = drafted
    client.post(url("draft-bulk", campaign), {"delivery": [ada.pk], "action": "send"})

    response = client.post(url("draft-update", campaign, ada.pk),
                           {"subject": "late", "body_html": "late"}, follow=True)

    assert "not a drafted email any more" in response.content.decode()
    ada.refresh_from_db()
    assert "message" not in ada.payload


def test_bulk_actions_need_an_action_and_a_choice(client, editor, drafted):
    campaign, (ada, *_) = drafted
    nothing = client.post(url("draft-bulk", campaign), {"action": "send"}, follow=True)
    unknown = client.post(url("draft-bulk", campaign), {"delivery": [ada.pk],
                                                        "action": "delete"}, follow=True)
    assert "No drafts were checked." in nothing.content.decode()
    assert "Choose Send or Discard." in unknown.content.decode()
    assert state_of(ada) == "drafted"


# --- test mode ----------------------------------------------------------------------------


def test_test_mode_runs_the_workflow_for_a_person_found_by_email(client, viewer, workspace,
                                                               campaign):
    people(workspace, "ada")
    writes = []

    def no_writes(execute, sql, params, many, context):
        if sql.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            writes.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(no_writes):
        response = client.get(url("test", campaign), {"person": "ada@example.com"})

    assert writes == []

    (run,) = response.context["runs"]
    assert [moment.step_id for moment in run.moments] == ["mail", "wait", "tag"]
    html = response.content.decode()
    assert "Would be sent (not sent in a test)." in html and "Hi Ada" in html
    assert Journey.objects.count() == 0 and Delivery.objects.count() == 0


def test_test_mode_says_when_nobody_is_found_and_runs_a_sample(client, viewer, workspace,
                                                              other_workspace, campaign):
    people(workspace, "ada", "bob")
    people(other_workspace, "eve")

    missing = client.get(url("test", campaign), {"person": "eve@example.com"})
    swapped = client.get(url("test", campaign), {"person": "ada"}, HTTP_HX_REQUEST="true")
    assert "<form" not in swapped.content.decode()
    assert "Would be sent (not sent in a test)." in swapped.content.decode()
    sample = client.get(url("test", campaign), {"sample": "50"})

    assert missing.context["runs"] == [] and "Nobody in this workspace" in missing.context[
        "problem"]
    names = {run.person.customer_id for run in sample.context["runs"]}
    assert names and names <= {"ada", "bob"}


def test_a_webhook_draft_in_the_list_shows_its_request(client, viewer, workspace):
    campaign = running(workspace, [{**HOOK, "body": None, "sending": "draft"}], name="Hooks")
    enter(campaign, people(workspace, "ada"))

    response = client.get(url("draft-list", campaign))

    (item,) = response.context["items"]
    assert item["webhook"]["url"] == "https://crm.example.com/ada"
    assert "POST https://crm.example.com/ada" in response.content.decode()


def test_an_editor_is_a_member_here_only(workspace, other_workspace, drafted):
    campaign, (ada, *_) = drafted
    outsider = Client()
    outsider.force_login(make_member(other_workspace, Membership.Role.EDITOR))
    assert outsider.post(url("draft-bulk", campaign), {
        "delivery": [ada.pk], "action": "discard"}).status_code == 404
    assert state_of(ada) == "drafted"


# --- one step's figures, for any page that shows a step (the workflow canvas) ----------


def test_the_step_metrics_tag_renders_one_steps_figures(workspace, campaign):
    from django.template import Context, Template

    from campaigns import metrics

    enter(campaign, people(workspace, "ada", "bob"))
    figures = metrics.step_metrics(campaign)
    template = Template("{% load campaign_insights %}"
                        "{% step_metrics figures 'wait' campaign_id %}|"
                        "{% step_metrics figures 'mail' campaign_id 'email' %}|"
                        "{% step_metrics figures 'gone' %}")

    wait, mail, gone = template.render(Context({"figures": figures,
                                                "campaign_id": campaign.pk})).split("|")

    assert 'data-metric="waiting"><a href="{}">2</a>'.format(
        url("step-people", campaign, "wait")) in wait
    assert 'data-metric="sent"' not in wait  # a delay sends nothing
    assert 'data-metric="entered">2<' in mail and 'data-metric="sent">0<' in mail
    assert 'data-metric="drafted"' not in gone
    assert 'data-metric="entered">0<' in gone


def test_a_steps_deliveries_by_state_link_to_each_delivery(client, viewer, workspace,
                                                          campaign):
    ada, bob = people(workspace, "ada", "bob")
    enter(campaign, [ada, bob])
    failed = delivery_of(campaign, bob)
    Delivery.objects.filter(pk=failed.pk).update(state=Delivery.State.FAILED,
                                                 reason="550 no such user")

    overview = client.get(url("overview", campaign)).content.decode()
    listed = client.get(url("step-deliveries", campaign, "mail"), {"state": "failed"})
    everything = client.get(url("step-deliveries", campaign, "mail"))

    assert url("step-deliveries", campaign, "mail") + "?state=failed" in overview
    assert list(listed.context["deliveries"]) == [failed]
    assert "550 no such user" in listed.content.decode()
    assert url("delivery-detail", campaign, failed.pk) in listed.content.decode()
    assert len(everything.context["deliveries"]) == 2


def test_a_persons_journeys_followed_as_a_link_are_a_page(client, viewer, workspace, campaign):
    (ada,) = people(workspace, "ada")
    enter(campaign, [ada])

    page = client.get(reverse("campaigns:person-journeys", args=[ada.cio_id]))
    section = client.get(reverse("campaigns:person-journeys", args=[ada.cio_id]),
                         HTTP_HX_REQUEST="true")

    assert "<html" in page.content.decode() and "Back to their page" in page.content.decode()
    assert "<html" not in section.content.decode()
    assert 'id="person-journeys"' in section.content.decode()


def test_test_mode_of_a_data_campaign_takes_trigger_data(client, viewer, workspace):
    from campaigns import services

    campaign = services.create_campaign(workspace, {
        "name": "Orders", "trigger": {"webhook": {}}, "workflow": {"steps": [
            {**MAIL, "person": {"email": "{{trigger.email}}"},
             "subject": "Order {{trigger.order}}"}]}})
    people(workspace, "ada")

    page = client.get(url("test", campaign))
    run = client.get(url("test", campaign), {"person": "ada",
                                             "trigger": '{"order": 42, "email": "x"}'})
    broken = client.get(url("test", campaign), {"person": "ada", "trigger": "[1"})
    listed = client.get(url("test", campaign), {"person": "ada", "trigger": "[1]"})

    assert 'name="trigger"' in page.content.decode()
    (result,) = run.context["runs"]
    assert result.moments[0].email["subject"] == "Order 42"
    assert "with the trigger data given" in result.notes[0]
    assert broken.context["runs"] == [] and "not JSON" in broken.context["problem"]
    assert listed.context["problem"] == "The trigger data must be a JSON object."
