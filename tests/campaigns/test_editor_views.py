"""The workflow editor's views: the canvas, each edit, stale edits, roles, CSRF, workspaces."""

from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest
from django.test import Client

from campaigns import services, webhooks
from campaigns.editor_forms import TYPE_LABELS
from campaigns.models import Campaign, Journey
from engage.models import Membership
from segments.services import create_segment
from tests.factories import make_member, make_person

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def definition(**extra):
    return {"name": "Nurture", "trigger": {"event": {"name": "signed_up"}},
            "workflow": {"steps": [
                {"id": "wait", "type": "delay", "duration": {"days": 1}},
                {"id": "check", "type": "branch", "paths": [
                    {"key": "true", "steps": [{"id": "mail", "type": "email"}]},
                    {"key": "false", "steps": []}]},
                {"id": "split", "type": "random_split"},
            ]}, **extra}


@pytest.fixture
def campaign(workspace):
    return services.create_campaign(workspace, definition())


def url(campaign, action=""):
    return f"/campaigns/{campaign.pk}/workflow/{action}"


def steps_of(campaign):
    return Campaign.objects.get(pk=campaign.pk).definition["workflow"]["steps"]


def ids(steps):
    from campaigns.editing import step_ids

    return step_ids(steps)


def test_the_canvas_shows_every_step_with_edit_controls_and_flags_unconfigured_ones(
        client, editor, campaign):
    response = client.get(url(campaign))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="palette"' in html and html.count('class="palette-item"') == 12
    for step_id in ("wait", "check", "mail", "split"):
        assert f'id="step-{step_id}"' in html
    # Slots: before and after each step of each sequence (top 3 steps, true 1, false 0,
    # A 0, B 0): 4 + 2 + 1 + 1 + 1.
    assert html.count('class="slot"') == 9
    assert html.count('class="step-flag"') == 2  # the email and the branch's condition
    assert 'data-version="1"' in html


def test_a_viewer_sees_the_canvas_without_edit_controls(client, viewer, campaign):
    html = client.get(url(campaign)).content.decode()
    assert 'id="step-mail"' in html
    assert 'id="palette"' not in html and 'class="slot"' not in html
    assert "step-delete" not in html and 'data-editable="false"' in html
    panel = client.get(url(campaign, "steps/mail/"), **HTMX).content.decode()
    assert "<fieldset disabled>" in panel and "save-step" not in panel


@pytest.mark.parametrize("action, data", [
    ("add/", {"type": "delay", "index": "0", "step_id": "new"}),
    ("move/", {"step": "wait", "index": "1"}),
    ("delete/", {"step": "wait"}),
    ("paths/add/", {"step": "split"}),
    ("paths/remove/", {"step": "split", "key": "A"}),
    ("steps/wait/", {"days": "2"}),
])
def test_viewers_get_403_on_forged_edits_and_nothing_changes(client, viewer, campaign,
                                                            action, data):
    response = client.post(url(campaign, action), {**data, "version": "1"}, **HTMX)
    assert response.status_code == 403
    assert Campaign.objects.get(pk=campaign.pk).version == 1


def test_an_archived_campaign_is_read_only(client, editor, campaign):
    services.archive_campaign(campaign)
    html = client.get(url(campaign)).content.decode()
    assert 'data-editable="false"' in html and "Archived: read-only" in html
    response = client.post(url(campaign, "add/"), {"type": "exit", "index": "0",
                                                   "step_id": "x", "version": "1"}, **HTMX)
    assert response.status_code == 403
    assert Campaign.objects.get(pk=campaign.pk).version == 1


def test_another_workspaces_campaign_is_404(client, editor, other_workspace):
    theirs = services.create_campaign(other_workspace, definition())
    assert client.get(url(theirs)).status_code == 404
    assert client.get(url(theirs, "steps/wait/"), **HTMX).status_code == 404
    response = client.post(url(theirs, "delete/"), {"step": "wait", "version": "1"}, **HTMX)
    assert response.status_code == 404
    assert Campaign.objects.get(pk=theirs.pk).version == 1


