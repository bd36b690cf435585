"""Campaign pages: the list, creation, trigger settings with previews, review, and the
campaign actions (start, stop, restart, archive, unarchive, delete) in dialogs."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, Delivery, Journey
from engage.models import Membership
from people import services as people
from segments import services as segments
from tests.factories import make_member, make_person

LIST = reverse("campaigns:list")
NEW = reverse("campaigns:new")
DELAY = {"id": "wait", "type": "delay", "duration": {"days": 1}}


def url(name, campaign, **query):
    base = reverse(f"campaigns:{name}", args=[campaign.pk])
    return base + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def manual_segment(workspace, name, people_=()):
    segment = segments.create_segment(workspace, name=name)
    segments.add_to_segment(segment, [person.pk for person in people_])
    return segment


def segment_campaign(workspace, name="Welcome", segment_list=(), steps=(DELAY,), **extra):
    trigger = {"segments": {"match": "all", "segments": [
        {"id": segment.pk, "in": True} for segment in segment_list]}}
    return services.create_campaign(workspace, {
        "name": name, "trigger": trigger, "workflow": {"steps": list(steps)}, **extra})


def settings_post(campaign, **fields):
    """Return the settings form as the page posts it, with ``fields`` changed."""
    data = {"version": campaign.version, "match": "all", "exit": "unmatch",
            "frequency_mode": "once", "goal_kind": "", "goal_within_days": "7", "op": "save"}
    data.update(fields)
    return data


def body(response) -> str:
    return response.content.decode()


# --- the list --------------------------------------------------------------------------


def test_campaign_pages_need_a_login(client, workspace):
    campaign = segment_campaign(workspace)
    for page in (LIST, NEW, url("settings", campaign), url("review", campaign)):
        response = client.get(page)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_the_nav_links_to_campaigns(client, viewer):
    assert f'href="{LIST}"' in body(client.get(reverse("home")))


def test_the_list_shows_state_trigger_people_sent_and_converted(client, viewer, workspace,
                                                                other_workspace):
    ada, bob = make_person(workspace, "ada"), make_person(workspace, "bob")
    vip = manual_segment(workspace, "VIP", [ada, bob])
    running = segment_campaign(workspace, "Welcome", [vip])
    services.start_campaign(running)
    journey = Journey.objects.filter(campaign=running).first()
    Journey.objects.filter(pk=journey.pk).update(converted_at=timezone.now())
    Delivery.objects.create(workspace=workspace, campaign=running, journey=journey,
                            journey_seq=9, step_id="wait", kind="email", state="sent",
                            created_at=timezone.now())
    services.create_campaign(workspace, {"name": "Receipt",
                                         "trigger": {"event": {"name": "purchase"}}})
    old = segment_campaign(workspace, "Old")
    services.archive_campaign(old)
    segment_campaign(other_workspace, "Theirs")

    response = client.get(LIST)
    assert response.status_code == 200
    rows = {campaign.name: campaign for campaign in response.context["campaigns"]}
    assert set(rows) == {"Welcome", "Receipt"}
    assert rows["Welcome"].figures["active"] == 2
    assert rows["Welcome"].figures["sent"] == 1
    assert rows["Welcome"].figures["converted"] == 1
    assert rows["Welcome"].trigger_words == "People in VIP"
    assert rows["Receipt"].trigger_words == "They perform purchase"
    page = body(response)
    assert "Running" in page and "Draft" in page and "Theirs" not in page

    archived = client.get(LIST + "?tab=archived")
    assert [c.name for c in archived.context["campaigns"]] == ["Old"]


def test_the_list_costs_the_same_few_queries_however_many_campaigns(
        client, viewer, workspace, django_assert_max_num_queries):
    vip = manual_segment(workspace, "VIP", [make_person(workspace, "ada")])
    for number in range(3):
        segment_campaign(workspace, f"C{number}", [vip])
    client.get(LIST)  # the session and membership warm up
    with django_assert_max_num_queries(9) as few:
        client.get(LIST)
    for number in range(3, 15):
        services.start_campaign(segment_campaign(workspace, f"C{number}", [vip]))
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(LIST)
    assert len(response.context["campaigns"]) == 15


def test_the_list_pages_newest_first(client, viewer, workspace, monkeypatch):
    monkeypatch.setattr("campaigns.views.LIST_SIZE", 2)
    made = [segment_campaign(workspace, f"C{number}") for number in range(3)]
    first = client.get(LIST)
    assert [c.name for c in first.context["campaigns"]] == ["C2", "C1"]
    assert f"before={made[1].pk}" in body(first)
    second = client.get(LIST + f"?before={made[1].pk}")
    assert [c.name for c in second.context["campaigns"]] == ["C0"]
    assert 'id="older-campaigns"' not in body(second)


# --- create ----------------------------------------------------------------------------


def test_the_create_page_offers_the_seeds_trigger_types(client, editor):
    page = body(client.get(NEW))
    for words in ("They meet conditions", "They perform an event", "A particular date",
                  "They fill out a form", "Data arrives via webhook",
                  "API-triggered broadcast"):
        assert words in page


def test_creating_a_campaign_makes_a_draft_and_goes_to_its_settings(client, editor,
                                                                   workspace):
    response = client.post(NEW, {"name": "Welcome", "description": "Say hello",
                                 "tags": "onboarding, email", "trigger": "segments"})
    campaign = Campaign.objects.get()
    assert response.status_code == 302 and response["Location"] == url("settings", campaign)
    assert (campaign.workspace, campaign.state, campaign.trigger) == (workspace, "draft",
                                                                      "segments")
    assert campaign.tags == ["onboarding", "email"] and campaign.description == "Say hello"


@pytest.mark.parametrize("trigger", ["event", "date", "form", "webhook", "api"])
def test_every_trigger_type_can_be_created_and_set_up(client, editor, trigger):
    client.post(NEW, {"name": "C", "trigger": trigger})
    campaign = Campaign.objects.get()
    assert campaign.trigger == trigger
    assert client.get(url("settings", campaign)).status_code == 200
    assert client.get(url("review", campaign)).status_code == 200


def test_create_errors_are_shown_beside_their_fields(client, editor):
    response = client.post(NEW, {"name": "", "trigger": "nonsense",
                                 "tags": "x" * 60})
    assert response.status_code == 400
    page = body(response)
    assert 'id="error-name"' in page and 'id="error-trigger"' in page
    response = client.post(NEW, {"name": "Fine", "trigger": "event", "tags": "x" * 60})
    assert response.status_code == 400 and 'id="error-tags"' in body(response)
    assert not Campaign.objects.exists()


# --- settings --------------------------------------------------------------------------


def test_settings_show_segments_with_member_counts_and_current_matches(client, viewer,
                                                                       workspace):
    ada, bob = make_person(workspace, "ada"), make_person(workspace, "bob")
    vip = manual_segment(workspace, "VIP", [ada, bob])
    manual_segment(workspace, "Churned", [bob])
    campaign = segment_campaign(workspace, segment_list=[vip])

    response = client.get(url("settings", campaign))
    page = body(response)
    assert "VIP · 2 members" in page and "Churned · 1 member" in page
    assert response.context["trigger_matches"] == {"count": 2, "more": False}


def test_saving_a_segments_trigger_with_any_and_not_in(client, editor, workspace):
    ada, bob = make_person(workspace, "ada"), make_person(workspace, "bob")
    vip = manual_segment(workspace, "VIP", [ada, bob])
    churned = manual_segment(workspace, "Churned", [bob])
    campaign = segment_campaign(workspace)

    data = settings_post(campaign, match="any")
    data = {**data, "segment": [str(vip.pk), str(churned.pk), ""],
            "segment_in": ["in", "not_in", "in"]}
    response = client.post(url("settings", campaign), data)
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.definition["trigger"] == {"segments": {"match": "any", "segments": [
        {"id": vip.pk, "in": True}, {"id": churned.pk, "in": False}]}}
    assert campaign.version == 2


def test_adding_a_segment_row_saves_nothing(client, editor, workspace):
    campaign = segment_campaign(workspace)
    response = client.post(url("settings", campaign), settings_post(campaign,
                                                                    op="add-segment"))
    assert response.status_code == 200
    assert body(response).count('class="segment-row"') == 1
    campaign.refresh_from_db()
    assert campaign.version == 1


def test_a_stale_save_is_refused_with_the_fresh_form(client, editor, workspace):
    vip = manual_segment(workspace, "VIP")
    campaign = segment_campaign(workspace)
    old = settings_post(campaign, segment=str(vip.pk), segment_in="in")
    # Someone else saves first.
    services.update_campaign(campaign, {**campaign.definition, "exit": "never"}, version=1)

    response = client.post(url("settings", campaign), old)
    assert response.status_code == 409
    page = body(response)
    assert 'id="stale-edit"' in page and "not</strong> saved" in page
    campaign.refresh_from_db()
    assert campaign.version == 2 and campaign.definition["exit"] == "never"
    assert campaign.definition["trigger"]["segments"]["segments"] == []
    assert response.context["form"]["version"].value() == 2  # the fresh form


def filter_rows(field="plan", operator="eq", value="pro") -> dict:
    """Return one attribute condition as the segment builder's rows post it."""
    return {"n-0-kind": "and", "n-0-parent": "", "n-1-kind": "attribute", "n-1-parent": "0",
            "n-1-field": field, "n-1-operator": operator, "n-1-value": value}


