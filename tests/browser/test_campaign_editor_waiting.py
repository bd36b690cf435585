"""Editing a running campaign in a real browser while people wait in its workflow."""

from datetime import timedelta

from django.utils import timezone
from playwright.sync_api import expect

from campaigns import engine
from campaigns.models import Campaign, Journey
from tests.browser.test_campaign_editor import drag, open_editor, steps_of
from tests.campaigns.insights_support import enter, running
from tests.factories import make_person


def test_a_block_moved_while_people_wait_inside_it_keeps_them_at_their_step(editor_page,
                                                                            workspace):
    page = editor_page
    campaign = running(workspace, [
        {"id": "check", "type": "branch",
         "condition": {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}},
         "paths": [{"key": "true", "steps": [
                       {"id": "inside", "type": "delay", "duration": {"days": 3}}]},
                   {"key": "false", "steps": []}]},
        {"id": "tag", "type": "update_attributes", "set": {"stage": "tagged"}, "unset": []},
    ])
    ada, bob = (make_person(workspace, name, plan="pro") for name in ("ada", "bob"))
    enter(campaign, [ada, bob])
    journeys = Journey.objects.filter(campaign=campaign)
    assert {(journey.step_id, journey.state) for journey in journeys} == {("inside", "active")}
    version = Campaign.objects.get(pk=campaign.pk).version
    page.set_viewport_size({"width": 1280, "height": 1200})  # the whole workflow in view
    open_editor(page, campaign)
    expect(page.locator("#figures-inside [data-metric=waiting]")).to_have_text("2")

    # The branch, with the people waiting in it, goes after the attribute update.
    drag(page, page.locator("#step-check > .step-card"),
         page.locator("#canvas-zoom > .sequence > .slot").last)

    expect(page.locator(f"#canvas[data-version='{version + 1}']")).to_be_attached()
    assert [step["id"] for step in steps_of(campaign)] == ["tag", "check"]
    assert {(journey.step_id, journey.state) for journey in journeys.all()} == {
        ("inside", "active")}
    expect(page.locator("#canvas-zoom > .sequence > .step").nth(1)).to_have_id("step-check")
    expect(page.locator("#step-check .path[data-path-key=true] #step-inside")).to_be_visible()
    # The figures come again with the fresh canvas: the two still wait inside the block.
    page.reload()
    expect(page.locator("#figures-inside [data-metric=waiting]")).to_have_text("2")
    expect(page.locator("#figures-tag [data-metric=entered]")).to_have_text("0")

    # When their delay ends they go on after the block where it is now: the end.
    while engine.advance_due(now=timezone.now() + timedelta(days=4)):
        pass
    assert {journey.state for journey in journeys.all()} == {Journey.State.FINISHED}
    ada.refresh_from_db()
    assert "stage" not in ada.attributes