def test_add_at_a_slot_of_a_path(client, editor, campaign):
    response = client.post(url(campaign, "add/"), {
        "type": "webhook", "parent": "check", "path": "false", "index": "0",
        "step_id": "hook", "version": "1"}, **HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="step-hook"' in html and 'data-version="2"' in html
    assert steps_of(campaign)[1]["paths"][1]["steps"][0]["type"] == "webhook"


def test_a_repeated_add_adds_one_step(client, editor, campaign):
    data = {"type": "delay", "index": "0", "step_id": "once", "version": "1"}
    assert client.post(url(campaign, "add/"), data, **HTMX).status_code == 200
    again = client.post(url(campaign, "add/"), data, **HTMX)

    assert again.status_code == 200
    assert 'data-version="2"' in again.content.decode()
    assert ids(steps_of(campaign)).count("once") == 1


def test_move_a_block_with_its_contents(client, editor, campaign):
    response = client.post(url(campaign, "move/"), {
        "step": "check", "parent": "split", "path": "B", "index": "0", "version": "1"},
        **HTMX)

    assert response.status_code == 200
    steps = steps_of(campaign)
    assert ids(steps) == ["wait", "split", "check", "mail"]
    assert steps[1]["paths"][1]["steps"][0]["paths"][0]["steps"][0]["id"] == "mail"


def test_moving_a_block_into_itself_is_refused_with_the_canvas(client, editor, campaign):
    response = client.post(url(campaign, "move/"), {
        "step": "check", "parent": "check", "path": "false", "index": "0", "version": "1"},
        **HTMX)

    assert response.status_code == 400
    html = response.content.decode()
    assert "a block cannot move into itself" in html and 'id="canvas"' in html
    assert Campaign.objects.get(pk=campaign.pk).version == 1


def test_a_stale_edit_gets_409_and_the_fresh_canvas(client, editor, campaign):
    client.post(url(campaign, "add/"), {"type": "exit", "index": "3", "step_id": "first",
                                        "version": "1"}, **HTMX)
    response = client.post(url(campaign, "delete/"), {"step": "wait", "version": "1"},
                           **HTMX)

    assert response.status_code == 409
    html = response.content.decode()
    assert "This workflow changed since you opened it" in html
    assert 'id="step-first"' in html and 'id="step-wait"' in html
    assert 'data-version="2"' in html
    assert "wait" in ids(steps_of(campaign))


def test_delete_where_people_wait_asks_whether_they_move_on_or_exit(client, editor,
                                                                      campaign, workspace):
    person = make_person(workspace, "ada")
    from django.utils import timezone

    journey = Journey.objects.create(workspace=workspace, campaign=campaign, person=person,
                                     cio_id=person.cio_id, entry_key="e1", step_id="mail",
                                     entered_at=timezone.now())
    asked = client.post(url(campaign, "delete/"), {"step": "check", "version": "1"}, **HTMX)

    assert asked.status_code == 200
    assert asked["HX-Retarget"] == "#editor-dialog"
    html = asked.content.decode()
    assert "1 person is at the steps you are removing" in html
    assert 'name="removed_steps" value="exit"' in html
    assert "check" in ids(steps_of(campaign))

    done = client.post(url(campaign, "delete/"), {"step": "check", "version": "1",
                                                  "removed_steps": "exit"}, **HTMX)
    assert done.status_code == 200
    journey.refresh_from_db()
    assert (journey.state, journey.exit_reason) == ("exited", "step_removed")
    assert ids(steps_of(campaign)) == ["wait", "split"]


def test_random_split_paths_are_added_and_removed(client, editor, campaign):
    assert client.post(url(campaign, "paths/add/"), {"step": "split", "version": "1"},
                       **HTMX).status_code == 200
    paths = steps_of(campaign)[2]["paths"]
    assert [(p["key"], p["weight"]) for p in paths] == [("A", 34), ("B", 33), ("C", 33)]
    html = client.get(url(campaign)).content.decode()
    assert html.count('class="path-delete"') == 3

    assert client.post(url(campaign, "paths/remove/"), {"step": "split", "key": "B",
                                                        "version": "2"},
                       **HTMX).status_code == 200
    assert [p["key"] for p in steps_of(campaign)[2]["paths"]] == ["A", "C"]


def test_settings_panel_saves_a_step_and_re_renders_the_canvas(client, editor, campaign):
    panel = client.get(url(campaign, "steps/mail/"), **HTMX)
    assert panel.status_code == 200 and 'name="subject"' in panel.content.decode()

    response = client.post(url(campaign, "steps/mail/"), {
        "version": "1", "name": "", "sender": "team@example.com", "to": "{{customer.email}}",
        "subject": "Welcome", "body_html": "<p>Hi</p>", "sending": "automatic",
        "send_to_unsubscribed": "", "tracking": "on"}, **HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="panel-saved"' in html
    assert 'id="canvas" class="canvas-region" hx-swap-oob="true"' in html
    assert html.count('class="step-flag"') == 1  # only the branch is left to configure
    mail = steps_of(campaign)[1]["paths"][0]["steps"][0]
    assert (mail["from"], mail["subject"], mail["tracking"]) == ("team@example.com",
                                                                 "Welcome", True)


@pytest.mark.parametrize("step_id, data, field, message", [
    ("wait", {"days": "-1"}, "days", "greater than or equal to 0"),
    ("mail", {"sending": "sometimes"}, "sending", "Select a valid choice"),
])
def test_settings_that_do_not_fit_are_shown_beside_their_field(client, editor, campaign,
                                                               step_id, data, field,
                                                               message):
    response = client.post(url(campaign, f"steps/{step_id}/"), {"version": "1", **data},
                           **HTMX)

    assert response.status_code == 422
    form = response.context["form"]
    assert any(message in error for error in form.errors[field]), form.errors
    assert Campaign.objects.get(pk=campaign.pk).version == 1


CONDITION_ROWS = {"n-0-kind": "and", "n-0-parent": "", "n-1-kind": "attribute",
                  "n-1-parent": "0", "n-1-field": "plan", "n-1-operator": "eq",
                  "n-1-value": "pro"}


def test_a_branch_condition_is_built_in_the_segment_builders_rows(client, editor, campaign):
    panel = client.get(url(campaign, "steps/check/"), **HTMX).content.decode()
    assert 'id="builder"' in panel and 'value="add:attribute:0"' in panel

    added = client.post(url(campaign, "steps/check/"), {
        "version": "1", "op": "add:attribute:0", "n-0-kind": "and", "n-0-parent": ""},
        **HTMX)
    assert added.status_code == 200
    assert 'name="n-1-field"' in added.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).version == 1  # nothing saved yet

    saved = client.post(url(campaign, "steps/check/"), {"version": "1", **CONDITION_ROWS},
                        **HTMX)
    assert saved.status_code == 200
    assert steps_of(campaign)[1]["condition"] == {"and": [
        {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}}]}