def test_validation_errors_are_shown_beside_the_field_they_name(client, editor, workspace):
    campaign = segment_campaign(workspace)
    response = client.post(url("settings", campaign), {
        **settings_post(campaign), **filter_rows(operator="nope")})
    assert response.status_code == 400
    row = response.context["form"].builder.find(1)
    assert row.problems and "operator" in row.problems[0]
    assert 'id="problems-1"' in body(response)

    response = client.post(url("settings", campaign), {
        **settings_post(campaign, frequency_mode="interval", frequency_days="3"),
        **filter_rows(operator="exists")})
    assert "cannot limit or repeat" in response.context["form"].errors["frequency_mode"][0]

    response = client.post(url("settings", campaign), settings_post(campaign, exit="goal"))
    assert "needs a goal" in response.context["form"].errors["exit"][0]
    assert 'id="error-exit"' in body(response)

    response = client.post(url("settings", campaign), {
        **settings_post(campaign), "segment": ["999999"], "segment_in": ["in"]})
    rows = response.context["form"].segment_rows
    assert "no segment 999999" in rows[0]["errors"][0]
    campaign.refresh_from_db()
    assert campaign.version == 1


def test_filters_are_edited_with_the_segment_builders_rows(client, editor, workspace):
    campaign = segment_campaign(workspace)
    added = client.post(url("settings", campaign), {**settings_post(campaign),
                                                    "op": "add:attribute:0",
                                                    "n-0-kind": "and", "n-0-parent": ""},
                        headers={"HX-Request": "true", "HX-Target": "builder"})
    assert body(added).lstrip().startswith('<div id="builder"')
    assert 'name="n-1-field"' in body(added)

    saved = client.post(url("settings", campaign), {**settings_post(campaign),
                                                    **filter_rows()})
    assert saved.status_code == 302
    campaign.refresh_from_db()
    assert campaign.definition["filters"] == {"and": [
        {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}}]}
    page = body(client.get(url("settings", campaign)))
    assert 'name="n-1-field" value="plan"' in page and 'name="filters_mode"' not in page


