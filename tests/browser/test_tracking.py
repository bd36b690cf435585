"""The email suppression list and the unsubscribe page in a real browser."""

from playwright.sync_api import expect

from campaigns import bounces
from campaigns.models import EmailSuppression
from campaigns.tracking import unsubscribe_url
from people.models import Person
from tests.campaigns.test_tracking import sent_delivery
from tests.factories import make_person


def test_an_editor_searches_adds_and_removes_suppressed_addresses(editor_page, workspace):
    page = editor_page
    bounces.suppress_address(workspace, "ann@example.com", reason="bounce")
    bounces.suppress_address(workspace, "bob@example.com", reason="complaint")

    page.click("#nav-settings")
    page.click("#settings-email-suppressions-link")
    expect(page.locator("#emailsuppression-count")).to_have_text("2 suppressed addresses")

    page.locator("#emailsuppression-filters input[name=q]").press_sequentially("bo")  # as one types
    expect(page.locator("#emailsuppression-count")).to_have_text("1 suppressed address")
    expect(page.locator("#emailsuppression-table")).not_to_contain_text("ann@example.com")
    assert "q=bo" in page.url

    page.fill("#emailsuppression-add input[name=address]", "Cy@Example.com")
    page.click("#emailsuppression-add button[type=submit]")
    expect(page.locator("main")).to_contain_text("cy@example.com is suppressed")
    expect(page.locator("tr", has_text="cy@example.com")).to_contain_text("Added by hand")

    page.locator("tr", has_text="ann@example.com").get_by_role("button", name="Remove").click()
    expect(page.locator("main")).to_contain_text("ann@example.com may receive email again")
    assert set(EmailSuppression.objects.values_list("address", flat=True)) == {
        "bob@example.com", "cy@example.com"}


def test_a_viewer_sees_the_list_without_its_controls(viewer_page, workspace):
    bounces.suppress_address(workspace, "ann@example.com", reason="bounce")
    page = viewer_page
    page.goto("/settings/email/suppressions/")
    expect(page.locator("#emailsuppression-table")).to_contain_text("ann@example.com")
    expect(page.locator("#emailsuppression-add")).to_have_count(0)
    expect(page.get_by_role("button", name="Remove")).to_have_count(0)


def test_a_recipient_confirms_unsubscribing(page, workspace, live_server):
    ada = make_person(workspace, "ada", email="ada@example.com")
    delivery = sent_delivery(workspace, ada)
    path = "/" + unsubscribe_url(delivery.pk).split("/", 3)[3]

    page.goto(path)
    assert not Person.objects.get(pk=ada.pk).unsubscribed
    page.get_by_role("button", name="Unsubscribe").click()

    expect(page.locator("#unsubscribed")).to_have_text("You are unsubscribed")
    assert Person.objects.get(pk=ada.pk).unsubscribed
