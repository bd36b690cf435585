"""Campaign pages in a real browser: create a segment-triggered campaign, set its trigger,
see what the review finds, start it for current people, and stop it."""

from playwright.sync_api import expect

from campaigns import services
from campaigns.models import Campaign, Journey
from people import services as people
from segments import services as segments
from tests.factories import make_person


def manual_segment(workspace, name, people):
    segment = segments.create_segment(workspace, name=name)
    segments.add_to_segment(segment, [person.pk for person in people])
    return segment


def swapped(page, action) -> None:
    """Do ``action`` and wait until HTMX has swapped in the answer to what it asked."""
    page.evaluate("""() => {
        window.swapSettled = false;
        document.body.addEventListener("htmx:afterSettle",
            () => { window.swapSettled = true; }, {once: true});
    }""")
    action()
    page.wait_for_function("() => window.swapSettled")


def test_create_set_up_review_start_and_stop_a_segment_triggered_campaign(editor_page,
                                                                          workspace):
    page = editor_page
    ada, bob, cy = (make_person(workspace, name, email=f"{name}@example.com")
                    for name in ("ada", "bob", "cy"))
    vip = manual_segment(workspace, "VIP", [ada, bob])
    churned = manual_segment(workspace, "Churned", [bob, cy])

    # Create: name, tags and the trigger type in the seed's words.
    page.goto("/")
    page.click("#nav-campaigns")
    page.click("#new-campaign")
    page.fill("input[name=name]", "Welcome back")
    page.fill("input[name=tags]", "onboarding")
    page.get_by_label("They meet conditions").check()
    page.click("#create-campaign")
    campaign = Campaign.objects.get()
    page.wait_for_url(f"**/campaigns/{campaign.pk}/settings/")
    expect(page.locator("#campaign-state")).to_have_text("Draft")

    # The review names what is missing and links to where it is set.
    page.click("#tab-review")
    problem = page.locator("#problems li[data-place='trigger.segments.segments']")
    expect(problem).to_contain_text("choose at least one segment")
    problem.locator("a").click()
    page.wait_for_url(f"**/campaigns/{campaign.pk}/settings/#field-segments")

    # The trigger: in VIP and not in Churned, with the live count of who matches. Each
    # change re-renders the form with its preview.
    def changing(select, value):
        swapped(page, lambda: select.select_option(value))

    changing(page.locator("select[name=segment]").first, str(vip.pk))
    expect(page.locator("#trigger-matches")).to_contain_text("2 people match")
    swapped(page, lambda: page.click("#add-segment"))
    expect(page.locator(".segment-row")).to_have_count(2)
    changing(page.locator("select[name=segment]").nth(1), str(churned.pk))
    changing(page.locator("select[name=segment_in]").nth(1), "not_in")
    expect(page.locator("#trigger-matches")).to_contain_text("1 person matches")
    changing(page.locator("select[name=match]"), "any")
    expect(page.locator("#trigger-matches")).to_contain_text("2 people match")
    changing(page.locator("select[name=match]"), "all")
    expect(page.locator("#trigger-matches")).to_contain_text("1 person matches")
    page.click("#save-settings")
    expect(page.locator("article.message")).to_contain_text("Saved the settings")
    campaign.refresh_from_db()
    vip_and_not_churned = campaign.definition["trigger"]["segments"]
    assert vip_and_not_churned["match"] == "all"
    assert [item["in"] for item in vip_and_not_churned["segments"]] == [True, False]

    # A workflow step added in the editor but not configured yet: the review links to it.
    services.update_campaign(campaign, {**campaign.definition, "workflow": {"steps": [
        {"id": "wait", "type": "delay"}]}}, version=campaign.version)
    page.click("#tab-review")
    step_problem = page.locator("#problems li[data-place='workflow.steps[0].duration']")
    expect(step_problem.locator("a")).to_have_attribute(
        "href", f"/campaigns/{campaign.pk}/workflow/?step=wait#step-wait")
    campaign.refresh_from_db()
    services.update_campaign(campaign, {**campaign.definition, "workflow": {"steps": [
        {"id": "wait", "type": "delay", "duration": {"days": 3}}]}}, version=campaign.version)
    page.reload()
    expect(page.locator("#ready")).to_be_visible()

    # Start for current people and future additions, from the actions menu's dialog.
    page.click("#campaign-actions summary")
    page.click("#action-start")
    dialog = page.locator("#start-dialog")
    expect(dialog).to_contain_text("Current people and future additions")
    expect(dialog.locator("#current-matches")).to_contain_text("1 person matches now")
    expect(dialog).to_have_js_property("open", True)
    dialog.get_by_label("Current people and future additions").check()
    page.click("#confirm-start")
    expect(page.locator("#campaign-state")).to_have_text("Running")
    expect(page.locator("article.message")).to_contain_text("Started")
    journeys = Journey.objects.filter(campaign=campaign)
    assert [journey.person_id for journey in journeys] == [ada.pk]

    # Stop it, forcing everyone out.
    page.click("#campaign-actions summary")
    page.click("#action-stop")
    stop = page.locator("#stop-dialog")
    expect(stop).to_contain_text("1 person is in it now")
    stop.get_by_label("Force people to exit immediately").check()
    page.click("#confirm-stop")
    expect(page.locator("#campaign-state")).to_have_text("Stopped")
    assert journeys.get().state == Journey.State.EXITED
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.STOPPED

    # The list shows it with its trigger in words.
    page.click("#nav-campaigns")
    row = page.locator(f"tr[data-campaign='{campaign.pk}']")
    expect(row).to_contain_text("Stopped")
    expect(row.locator(".trigger")).to_have_text("People in VIP and not in Churned")