def test_filters_the_rows_cannot_show_are_edited_as_json(client, editor, workspace):
    explicit = {"event": {"name": "login", "count": {"operator": "gte", "value": 1}}}
    campaign = segment_campaign(workspace, filters=explicit)
    page = body(client.get(url("settings", campaign)))
    assert 'name="filters_mode" value="json"' in page and "&quot;count&quot;" in page

    response = client.post(url("settings", campaign), settings_post(
        campaign, filters_mode="json", filters="{not json"))
    assert "This is not JSON" in response.context["form"].errors["filters"][0]
    response = client.post(url("settings", campaign), settings_post(
        campaign, filters_mode="json",
        filters='{"attribute": {"field": "plan", "operator": "nope"}}'))
    errors = response.context["form"].errors["filters"]
    assert "filters.attribute.operator" in errors[0] and 'id="error-filters"' in body(response)
    unchanged = client.post(url("settings", campaign), settings_post(
        campaign, filters_mode="json", filters=json.dumps(explicit)))
    assert unchanged.status_code == 302
    campaign.refresh_from_db()
    assert campaign.definition["filters"] == explicit


def test_event_settings_show_recent_names_and_add_an_occurrence_as_a_filter(
        client, editor, workspace):
    ada = make_person(workspace, "ada")
    people.track_event(workspace, people.Ref("id", "ada"), name="purchase",
                       data={"plan": "pro"})
    people.track_event(workspace, people.Ref("id", "ada"), name="login")
    campaign = services.create_campaign(workspace, {"name": "Receipt",
                                                    "trigger": {"event": {"name": None}}})
    response = client.get(url("settings", campaign))
    assert response.context["event_names"] == ["login", "purchase"]

    data = {**settings_post(campaign, event_name="purchase", exit="never",
                            frequency_mode="every"),
            "filter_field": [""], "filter_operator": ["eq"], "filter_value": [""]}
    shown = client.post(url("settings", campaign), {**data, "op": "refresh"})
    assert [e.person for e in shown.context["occurrences"]] == [ada]
    assert 'Add as filter' in body(shown)

    added = client.post(url("settings", campaign), {**data, "op": 'filter:["plan", "pro"]'})
    assert added.context["form"].filter_rows[0]["field"] == "plan"
    data.update(filter_field=["plan", ""], filter_operator=["eq", "eq"],
                filter_value=["pro", ""])
    assert client.post(url("settings", campaign), data).status_code == 302
    campaign.refresh_from_db()
    assert campaign.definition["trigger"] == {"event": {"name": "purchase", "filters": [
        {"field": "plan", "operator": "eq", "value": "pro"}]}}
    assert campaign.trigger_event == "purchase"