def test_a_conditions_problems_are_shown_beside_its_rows(client, editor, campaign):
    response = client.post(url(campaign, "steps/check/"), {
        "version": "1", **CONDITION_ROWS, "n-1-field": "items["}, **HTMX)

    assert response.status_code == 422
    form = response.context["form"]
    assert form.builder.find(1).problems == ["'items[' is not a valid field path"]
    assert 'id="problems-1"' in response.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).version == 1


def test_a_webhook_step_takes_headers_body_and_a_response_mapping(client, editor, campaign):
    client.post(url(campaign, "add/"), {"type": "webhook", "index": "0", "step_id": "hook",
                                        "version": "1"}, **HTMX)
    response = client.post(url(campaign, "steps/hook/"), {
        "version": "2", "method": "PUT", "url": "https://example.com/{{customer.id}}",
        "headers": "Authorization: Basic abc\nX-Tag: 1", "body": '{"plan": "pro"}',
        "response": "data.plan = plan", "sending": "automatic"}, **HTMX)

    assert response.status_code == 200
    hook = steps_of(campaign)[0]
    assert hook["headers"] == {"Authorization": "Basic abc", "X-Tag": "1"}
    assert hook["body"] == {"plan": "pro"}
    assert hook["response"] == [{"path": "data.plan", "attribute": "plan"}]


def test_email_preview_renders_for_a_chosen_person_and_shows_errors_with_their_line(
        client, editor, campaign, workspace):
    make_person(workspace, "ada", email="ada@example.com", first_name="Ada")
    make_person(workspace, "bob", email="bob@example.com", first_name="Bob")
    response = client.post(url(campaign, "steps/mail/preview/"), {
        "preview_person": "ada@example.com", "subject": "Hi {{customer.first_name}}",
        "body_html": "<p>Hello</p>\n{{ customer.plan }}"}, **HTMX)

    html = response.content.decode()
    assert '<strong id="preview-subject">Hi Ada</strong>' in html
    assert "Body: line 2:" in html and "plan" in html


