"""The workflow editor in a real browser: drag and drop (SortableJS, forceFallback),
blocks with paths, two tabs at once, a repeated drop, the "+" menu by keyboard."""

from playwright.sync_api import expect

from campaigns import services
from campaigns.models import Campaign


def make_campaign(workspace, steps=()):
    return services.create_campaign(workspace, {
        "name": "Re-engage", "trigger": {"event": {"name": "signed_up"}},
        "workflow": {"steps": list(steps)}})


def steps_of(campaign):
    campaign = Campaign.objects.get(pk=campaign.pk)
    return campaign.definition["workflow"]["steps"]


def drag(page, source, target, *, position="center"):
    """Drag ``source`` onto ``target`` with real mouse moves (SortableJS's fallback mode
    follows mousemove events, which ``drag_to`` alone does not make)."""
    source.scroll_into_view_if_needed()
    box = source.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 5, box["y"] + box["height"] / 2 + 5,
                    steps=5)
    target.scroll_into_view_if_needed()
    to = target.bounding_box()
    y = to["y"] + (to["height"] * 0.75 if position == "bottom" else
                   to["height"] * 0.25 if position == "top" else to["height"] / 2)
    page.mouse.move(to["x"] + to["width"] / 2, y, steps=15)
    page.mouse.move(to["x"] + to["width"] / 2, y + 1, steps=3)
    page.mouse.up()


def open_editor(page, campaign):
    page.goto(f"/campaigns/{campaign.pk}/workflow/")
    expect(page.locator("#canvas[data-editable=true]")).to_be_visible()


def test_drag_a_delay_onto_the_canvas(editor_page, workspace):
    page = editor_page
    campaign = make_campaign(workspace)
    open_editor(page, campaign)

    drag(page, page.locator(".palette-item[data-type=delay]"),
         page.locator("#canvas-zoom > .sequence"))

    expect(page.locator(".sequence .step.step-delay")).to_have_count(1)
    expect(page.locator(".step.step-delay .step-flag")).to_have_text("Not configured")
    assert [step["type"] for step in steps_of(campaign)] == ["delay"]