def test_date_settings_preview_the_next_fire_times_of_real_people(client, editor, workspace):
    make_person(workspace, "ada", renewal_at="2030-06-05")
    make_person(workspace, "bob")
    campaign = services.create_campaign(workspace, {"name": "Renewal",
                                                    "trigger": {"date": {}}})
    data = settings_post(campaign, date_attribute="renewal_at", date_recurrence="yearly",
                         date_offset_days="-3", date_time="10:00", date_timezone="UTC",
                         date_fallback_timezone="UTC", exit="never", op="refresh")
    response = client.post(url("settings", campaign), data)
    ((person, occurrence),) = response.context["date_preview"]["people"]
    assert person.customer_id == "ada"
    assert occurrence.fire_at.month == 6 and occurrence.fire_at.day == 2
    assert occurrence.fire_at.hour == 10

    assert client.post(url("settings", campaign), {**data, "op": "save"}).status_code == 302
    campaign.refresh_from_db()
    assert campaign.definition["trigger"]["date"]["offset_days"] == -3

    bad = client.post(url("settings", campaign), {**data, "op": "save",
                                                  "version": campaign.version,
                                                  "date_time": "25:00"})
    assert "HH:MM" in bad.context["form"].errors["date_time"][0]


def test_goal_and_send_to_unsubscribed_are_saved(client, editor, workspace):
    vip = manual_segment(workspace, "VIP")
    campaign = segment_campaign(workspace, segment_list=[vip])
    response = client.post(url("settings", campaign), settings_post(
        campaign, segment=str(vip.pk), segment_in="in", goal_kind="enters_segment",
        goal_segment=str(vip.pk), goal_within_days="3", exit="goal_or_unmatch",
        send_to_unsubscribed="on"))
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.definition["goal"] == {"within_days": 3, "enters_segment": vip.pk}
    assert campaign.definition["exit"] == "goal_or_unmatch"
    assert campaign.definition["send_to_unsubscribed"] is True


def test_a_webhook_campaign_shows_its_url(client, editor, workspace):
    campaign = services.create_campaign(workspace, {"name": "Hook", "trigger": {"webhook": {}}})
    page = body(client.get(url("settings", campaign)))
    campaign.refresh_from_db()
    assert f"/api/v1/webhooks/{campaign.webhook_token}" in page


# --- review ----------------------------------------------------------------------------


def test_review_lists_every_problem_with_a_link_to_its_place(client, viewer, workspace):
    email = {"id": "hello", "type": "email"}
    branch = {"id": "fork", "type": "branch", "condition": None,
              "paths": [{"key": "true", "steps": [{"id": "nap", "type": "delay",
                                                    "name": "Nap"}]},
                        {"key": "false", "steps": []}]}
    campaign = segment_campaign(workspace, steps=[email, branch])
    response = client.get(url("review", campaign))
    links = {problem.place: link for problem, link, _ in response.context["problems"]}
    where = {problem.place: words for problem, _, words in response.context["problems"]}
    assert where["workflow.steps[0].subject"] == "Email step"
    assert where["workflow.steps[1].paths[0].steps[0].duration"] == "Delay step “Nap”"
    assert where["trigger.segments.segments"] == "Trigger & settings"
    settings_url = url("settings", campaign)
    assert links["trigger.segments.segments"] == settings_url + "#field-segments"
    workflow = f"/campaigns/{campaign.pk}/workflow/"
    assert links["workflow.steps[0].subject"] == f"{workflow}?step=hello#step-hello"
    assert links["workflow.steps[1].condition"] == f"{workflow}?step=fork#step-fork"
    assert (links["workflow.steps[1].paths[0].steps[0].duration"]
            == f"/campaigns/{campaign.pk}/workflow/?step=nap#step-nap")
    assert 'id="problems"' in body(response)