def test_csrf_is_checked_on_edits(campaign, workspace):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_member(workspace, Membership.Role.EDITOR))
    data = {"type": "exit", "index": "0", "step_id": "x", "version": "1"}
    assert client.post(url(campaign, "add/"), data, **HTMX).status_code == 403

    client.get(url(campaign))  # sets the CSRF cookie, as the page does
    token = client.cookies["csrftoken"].value
    assert client.post(url(campaign, "add/"), data, HTTP_X_CSRFTOKEN=token,
                       **HTMX).status_code == 200


def test_without_javascript_an_edit_redirects_back_to_the_canvas(client, editor, campaign):
    response = client.post(url(campaign, "add/"), {"type": "exit", "index": "0",
                                                   "step_id": "x", "version": "1"})
    assert response.status_code == 302 and response["Location"] == url(campaign)
    assert ids(steps_of(campaign))[0] == "x"


def big_workflow(blocks: int = 10) -> list[dict]:
    """Return a workflow of ``blocks`` * 6 steps: branches holding splits holding steps."""
    steps = []
    for n in range(blocks):
        steps += [
            {"id": f"d{n}", "type": "delay", "duration": {"hours": 1}},
            {"id": f"b{n}", "type": "branch", "paths": [
                {"key": "true", "steps": [
                    {"id": f"r{n}", "type": "random_split", "paths": [
                        {"key": "A", "weight": 50, "steps": [{"id": f"m{n}", "type": "email"}]},
                        {"key": "B", "weight": 50, "steps": [
                            {"id": f"x{n}", "type": "exit"}]}]}]},
                {"key": "false", "steps": [{"id": f"w{n}", "type": "webhook"}]}]},
        ]
    return steps


@pytest.mark.parametrize("size", ["small", "60 steps"])
def test_query_counts_stay_the_same_for_any_size_of_workflow(
        client, editor, workspace, django_assert_num_queries, size):
    campaign = services.create_campaign(workspace, definition(
        workflow={"steps": big_workflow() if size == "60 steps" else
                  definition()["workflow"]["steps"]}))
    client.get(url(campaign))  # the session as it is on any later request
    # Session, user, membership, campaign (+ the base page's workspace list).
    with django_assert_num_queries(5):
        assert client.get(url(campaign)).status_code == 200
    with django_assert_num_queries(4):
        assert client.get(url(campaign, "steps/wait/" if size == "small" else
                                      "steps/d0/"), **HTMX).status_code == 200
    # ... and the campaign locked, its workspace, the update, in a savepoint.
    version = 1
    for action, data in [
        ("add/", {"type": "delay", "index": "0", "step_id": "new"}),
        ("move/", {"step": "new", "index": "2"}),
        ("steps/new/", {"hours": "3"}),
        ("paths/add/", {"step": "split" if size == "small" else "r0"}),
    ]:
        with django_assert_num_queries(9):
            response = client.post(url(campaign, action), {**data, "version": version},
                                   **HTMX)
        assert response.status_code == 200, response.content
        version += 1
    # A delete counts the people at the removed steps first, and moves them on after.
    with django_assert_num_queries(11):
        assert client.post(url(campaign, "delete/"), {"step": "new", "version": version},
                           **HTMX).status_code == 200


class FormFields(HTMLParser):
    """Read the fields a browser would post from the settings form."""

    def __init__(self):
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._select = self._textarea = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") in ("checkbox", "radio"):
            if "checked" in attrs:
                self.fields.append((name, attrs.get("value") or "on"))
        elif tag == "input" and name:
            self.fields.append((name, attrs.get("value") or ""))
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and "selected" in attrs:
            self.fields.append((self._select, attrs.get("value", "")))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, ""

    def handle_data(self, data):
        if self._textarea:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            self.fields.append((self._textarea, self._text.removeprefix("\n")))
            self._textarea = None


