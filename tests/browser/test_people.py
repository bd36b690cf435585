"""The People page and the person page in a real browser."""

import re

from playwright.sync_api import expect

from people import services
from people.models import Person, Suppression
from tests.factories import make_person


def test_bulk_delete_of_a_filtered_selection_with_suppress_screenshot(editor_page, workspace,
                                                                       screenshot):
    page = editor_page
    for name, plan in [("ada", "free"), ("bob", "free"), ("cy", "pro")]:
        make_person(workspace, name, email=f"{name}@example.com", plan=plan)

    page.goto("/people/")
    page.fill("input[name=field]", "plan")
    page.select_option("select[name=operator]", "eq")
    page.fill("input[name=value]", "free")
    page.click("#people-filters button[type=submit]")
    expect(page.locator("#people-count")).to_have_text(re.compile(r"^2 people"))
    assert "value=free" in page.url  # the URL follows the filters

    page.check("#select-page")
    screenshot(page, "people")
    page.click("#delete-forever")
    dialog = page.locator("#delete-dialog")
    expect(dialog).to_contain_text("Delete 2 people forever?")
    expect(dialog).to_contain_text("cannot be undone")
    screenshot(page, "delete-dialog")
    page.check("#suppress")
    page.click("#confirm-delete")

    expect(page.locator("#job-state")).to_have_attribute("data-state", "done")
    expect(page.locator("#job-deleted")).to_have_text("2")
    expect(page.locator("#job-suppressed")).to_have_text("4")
    assert list(Person.objects.values_list("customer_id", flat=True)) == ["cy"]
    assert Suppression.objects.filter(value="ada@example.com").exists()
    result = services.identify_person(workspace, services.Ref("id", "ada"), {"plan": "pro"})
    assert result.outcome == "suppressed" and Person.objects.count() == 1


def test_select_all_reaches_people_beyond_the_first_page(editor_page, workspace, settings):
    page = editor_page
    for number in range(60):  # more than one page of 50
        make_person(workspace, f"u{number:02d}", plan="trial")
    make_person(workspace, "keep", plan="paid")

    page.goto("/people/?field=plan&operator=eq&value=trial")
    expect(page.locator("#people-count")).to_have_text(re.compile(r"^60 people"))
    expect(page.locator("tbody tr")).to_have_count(50)
    page.check("#select-all")
    page.click("#delete-forever")
    expect(page.locator("#delete-dialog")).to_contain_text("Delete 60 people forever?")
    page.click("#confirm-delete")

    expect(page.locator("#job-state")).to_have_attribute("data-state", "done")
    expect(page.locator("#job-deleted")).to_have_text("60")
    assert list(Person.objects.values_list("customer_id", flat=True)) == ["keep"]


def test_a_viewer_is_offered_no_deletion(viewer_page, workspace):
    ada = make_person(workspace, "ada")
    viewer_page.goto("/people/")
    expect(viewer_page.locator("tbody")).to_contain_text("ada")
    expect(viewer_page.locator("#delete-forever")).to_have_count(0)
    expect(viewer_page.locator("input[name=person]")).to_have_count(0)
    viewer_page.goto(f"/people/{ada.cio_id}/")
    expect(viewer_page.locator("#delete-person")).to_have_count(0)
    # A forged POST, with the page's own CSRF token, is refused.
    status = viewer_page.evaluate("""async (person) => {
        const token = document.querySelector('[name=csrfmiddlewaretoken]').value;
        const body = new URLSearchParams({person, csrfmiddlewaretoken: token});
        const response = await fetch('/people/delete/', {method: 'POST', body});
        return response.status;
    }""", str(ada.pk))
    assert status == 403
    assert Person.objects.filter(pk=ada.pk).exists()


def test_deleting_from_the_person_page(editor_page, workspace):
    page = editor_page
    ada = make_person(workspace, "ada", plan="pro")
    page.goto("/people/")
    page.click("text=ada")
    expect(page.locator("#attributes")).to_contain_text('"plan": "pro"')
    page.click("#delete-person")
    page.click("#confirm-delete-person")
    expect(page.locator("#person-gone")).to_have_text("This person was deleted")
    assert page.url.endswith(f"/people/{ada.cio_id}/")
    assert not Person.objects.filter(pk=ada.pk).exists()