def test_review_says_when_everything_is_ready(client, editor, workspace):
    campaign = segment_campaign(workspace, segment_list=[manual_segment(workspace, "VIP")])
    response = client.get(url("review", campaign))
    assert response.context["problems"] == [] and 'id="review-start"' in body(response)


# --- actions ---------------------------------------------------------------------------


def test_every_campaign_page_has_the_actions_menu_for_editors_only(client, workspace):
    campaign = segment_campaign(workspace)
    client.force_login(make_member(workspace, Membership.Role.EDITOR))
    for tab in ("settings", "review"):
        assert 'id="campaign-actions"' in body(client.get(url(tab, campaign)))
    client.force_login(make_member(workspace, Membership.Role.VIEWER))
    for tab in ("settings", "review"):
        page = body(client.get(url(tab, campaign)))
        assert 'id="campaign-actions"' not in page and 'id="save-settings"' not in page


def test_the_start_dialog_counts_current_matches(client, editor, workspace):
    vip = manual_segment(workspace, "VIP", [make_person(workspace, "ada"),
                                            make_person(workspace, "bob")])
    campaign = segment_campaign(workspace, segment_list=[vip])
    response = client.get(url("start", campaign), headers={"HX-Request": "true"})
    page = body(response)
    assert page.lstrip().startswith('<dialog id="start-dialog" data-modal')
    assert "Current people and future additions" in page and "Future additions only" in page
    assert "(2 people match now)" in page


def test_starting_for_current_people_once_even_when_submitted_twice(client, editor,
                                                                    workspace):
    vip = manual_segment(workspace, "VIP", [make_person(workspace, "ada"),
                                            make_person(workspace, "bob")])
    campaign = segment_campaign(workspace, segment_list=[vip])
    form = {"token": "t1", "audience": "current_and_future", "when": "now",
            "next": url("review", campaign)}
    first = client.post(url("start", campaign), form)
    assert first.status_code == 302 and first["Location"] == url("review", campaign)
    campaign.refresh_from_db()
    assert campaign.state == "running" and Journey.objects.filter(campaign=campaign).count() == 2
    services.stop_campaign(campaign)  # stopped: a second start would restart it

    again = client.post(url("start", campaign), form)
    assert again.status_code == 302
    campaign.refresh_from_db()
    assert campaign.state == "stopped"  # the same dialog's token started nothing more


def test_future_additions_only_enters_nobody_now(client, editor, workspace):
    vip = manual_segment(workspace, "VIP", [make_person(workspace, "ada")])
    campaign = segment_campaign(workspace, segment_list=[vip])
    client.post(url("start", campaign), {"token": "t", "audience": "future_only",
                                         "when": "now"})
    campaign.refresh_from_db()
    assert campaign.state == "running" and not Journey.objects.filter(campaign=campaign).exists()


def test_a_campaign_with_problems_does_not_start(client, editor, workspace):
    campaign = segment_campaign(workspace)
    response = client.post(url("start", campaign), {"token": "t", "when": "now",
                                                    "audience": "current_and_future"})
    assert response.status_code == 400 and 'id="start-problems"' in body(response)
    campaign.refresh_from_db()
    assert campaign.state == "draft"


def test_a_start_can_be_scheduled_and_cancelled(client, editor, workspace):
    campaign = segment_campaign(workspace, segment_list=[manual_segment(workspace, "VIP")])
    past = client.post(url("start", campaign), {"token": "a", "audience": "future_only",
                                                "when": "later",
                                                "starts_at": "2001-01-01T09:00"})
    assert past.status_code == 400 and "in the future" in body(past)
    later = timezone.now() + timedelta(days=2)
    client.post(url("start", campaign), {"token": "b", "audience": "future_only",
                                         "when": "later",
                                         "starts_at": later.strftime("%Y-%m-%dT%H:%M")})
    campaign.refresh_from_db()
    assert campaign.state == "draft" and campaign.start_audience == "future_only"
    assert abs((campaign.starts_at - later).total_seconds()) < 60
    assert 'id="scheduled-start"' in body(client.get(url("settings", campaign)))

    client.post(url("unschedule", campaign))
    campaign.refresh_from_db()
    assert campaign.starts_at is None