@pytest.mark.parametrize("kind", list(TYPE_LABELS))
def test_every_step_type_has_a_settings_form_that_round_trips(client, editor, workspace,
                                                             kind):
    manual = create_segment(workspace, name="Winback")
    steps = [{"id": "it", "type": kind, **SETTINGS.get(kind, {})}]
    if kind == "segment_membership":
        steps[0]["segment"] = manual.pk
    campaign = services.create_campaign(workspace, definition(workflow={"steps": steps}))
    before = steps_of(campaign)

    panel = client.get(url(campaign, "steps/it/"), **HTMX)
    assert panel.status_code == 200
    parser = FormFields()
    parser.feed(panel.content.decode())
    data = [(name, value) for name, value in parser.fields if name != "preview_person"]
    response = client.post(url(campaign, "steps/it/"),
                           urlencode([*data, ("version", "1")]),
                           content_type="application/x-www-form-urlencoded", **HTMX)

    assert response.status_code == 200, response.context["form"].errors
    assert steps_of(campaign) == before  # what the form shows is what the step holds


SETTINGS = {
    "email": {"from": "team@example.com", "reply_to": "help@example.com",
              "subject": "Hi {{customer.first_name}}", "body_html": "<p>Hi</p>",
              "body_text": "Hi", "sending": "draft", "send_to_unsubscribed": False,
              "tracking": False},
    "delay": {"duration": {"days": 2, "hours": 3}},
    "webhook": {"method": "PUT", "url": "https://example.com/{{customer.id}}",
                "headers": {"Authorization": "Basic x"}, "body": {"a": [1, 2]},
                "response": [{"path": "data.plan", "attribute": "plan"}]},
    "time_window": {"days": ["sat", "sun"], "start": "10:00", "end": "12:30",
                    "timezone": "Europe/Berlin"},
    # A condition as the builder's rows write it: in a group.
    "branch": {"condition": {"and": [{"attribute": {"field": "plan", "operator": "eq",
                                                    "value": "pro"}}]}},
    "wait_until": {"condition": {"or": [{"event": {"name": "purchase"}}]},
                   "max": {"days": 3}},
    "random_split": {"paths": [{"key": "A", "weight": 30, "steps": []},
                               {"key": "B", "weight": 70, "steps": []}]},
    "update_attributes": {"set": {"stage": "{{event.stage}}"}, "unset": ["old", "older"]},
    "segment_membership": {"action": "remove"},
    "create_event": {"name": "reengage_failed", "data": {"why": "no reply"}},
    "delete_person": {"suppress": True},
    "exit": {"name": "Done"},
}


def test_a_data_campaigns_steps_name_their_person(client, editor, workspace):
    campaign = services.create_campaign(workspace, {
        "name": "Hook", "trigger": {"webhook": {}}, "exit": "never",
        "workflow": {"steps": [{"id": "tag", "type": "update_attributes",
                                "set": {"vip": True}}]}})
    response = client.post(url(campaign, "steps/tag/"), {
        "version": "1", "person_kind": "email", "person_value": "{{trigger.email}}",
        "set": '{"vip": true}'}, **HTMX)

    assert response.status_code == 200
    assert steps_of(campaign)[0]["person"] == {"email": "{{trigger.email}}"}


def test_without_javascript_the_question_about_people_comes_on_the_page(client, editor,
                                                                        campaign, workspace):
    from django.utils import timezone

    person = make_person(workspace, "ada")
    Journey.objects.create(workspace=workspace, campaign=campaign, person=person,
                           cio_id=person.cio_id, entry_key="e1", step_id="wait",
                           entered_at=timezone.now())
    asked = client.post(url(campaign, "delete/"), {"step": "wait", "version": "1"})

    html = asked.content.decode()
    assert asked.status_code == 200 and 'id="canvas"' in html
    assert '<dialog data-modal id="people-waiting"' in html and "open>" in html
    assert 'name="csrfmiddlewaretoken"' in html
    done = client.post(url(campaign, "delete/"), {"step": "wait", "version": "1",
                                                  "removed_steps": "move_on"})
    assert done.status_code == 302
    assert Journey.objects.get().step_id == "check"


def test_settings_saved_from_a_stale_panel_get_409_and_the_settings_as_they_are(
        client, editor, campaign):
    first = {"version": "1", "days": "2"}
    assert client.post(url(campaign, "steps/wait/"), first, **HTMX).status_code == 200
    response = client.post(url(campaign, "steps/wait/"), {"version": "1", "days": "5"},
                           **HTMX)

    assert response.status_code == 409
    html = response.content.decode()
    assert 'id="panel-message"' in html and "changed since you opened it" in html
    assert response.context["form"]["days"].value() == 2  # as saved by the first
    assert 'data-version="2"' in html
    assert steps_of(campaign)[0]["duration"]["days"] == 2


