"""The People and segment pages as a marketer walks them: history, dialogs, a 1280 px screen."""

import re

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from people.models import Person
from segments import services as segments
from tests.factories import make_person

WIDE = {"width": 1280, "height": 800}


def within_viewport(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    return (box is not None and box["x"] >= 0 and box["y"] >= 0
            and box["x"] + box["width"] <= WIDE["width"] + 0.5
            and box["y"] + box["height"] <= WIDE["height"] + 0.5)


def is_modal(page, selector: str) -> bool:
    """Tell whether the dialog is open as a modal, waiting briefly for the script that
    opens it after HTMX swaps it in."""
    try:
        page.wait_for_function("selector => document.querySelector(selector)?.matches(':modal')",
                               arg=selector, timeout=5000)
    except PlaywrightTimeout:
        return False
    return True


def focus_is_inside(page, selector: str) -> bool:
    return page.locator(selector).evaluate("dialog => dialog.contains(document.activeElement)")


def test_back_after_a_filter_a_page_and_a_deletion_shows_the_current_full_page(
        editor_page, workspace):
    page = editor_page
    for number in range(55):  # more than one page of 50
        make_person(workspace, f"u{number:02d}", plan="free")
    make_person(workspace, "pro", plan="pro")

    page.goto("/people/")
    page.fill("input[name=field]", "plan")
    page.select_option("select[name=operator]", "eq")
    page.fill("input[name=value]", "free")
    page.click("#people-filters button[type=submit]")
    expect(page.locator("#people-count")).to_have_text("55 people")
    page.click("#next-page")
    expect(page).to_have_url(re.compile(r"before="))
    expect(page.locator("tbody tr")).to_have_count(5)
    page.check(f"input[name=person][value='{Person.objects.get(customer_id='u00').pk}']")

    page.click("#nav-segments")  # leave, then come back
    expect(page.locator("h1")).to_have_text("Segments")
    page.go_back()
    expect(page.locator("h1")).to_have_text("People")  # the whole page, not the table alone
    expect(page.locator("nav")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(5)
    expect(page.locator("input[name=person]:checked")).to_have_count(0)
    page.go_back()  # back to the first page of the filter
    expect(page.locator("h1")).to_have_text("People")
    expect(page.locator("tbody tr")).to_have_count(50)
    expect(page).not_to_have_url(re.compile(r"before="))

    page.check("#select-all")
    page.click("#delete-forever")
    expect(page.locator("#delete-dialog")).to_contain_text("Delete 55 people forever?")
    page.click("#confirm-delete")
    expect(page.locator("#job-state")).to_have_attribute("data-state", "done")
    page.go_back()
    expect(page.locator("h1")).to_have_text("People")
    expect(page.locator("#people-count")).to_have_text("0 people")  # as it is now
    expect(page.locator("#people-table")).to_have_count(1)


def test_a_filter_error_through_htmx_is_shown_and_the_table_is_not_nested(editor_page,
                                                                          workspace):
    page = editor_page
    make_person(workspace, "ada", plan="pro")
    page.goto("/people/")
    page.fill("input[name=field]", "plan")
    page.select_option("select[name=operator]", "gt")
    page.fill("input[name=value]", "abc")
    page.click("#people-filters button[type=submit]")
    expect(page.locator("#filter-errors")).to_contain_text("needs a number")
    expect(page.locator("[id=people-table]")).to_have_count(1)
    page.fill("input[name=value]", "3")
    page.click("#people-filters button[type=submit]")
    expect(page.locator("#filter-errors")).to_have_count(0)
    expect(page.locator("[id=people-table]")).to_have_count(1)


def test_the_people_page_and_its_dialog_at_1280_px(editor_page, workspace):
    page = editor_page
    page.set_viewport_size(WIDE)
    for number in range(3):
        make_person(workspace, f"someone-with-a-long-identifier-{number:03d}",
                    email=f"someone.with.a.long.address.{number}@example.com", plan="free")
    page.goto("/people/")
    expect(page.locator("#people-count")).to_have_text("3 people")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert within_viewport(page, "#people-rows th:last-child")  # Unsubscribed
    assert "·" not in page.locator(".table-toolbar").inner_text()

    page.check("#select-page")
    page.click("#delete-forever")
    dialog = "#delete-dialog"
    expect(page.locator(dialog)).to_contain_text("Delete 3 people forever?")
    assert is_modal(page, dialog) and focus_is_inside(page, dialog)
    cancel = page.locator(f"{dialog} [data-close]").bounding_box()
    confirm = page.locator("#confirm-delete").bounding_box()
    assert abs(cancel["y"] - confirm["y"]) < 2 and cancel["x"] < confirm["x"]  # side by side
    red, green, blue = map(int, re.findall(r"\d+", page.locator("#confirm-delete").evaluate(
        "button => getComputedStyle(button).backgroundColor"))[:3])
    assert red > green + 40 and red > blue + 40  # it looks destructive
    page.keyboard.press("Escape")
    expect(page.locator(dialog)).to_have_count(0)
    assert Person.objects.count() == 3


def test_a_segment_page_at_1280_px_with_a_long_name(editor_page, workspace):
    page = editor_page
    page.set_viewport_size(WIDE)
    name = ("Customers who signed up during the spring campaign and never opened "
            "a single email, a push or an in-app message since, listed for a clean-up")
    beta = segments.create_segment(workspace, name=name.strip())
    segments.add_to_segment(beta, [make_person(workspace, "ada").pk])
    pro = segments.create_segment(workspace, name="Pro", conditions_tree={
        "attribute": {"field": "plan", "operator": "eq", "value": "pro"}})

    page.goto(f"/segments/{beta.pk}/")
    page.click("#segment-actions summary")
    for item in ("#archive", "#delete-profiles"):
        assert within_viewport(page, item), item
        assert page.locator(item).evaluate("e => e.scrollWidth <= e.clientWidth"), item
    page.click("#delete-profiles")
    dialog = "#delete-profiles-dialog"
    expect(page.locator(dialog)).to_contain_text("Delete the 1 profile in")
    assert is_modal(page, dialog) and focus_is_inside(page, dialog)
    assert page.locator(f"{dialog} input[name=name]").get_attribute("placeholder") is None
    assert within_viewport(page, "#confirm-delete-profiles")
    assert within_viewport(page, f"{dialog} [data-close]")
    page.keyboard.press("Escape")
    expect(page.locator(dialog)).to_have_count(0)

    page.goto(f"/segments/{pro.pk}/")
    page.click("#segment-actions summary")
    assert within_viewport(page, "#edit-conditions")
    assert page.locator("#edit-conditions").evaluate("e => e.scrollWidth <= e.clientWidth")


def test_the_person_page_deletes_through_a_modal_dialog(editor_page, workspace):
    page = editor_page
    page.set_viewport_size(WIDE)
    ada = make_person(workspace, "ada", email="ada@example.com")
    page.goto(f"/people/{ada.cio_id}/")
    assert page.locator("#delete-person").bounding_box()["width"] < 400  # a button, not a bar
    page.click("#delete-person")
    assert is_modal(page, "#delete-person-dialog")
    page.keyboard.press("Escape")
    expect(page.locator("#delete-person-dialog")).not_to_be_visible()
    page.click("#delete-person")
    page.check("#suppress-person")
    page.click("#confirm-delete-person")
    expect(page.locator("article.message")).to_contain_text(
        "The person was deleted and their identifiers suppressed")
    expect(page.locator("main")).not_to_contain_text("ada")
    assert not Person.objects.filter(pk=ada.pk).exists()