def test_stop_exits_everyone_or_lets_them_finish(client, editor, workspace):
    vip = manual_segment(workspace, "VIP", [make_person(workspace, "ada")])
    first, second = (segment_campaign(workspace, name, [vip]) for name in ("A", "B"))
    for campaign in (first, second):
        services.start_campaign(campaign)
    dialog = client.get(url("stop", first), headers={"HX-Request": "true"})
    assert "1 person is in it now" in body(dialog)

    client.post(url("stop", first), {"token": "s1", "journeys": "exit"})
    client.post(url("stop", second), {"token": "s2", "journeys": "finish"})
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, second.state) == ("stopped", "stopping")
    assert Journey.objects.get(campaign=first).state == "exited"
    assert Journey.objects.get(campaign=second).state == "active"


def test_restart_a_stopped_campaign(client, editor, workspace):
    campaign = segment_campaign(workspace, segment_list=[manual_segment(workspace, "VIP")])
    services.start_campaign(campaign)
    services.stop_campaign(campaign)
    dialog = client.get(url("start", campaign), headers={"HX-Request": "true"})
    assert "Restart" in body(dialog)
    client.post(url("start", campaign), {"token": "r", "audience": "current_and_future",
                                         "when": "now"})
    campaign.refresh_from_db()
    assert campaign.state == "running"


def test_archive_and_unarchive(client, editor, workspace):
    campaign = segment_campaign(workspace)
    assert 'id="archive-dialog"' in body(client.get(url("archive", campaign)))
    client.post(url("archive", campaign), {"token": "a"})
    campaign.refresh_from_db()
    assert campaign.state == "archived"
    page = body(client.get(url("settings", campaign)))
    assert 'id="archived-note"' in page and 'id="action-unarchive"' in page
    refused = client.post(url("settings", campaign), settings_post(campaign))
    assert "archived campaign cannot be edited" in body(refused)

    client.post(url("unarchive", campaign))
    campaign.refresh_from_db()
    assert campaign.state == "stopped"


def test_delete_needs_the_typed_name(client, editor, workspace):
    campaign = segment_campaign(workspace, "Welcome")
    wrong = client.post(url("delete", campaign), {"token": "d", "name": "welcome"})
    assert wrong.status_code == 400 and 'id="delete-error"' in body(wrong)
    assert Campaign.objects.filter(pk=campaign.pk).exists()

    right = client.post(url("delete", campaign), {"token": "d", "name": "Welcome"})
    assert right.status_code == 302 and right["Location"] == LIST
    assert not Campaign.objects.filter(pk=campaign.pk).exists()
    again = client.post(url("delete", campaign), {"token": "d", "name": "Welcome"})
    assert again.status_code == 302 and again["Location"] == LIST


def test_htmx_actions_answer_with_a_client_redirect(client, editor, workspace):
    campaign = segment_campaign(workspace)
    response = client.post(url("archive", campaign), {"token": "h"},
                           headers={"HX-Request": "true",
                                    "HX-Current-URL": f"http://testserver/campaigns/"
                                                      f"{campaign.pk}/review/"})
    assert response.status_code == 200
    assert response["HX-Redirect"] == url("review", campaign)


# --- roles, CSRF, workspaces -----------------------------------------------------------


def test_viewers_see_everything_and_change_nothing(client, viewer, workspace):
    vip = manual_segment(workspace, "VIP", [make_person(workspace, "ada")])
    campaign = segment_campaign(workspace, segment_list=[vip])
    for page in (LIST, url("settings", campaign), url("review", campaign)):
        assert client.get(page).status_code == 200
    forged = [
        client.post(NEW, {"name": "X", "trigger": "api"}),
        client.post(url("settings", campaign), settings_post(campaign, exit="never")),
        client.post(url("start", campaign), {"token": "v", "when": "now",
                                             "audience": "current_and_future"}),
        client.post(url("stop", campaign), {"journeys": "exit"}),
        client.post(url("archive", campaign)),
        client.post(url("unarchive", campaign)),
        client.post(url("unschedule", campaign)),
        client.post(url("delete", campaign), {"name": campaign.name}),
        client.get(url("start", campaign)),
        client.get(NEW),
    ]
    assert [response.status_code for response in forged] == [403] * len(forged)
    campaign.refresh_from_db()
    assert (campaign.state, campaign.version) == ("draft", 1)
    assert Campaign.objects.count() == 1