def test_a_steps_settings_open_on_the_editors_page_without_javascript(client, editor,
                                                                       campaign):
    response = client.get(url(campaign, "steps/mail/"))
    assert response.status_code == 302
    assert response["Location"] == url(campaign) + "?step=mail"
    page = client.get(response["Location"]).content.decode()
    assert 'id="step-form"' in page and 'name="subject"' in page
    assert 'name="page_version" value="1"' in page
    saved = client.post(url(campaign, "steps/mail/"), {
        "page_version": "1", "subject": "Hi", "sending": "automatic"})
    assert saved.status_code == 302 and saved["Location"] == url(campaign) + "?step=mail"
    assert steps_of(campaign)[1]["paths"][0]["steps"][0]["subject"] == "Hi"
    refused = client.post(url(campaign, "steps/mail/"), {"page_version": "2",
                                                         "sending": "sometimes"})
    assert refused.status_code == 422 and 'id="step-form"' in refused.content.decode()
    assert "Select a valid choice" in refused.content.decode()


def test_a_started_campaigns_cards_get_their_figures_in_a_request_of_their_own(
        client, viewer, campaign, workspace, django_assert_max_num_queries):
    from django.utils import timezone

    assert "figures/" not in client.get(url(campaign)).content.decode()  # a draft has none
    Campaign.objects.filter(pk=campaign.pk).update(first_started_at=timezone.now())
    for number, step in enumerate(("wait", "wait", "mail")):
        person = make_person(workspace, f"p{number}")
        Journey.objects.create(workspace=workspace, campaign=campaign, person=person,
                               cio_id=person.cio_id, entry_key=f"e{number}", step_id=step,
                               entered_at=timezone.now())

    page = client.get(url(campaign)).content.decode()
    with django_assert_max_num_queries(8):
        figures = client.get(url(campaign, "figures/"), **HTMX)

    assert f'hx-get="{url(campaign, "figures/")}"' in page
    assert 'id="figures-wait" class="step-figures"></div>' in page  # filled by the swap
    html = figures.content.decode()
    assert figures.status_code == 200 and html.count('hx-swap-oob="true"') == 4
    waiting = html.split('id="figures-wait"')[1].split('data-metric="waiting">')[1]
    assert waiting.startswith(f'<a href="/campaigns/{campaign.pk}/steps/wait/people/">2</a>')
    assert 'data-metric="sent">0<' in html.split('id="figures-mail"')[1]


# --- the webhook step's test request -------------------------------------------------


@pytest.fixture
def hook(workspace):
    return services.create_campaign(workspace, {
        "name": "Delete inactive people", "trigger": {"event": {"name": "signed_up"}},
        "workflow": {"steps": [{"id": "hook", "type": "webhook", "method": "POST",
                                "url": "https://example.com/saved"}]}})


def webhook_fields(server, **extra):
    return {"method": "POST", "url": server.url + "/people/{{customer.id}}",
            "headers": "X-Plan: {{customer.plan}}",
            "body": '{"email": "{{customer.email}}"}', "response": "plan = plan",
            "sending": "automatic", **extra}