def test_a_viewer_sees_the_settings_but_no_actions(viewer_page, workspace):
    page = viewer_page
    campaign = services.create_campaign(workspace, {"name": "Receipt",
                                                    "trigger": {"event": {"name": "buy"}}})
    page.goto(f"/campaigns/{campaign.pk}/settings/")
    expect(page.locator("h1")).to_have_text("Receipt")
    expect(page.locator("#campaign-actions")).to_have_count(0)
    expect(page.locator("#save-settings")).to_have_count(0)
    expect(page.locator("#id_event_name")).to_be_disabled()


def test_an_event_trigger_picks_a_recent_event_and_adds_its_data_as_a_filter(editor_page,
                                                                             workspace):
    page = editor_page
    make_person(workspace, "ada", email="ada@example.com")
    people.track_event(workspace, people.Ref("id", "ada"), name="purchase",
                       data={"plan": "pro", "price": 9})
    campaign = services.create_campaign(workspace, {"name": "Receipt",
                                                    "trigger": {"event": {"name": None}}})
    page.goto(f"/campaigns/{campaign.pk}/settings/")
    expect(page.locator("#recent-event-names")).to_have_text("purchase")

    def pick_the_event():
        page.fill("#id_event_name", "purchase")
        page.locator("#id_event_name").dispatch_event("change")  # as leaving the field does

    swapped(page, pick_the_event)
    occurrence = page.locator("#occurrences tbody tr").first
    expect(occurrence).to_contain_text("ada")
    swapped(page, lambda: occurrence.locator(".pair", has_text="plan")
            .get_by_role("button", name="Add as filter").click())
    expect(page.locator("input[name=filter_field]").first).to_have_value("plan")
    expect(page.locator("input[name=filter_value]").first).to_have_value("pro")
    page.click("#save-settings")
    expect(page.locator("article.message")).to_contain_text("Saved the settings")
    campaign.refresh_from_db()
    assert campaign.definition["trigger"] == {"event": {"name": "purchase", "filters": [
        {"field": "plan", "operator": "eq", "value": "pro"}]}}


def test_archive_unarchive_and_delete_from_the_actions_menu(editor_page, workspace):
    page = editor_page
    campaign = services.create_campaign(workspace, {"name": "Old news",
                                                    "trigger": {"api": {}}})
    page.goto(f"/campaigns/{campaign.pk}/review/")
    page.click("#campaign-actions summary")
    page.click("#action-archive")
    expect(page.locator("#archive-dialog")).to_contain_text("Unsent drafts are removed")
    page.click("#confirm-archive")
    expect(page.locator("#campaign-state")).to_have_text("Archived")
    page.wait_for_url(f"**/campaigns/{campaign.pk}/review/")

    page.click("#nav-campaigns")
    expect(page.locator("#campaign-list")).not_to_contain_text("Old news")
    page.click("#tab-archived")
    page.click("text=Old news")
    page.click("#campaign-actions summary")
    page.click("#action-unarchive")
    expect(page.locator("#campaign-state")).to_have_text("Stopped")

    page.click("#campaign-actions summary")
    page.click("#action-delete")
    dialog = page.locator("#delete-dialog")
    dialog.locator("input[name=name]").fill("old news")
    page.click("#confirm-delete")
    expect(page.locator("#delete-error")).to_contain_text("nothing was deleted")
    dialog = page.locator("#delete-dialog")
    dialog.locator("input[name=name]").fill("Old news")
    page.click("#confirm-delete")
    page.wait_for_url("**/campaigns/")
    expect(page.locator("article.message")).to_contain_text("Deleted “Old news”")
    assert not Campaign.objects.filter(pk=campaign.pk).exists()