def test_posts_without_a_csrf_token_are_refused(workspace):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_member(workspace, Membership.Role.EDITOR))
    campaign = segment_campaign(workspace)
    assert client.post(url("archive", campaign), {"token": "c"}).status_code == 403
    assert client.post(NEW, {"name": "X", "trigger": "api"}).status_code == 403
    campaign.refresh_from_db()
    assert campaign.state == "draft" and Campaign.objects.count() == 1


def test_another_workspaces_campaign_answers_404(client, editor, other_workspace):
    theirs = segment_campaign(other_workspace, "Theirs")
    for name in ("settings", "review", "start", "stop", "archive", "delete"):
        assert client.get(url(name, theirs)).status_code == 404
    for name in ("settings", "start", "stop", "archive", "unarchive", "unschedule", "delete"):
        assert client.post(url(name, theirs), {"name": "Theirs", "token": name}).status_code \
            == 404
    theirs.refresh_from_db()
    assert theirs.state == "draft"


def test_a_segment_of_another_workspace_is_refused_in_the_trigger(client, editor, workspace,
                                                                  other_workspace):
    theirs = manual_segment(other_workspace, "Theirs")
    campaign = segment_campaign(workspace)
    response = client.post(url("settings", campaign), {
        **settings_post(campaign), "segment": [str(theirs.pk)], "segment_in": ["in"]})
    assert response.status_code == 400
    assert "no segment" in response.context["form"].segment_rows[0]["errors"][0]
    assert "Theirs" not in body(response)


def test_the_settings_partial_is_rendered_for_htmx_refreshes(client, editor, workspace):
    campaign = segment_campaign(workspace)
    response = client.post(url("settings", campaign), settings_post(campaign, op="refresh"),
                           headers={"HX-Request": "true"})
    assert body(response).lstrip().startswith('<form method="post" id="settings-form"')
    assert response.context["trigger_matches"] is None


def test_a_second_submit_with_a_fresh_token_finds_the_campaign_started_or_stopped(
        client, editor, workspace):
    vip = manual_segment(workspace, "VIP", [make_person(workspace, "ada")])
    campaign = segment_campaign(workspace, segment_list=[vip])
    start = {"audience": "current_and_future", "when": "now"}
    client.post(url("start", campaign), {**start, "token": "one"})
    again = client.post(url("start", campaign), {**start, "token": "two"})
    assert again.status_code == 302
    assert Journey.objects.filter(campaign=campaign).count() == 1

    client.post(url("stop", campaign), {"journeys": "exit", "token": "three"})
    again = client.post(url("stop", campaign), {"journeys": "exit", "token": "four"})
    assert again.status_code == 302
    campaign.refresh_from_db()
    assert campaign.state == "stopped"


def test_stopping_a_draft_is_refused_in_the_dialog(client, editor, workspace):
    campaign = segment_campaign(workspace)
    response = client.post(url("stop", campaign), {"journeys": "exit", "token": "x"})
    assert response.status_code == 400 and 'id="stop-error"' in body(response)
    campaign.refresh_from_db()
    assert campaign.state == "draft"


def test_the_grace_period_of_a_segments_trigger_is_set_in_hours(client, editor, workspace):
    campaign = segment_campaign(workspace)
    response = client.post(url("settings", campaign), settings_post(campaign,
                                                                    grace_period_hours="6"))
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.definition["grace_period"] == {"days": 0, "hours": 6, "minutes": 0,
                                                   "seconds": 0}
    odd = segment_campaign(workspace, "Odd", grace_period={"minutes": 90})
    assert 'name="grace_period_hours"' not in body(client.get(url("settings", odd)))
    client.post(url("settings", odd), settings_post(odd, exit="never"))
    odd.refresh_from_db()
    assert odd.definition["grace_period"]["minutes"] == 90 and odd.definition["exit"] == "never"