def test_a_test_request_is_sent_once_for_a_chosen_person_and_its_answer_shown(
        client, editor, hook, workspace, webhook_server, settings):
    from campaigns.models import Delivery
    from people.models import Person
    from tests.webhook_server import Reply

    settings.ENGAGE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    ada = make_person(workspace, "ada", email="ada@example.com", plan="free")
    make_person(workspace, "bob", email="bob@example.com", plan="pro")
    webhook_server.answer("/people/ada", Reply(201, json={"plan": "gold", "ok": True},
                                               headers={"X-Answer": "yes"}))

    response = client.post(url(hook, "steps/hook/test-request/"), {
        **webhook_fields(webhook_server), "preview_person": "ada@example.com"}, **HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    (request,) = webhook_server.requests
    assert (request.method, request.path, request.headers["X-Plan"]) == (
        "POST", "/people/ada", "free")
    assert request.json() == {"email": "ada@example.com"}
    assert request.headers["Idempotency-Key"].startswith("test-")
    assert f"POST {webhook_server.url}/people/ada" in html
    assert '<strong>HTTP 201</strong>' in html
    assert "X-Answer: yes" in html
    assert "&quot;plan&quot;: &quot;gold&quot;" in html
    # Nothing is stored: no delivery, no journey, no mapped attribute, the step unchanged.
    assert Delivery.objects.count() == 0 and Journey.objects.count() == 0
    assert Person.objects.get(pk=ada.pk).attributes["plan"] == "free"
    assert steps_of(hook)[0]["url"] == "https://example.com/saved"


def test_a_test_request_keeps_the_senders_hardening(client, editor, hook, workspace,
                                                    webhook_server, settings):
    from tests.webhook_server import Reply

    make_person(workspace, "ada", email="ada@example.com", plan="free")
    settings.ENGAGE_WEBHOOK_ALLOWED_HOSTS = []
    response = client.post(url(hook, "steps/hook/test-request/"),
                           webhook_fields(webhook_server), **HTMX)
    assert "refused: 127.0.0.1 is at the private address" in response.content.decode()
    assert webhook_server.requests == []

    settings.ENGAGE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.ENGAGE_WEBHOOK_READ_TIMEOUT = 0.3
    webhook_server.answer("/people/ada", Reply(200, delay=1))
    response = client.post(url(hook, "steps/hook/test-request/"),
                           webhook_fields(webhook_server), **HTMX)
    assert "Not answered: timed out waiting for 127.0.0.1" in response.content.decode()

    webhook_server.answer("/people/ada", Reply(200, size=3 * 1024 * 1024))
    response = client.post(url(hook, "steps/hook/test-request/"),
                           webhook_fields(webhook_server), **HTMX)
    html = response.content.decode()
    assert '<strong>HTTP 200</strong>' in html and 'id="test-cut"' in html
    shown = "x" * webhooks.DISPLAY_BYTES  # of the megabyte read, at most
    assert shown in html and shown + "x" not in html


def test_a_test_request_names_what_keeps_it_from_being_sent(client, editor, hook, workspace,
                                                            webhook_server, settings):
    settings.ENGAGE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    make_person(workspace, "ada", email="ada@example.com")
    path = url(hook, "steps/hook/test-request/")

    nobody = client.post(path, {**webhook_fields(webhook_server),
                                "preview_person": "zed@example.com"}, **HTMX)
    assert "Nobody has the email or id “zed@example.com”" in nobody.content.decode()
    broken = client.post(path, webhook_fields(webhook_server), **HTMX)  # ada has no plan
    assert "headers.X-Plan: " in broken.content.decode()
    bad_headers = client.post(path, webhook_fields(webhook_server, headers="nonsense"),
                              **HTMX)
    assert "is not a header" in bad_headers.content.decode()
    assert webhook_server.requests == []
    assert client.post(url(hook, "steps/nope/test-request/"), **HTMX).status_code == 404


def test_only_editors_send_test_requests_and_csrf_is_checked(client, viewer, hook, workspace,
                                                            webhook_server, settings):
    settings.ENGAGE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    make_person(workspace, "ada", email="ada@example.com", plan="free")
    path = url(hook, "steps/hook/test-request/")
    assert client.post(path, webhook_fields(webhook_server), **HTMX).status_code == 403

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(make_member(workspace, Membership.Role.EDITOR))
    assert strict.post(path, webhook_fields(webhook_server), **HTMX).status_code == 403
    assert webhook_server.requests == []


def test_another_workspaces_campaign_answers_404(client, editor, other_workspace,
                                                 webhook_server):
    theirs = services.create_campaign(other_workspace, {
        "name": "Theirs", "trigger": {"event": {"name": "x"}},
        "workflow": {"steps": [{"id": "hook", "type": "webhook"}]}})
    response = client.post(url(theirs, "steps/hook/test-request/"),
                           webhook_fields(webhook_server), **HTMX)
    assert response.status_code == 404
    assert webhook_server.requests == []


def test_without_javascript_the_test_answer_comes_in_the_editors_page(
        client, editor, hook, workspace, webhook_server, settings):
    settings.ENGAGE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    make_person(workspace, "ada", email="ada@example.com", plan="free")

    response = client.post(url(hook, "steps/hook/test-request/"),
                           webhook_fields(webhook_server, url=webhook_server.url + "/x"))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="canvas"' in html and '<strong>HTTP 200</strong>' in html
    assert f'value="{webhook_server.url}/x"' in html  # the panel as posted, not saved
    assert steps_of(hook)[0]["url"] == "https://example.com/saved"
