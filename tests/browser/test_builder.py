"""The segment builder in a real browser: rows, live preview, validator messages, saving."""

from playwright.sync_api import expect

from segments.models import Segment
from tests.factories import make_person


def test_build_preview_and_save_a_segment_screenshot(editor_page, workspace, screenshot):
    page = editor_page
    for name, age in [("ada", 20), ("bob", 35), ("cy", 50)]:
        make_person(workspace, name, age=age, plan="pro")

    page.goto("/segments/new/")
    expect(page.locator("#preview-empty")).to_be_visible()
    page.fill("input[name=name]", "Over 30")
    page.click("button[value='add:attribute:0']")
    field = page.locator("input[name=n-1-field]")
    expect(field).to_be_focused()
    field.fill("age")
    page.select_option("select[name=n-1-operator]", "gt")
    # The operator re-renders the row with a number input.
    expect(page.locator("input[name=n-1-value][type=number]")).to_be_visible()
    page.fill("input[name=n-1-value]", "30")
    expect(page.locator("#preview-count")).to_have_text("2")
    expect(page.locator("#preview-sample")).to_contain_text("bob")
    expect(page.locator("#preview-sample")).to_contain_text("cy")

    page.fill("input[name=n-1-value]", "40")
    expect(page.locator("#preview-count")).to_have_text("1")
    expect(page.locator("#preview-sample li")).to_have_count(1)
    screenshot(page, "builder")

    page.click("#save-segment")
    page.wait_for_url(lambda url: "/segments/new/" not in url)
    segment = Segment.objects.get()
    assert segment.name == "Over 30" and segment.kind == Segment.Kind.DATA_DRIVEN
    assert segment.conditions == {"and": [
        {"attribute": {"field": "age", "operator": "gt", "value": 40}}]}


def test_messages_appear_beside_the_faulty_row_as_you_type(editor_page, workspace):
    page = editor_page
    make_person(workspace, "ada", plan="pro", items=[{"price": 12}])
    page.goto("/segments/new/")
    page.click("button[value='add:attribute:0']")
    page.fill("input[name=n-1-field]", "plan")
    page.fill("input[name=n-1-value]", "pro")
    expect(page.locator("#preview-count")).to_have_text("1")

    page.click("button[value='add:and:0']")  # a group, with a row to fill in
    expect(page.locator("#preview-incomplete")).to_be_visible()
    page.select_option("select[name=n-2-kind]", "or")
    page.fill("input[name=n-3-field]", "items[")
    expect(page.locator("#problems-3")).to_have_text("'items[' is not a valid field path")
    expect(page.locator("#problems-1")).to_be_empty()
    expect(page.locator("#preview-problems")).to_be_visible()

    page.fill("input[name=n-3-field]", "items[].price")
    page.select_option("select[name=n-3-operator]", "gte")
    page.fill("input[name=n-3-value]", "10")
    expect(page.locator("#preview-count")).to_have_text("1")
    expect(page.locator("#problems-3")).to_be_empty()
    page.fill("input[name=n-3-value]", "20")
    expect(page.locator("#preview-count")).to_have_text("0")

    # Removing the group brings the first condition's count back; Enter saves.
    page.click("button[value='remove:2']")
    expect(page.locator("input[name=n-3-field]")).to_have_count(0)
    expect(page.locator("#preview-count")).to_have_text("1")
    page.fill("input[name=name]", "Pro")
    page.press("input[name=name]", "Enter")
    page.wait_for_url(lambda url: "/segments/new/" not in url)
    assert Segment.objects.get().conditions == {"and": [
        {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}}]}


def test_a_viewer_cannot_open_the_builder(viewer_page):
    response = viewer_page.goto("/segments/new/")
    assert response.status == 403