def test_every_settings_link_of_the_review_has_its_anchor_on_the_settings_page(
        client, editor, workspace):
    from campaigns.forms import PLACES

    campaign = segment_campaign(workspace)
    page = body(client.get(url("settings", campaign)))
    for field in [*PLACES, "segments", "frequency_mode", "goal_kind", "goal_segment",
                  "goal_within_days", "grace_period_hours"]:
        if field.startswith(("date_", "event_", "form_")):
            continue  # another trigger's fields
        assert f'id="field-{field}"' in page, field


def test_a_goal_event_with_filters_on_its_data(client, editor, workspace):
    campaign = segment_campaign(workspace)
    data = {**settings_post(campaign, goal_kind="event", goal_event="purchase",
                            goal_within_days="5", exit="goal_or_unmatch"),
            "goal_filter_field": ["plan", ""], "goal_filter_operator": ["in", "eq"],
            "goal_filter_value": ["pro, team", ""]}
    assert client.post(url("settings", campaign), data).status_code == 302
    campaign.refresh_from_db()
    assert campaign.definition["goal"] == {"within_days": 5, "event": {
        "name": "purchase", "filters": [{"field": "plan", "operator": "in",
                                         "value": ["pro", "team"]}]}}
    page = body(client.get(url("settings", campaign)))
    assert 'name="goal_filter_field" value="plan"' in page

    bad = client.post(url("settings", campaign), {
        **data, "version": campaign.version, "goal_filter_field": ["items[", ""]})
    assert bad.status_code == 400
    assert bad.context["form"].goal_filter_rows[0]["errors"]


@pytest.mark.parametrize("bad", [{"date_time": "25:00"}, {"date_timezone": "Mars/Base"},
                                 {"date_offset_days": "soon"}, {"date_attribute": "a["}])
def test_a_date_preview_of_settings_that_cannot_fire_says_so(client, editor, workspace, bad):
    make_person(workspace, "ada", renewal_at="2030-06-05")
    campaign = services.create_campaign(workspace, {"name": "Renewal",
                                                    "trigger": {"date": {}}})
    data = {**settings_post(campaign, date_attribute="renewal_at", date_time="10:00",
                            date_timezone="UTC", op="refresh"), **bad}
    response = client.post(url("settings", campaign), data)
    assert response.status_code == 200
    assert response.context["date_preview"] == {"invalid": True}


def test_a_viewer_does_not_make_a_webhook_campaigns_url(client, viewer, workspace):
    campaign = services.create_campaign(workspace, {"name": "Hook", "trigger": {"webhook": {}}})
    assert "made the first time an editor" in body(client.get(url("settings", campaign)))
    campaign.refresh_from_db()
    assert campaign.webhook_token is None


def test_event_filters_come_back_unchanged_from_the_rows_they_are_shown_in(client, editor,
                                                                          workspace):
    filters = [
        {"field": "at", "operator": "timestamp_after", "value": {"days_ago": 3}},
        {"field": "tags", "operator": "in", "value": ["a,b", "c"]},
        {"field": "size", "operator": "in", "value": ["s", "m"]},
        {"field": "price", "operator": "gt", "value": 5},
        {"field": "plan", "operator": "exists"},
    ]
    campaign = services.create_campaign(workspace, {
        "name": "Receipt", "trigger": {"event": {"name": "purchase", "filters": filters}}})
    rows = client.get(url("settings", campaign)).context["form"].filter_rows
    assert rows[2]["value"] == "s, m"
    data = {**settings_post(campaign, event_name="purchase", exit="never",
                            frequency_mode="every"),
            "filter_field": [row["field"] for row in rows],
            "filter_operator": [row["operator"] for row in rows],
            "filter_value": [row["value"] for row in rows]}
    assert client.post(url("settings", campaign), data).status_code == 302
    campaign.refresh_from_db()
    assert campaign.definition["trigger"]["event"]["filters"] == filters


def test_the_settings_page_costs_the_same_queries_however_many_segments(
        client, editor, workspace, django_assert_max_num_queries):
    ada = make_person(workspace, "ada")
    chosen = [manual_segment(workspace, f"S{number}", [ada]) for number in range(2)]
    campaign = segment_campaign(workspace, segment_list=chosen)
    client.get(url("settings", campaign))
    with django_assert_max_num_queries(12) as few:
        client.get(url("settings", campaign))
    for number in range(2, 14):
        manual_segment(workspace, f"S{number}", [ada])
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(url("settings", campaign))
    assert len(response.context["segments"]) == 14
