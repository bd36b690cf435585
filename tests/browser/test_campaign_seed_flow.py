"""The seed's campaign, "Delete inactive people", built from nothing in a real browser and
run to its end: a segment of inactive people triggers it, a last-chance email goes out,
a week passes, and a webhook deletes through engage's own Track API whoever did not
come back. The back end is driven in the test's process as the workers would drive it.
"""

import base64
from datetime import timedelta
from urllib.parse import urlsplit

from django.utils import timezone
from playwright.sync_api import expect

from campaigns import email, engine, webhooks
from campaigns.models import Campaign, Journey
from people import services as people
from people.models import Person
from segments import services as segments
from tests.browser.test_campaign_editor import drag, open_editor
from tests.browser.test_campaign_pages import swapped
from tests.factories import make_person

INACTIVE = {"attribute": {"field": "last_seen", "operator": "timestamp_before",
                          "value": {"days_ago": 30}}}


def run_workers() -> None:
    """Do what the campaign sweepers would do now: advance journeys, send what is due."""
    while engine.advance_due() + email.send_due_emails() + webhooks.send_due_webhooks():
        pass


def configure(page, step, fields: dict, selects: dict | None = None) -> None:
    """Open a step's settings, fill them in and save them."""
    page.click(f"#step-{step} .step-open")
    expect(page.locator("#panel")).to_have_attribute("data-step-id", step)
    for name, value in fields.items():
        page.fill(f"#panel [name={name}]", value)
    for name, value in (selects or {}).items():
        page.select_option(f"#panel select[name={name}]", value)
    page.click("#save-step")
    expect(page.locator("#panel-saved")).to_be_visible()
    expect(page.locator(f"#step-{step} .step-flag")).to_have_count(0)


def dropped(page, kind: str, target) -> str:
    """Drag a step type from the palette onto ``target``; return the new step's id."""
    before = page.locator(f".step.step-{kind}").count()
    drag(page, page.locator(f"#palette .palette-item[data-type={kind}]"), target)
    expect(page.locator(f".step.step-{kind}")).to_have_count(before + 1)
    return page.locator(f".step.step-{kind}").nth(before).get_attribute("data-step-id")


def test_the_seed_campaign_deletes_inactive_people_screenshot(
        editor_page, workspace, live_server, settings, smtp_sink, time_machine, screenshot):
    page = editor_page
    settings.ENGAGE_WEBHOOK_ALLOWED_HOSTS = [urlsplit(live_server.url).hostname]
    # One call at a time: on SQLite the live server's threads share the test's in-memory
    # database, which takes one writer at a time.
    settings.ENGAGE_WEBHOOK_CONCURRENCY = 1
    long_ago = int((timezone.now() - timedelta(days=90)).timestamp())
    ada, bob, cy = (make_person(workspace, name, email=f"{name}@example.com",
                                last_seen=long_ago) for name in ("ada", "bob", "cy"))
    dee = make_person(workspace, "dee", email="dee@example.com",
                      last_seen=int(timezone.now().timestamp()))
    inactive = segments.create_segment(workspace, name="Unengaged - Delete candidates",
                                       conditions_tree=INACTIVE)
    assert set(inactive.memberships.values_list("person_id", flat=True)) == {
        ada.pk, bob.pk, cy.pk}

    # 1. A campaign triggered when people meet conditions: the segment of inactive people.
    page.goto("/campaigns/new/")
    page.fill("input[name=name]", "Delete inactive people")
    page.get_by_label("They meet conditions").check()
    page.click("#create-campaign")
    page.wait_for_url("**/campaigns/*/settings/")
    campaign = Campaign.objects.get(workspace=workspace)
    swapped(page, lambda: page.locator("select[name=segment]").first.select_option(
        str(inactive.pk)))
    expect(page.locator("#trigger-matches")).to_contain_text("3 people match")
    page.click("#save-settings")
    expect(page.locator("article.message")).to_contain_text("Saved the settings")

    # 2. The workflow, dragged in: a last-chance email, a week's delay, the deleting webhook.
    open_editor(page, campaign)
    mail = dropped(page, "email", page.locator("#canvas-zoom > .sequence > .slot"))
    page.click(f"#step-{mail} .step-open")
    page.fill("#panel [name=sender]", "team@example.com")
    page.fill("#panel [name=subject]", "Last chance, {{customer.email}}")
    page.fill("#panel [name=body_html]",
              "<p>We miss you, {{customer.email}}.</p><p>Come back within a week, or your "
              "profile is deleted.</p>")
    page.select_option("#panel select[name=sending]", "automatic")
    expect(page.locator("#preview-subject")).to_have_text("Last chance, dee@example.com")
    expect(page.frame_locator("#preview-body").locator("p").first).to_have_text(
        "We miss you, dee@example.com.")
    page.click("#save-step")
    expect(page.locator("#panel-saved")).to_be_visible()
    expect(page.locator(f"#step-{mail} .step-flag")).to_have_count(0)
    expect(page.locator("#preview-subject")).to_have_text("Last chance, dee@example.com")
    page.locator("#email-preview").evaluate("preview => preview.scrollIntoView(false)")
    screenshot(page, "seed-email-settings")

    wait = dropped(page, "delay", page.locator(f"#step-{mail} + .slot"))
    configure(page, wait, {"days": "7"})
    delete = dropped(page, "webhook", page.locator(f"#step-{wait} + .slot"))
    credentials = base64.b64encode(
        f"{workspace.site_id}:{workspace.track_api_key}".encode()).decode()
    configure(page, delete, {
        "name": "Delete the profile",
        "url": f"{live_server.url}/api/v1/customers/cio_{{{{customer.cio_id}}}}",
        "headers": f"Authorization: Basic {credentials}"},
        {"method": "DELETE", "sending": "automatic"})
    campaign.refresh_from_db()
    assert [step["type"] for step in campaign.definition["workflow"]["steps"]] == [
        "email", "delay", "webhook"]

    # 3. People exit when they no longer match; the review finds nothing missing.
    page.goto(f"/campaigns/{campaign.pk}/settings/")
    page.select_option("select[name=exit]", "unmatch")
    page.click("#save-settings")
    expect(page.locator("article.message")).to_contain_text("Saved the settings")
    page.click("#tab-review")
    expect(page.locator("#ready")).to_be_visible()
    expect(page.locator("#problems")).to_have_count(0)

    # 4. Start it for the people in the segment now and those who join later.
    page.click("#campaign-actions summary")
    page.click("#action-start")
    dialog = page.locator("#start-dialog")
    expect(dialog.locator("#current-matches")).to_contain_text("3 people match now")
    dialog.get_by_label("Current people and future additions").check()
    page.click("#confirm-start")
    expect(page.locator("#campaign-state")).to_have_text("Running")

    # The workers send the last-chance emails; everyone waits out the week.
    run_workers()
    assert sorted(message["To"] for message in smtp_sink.messages) == [
        "ada@example.com", "bob@example.com", "cy@example.com"]
    assert smtp_sink.messages[0]["Subject"].startswith("Last chance, ")
    journeys = Journey.objects.filter(campaign=campaign)
    assert {journey.step_id for journey in journeys} == {wait}

    # Bob comes back during the week: he leaves the segment, so he leaves the campaign.
    time_machine.move_to(timezone.now() + timedelta(days=3), tick=True)
    people.identify_person(workspace, people.Ref("id", "bob"),
                           {"last_seen": int(timezone.now().timestamp())})
    assert not inactive.memberships.filter(person=bob).exists()
    time_machine.move_to(timezone.now() + timedelta(days=5), tick=True)
    run_workers()
    # Hang up on the live server, as a stopping worker does: a kept-alive connection
    # would keep its request thread, and that thread's database session, open.
    webhooks.close_sessions()

    assert set(Person.objects.filter(workspace=workspace).values_list(
        "customer_id", flat=True)) == {"bob", "dee"}
    assert len(smtp_sink.messages) == 3  # one email a person, none sent again
    # Deleting a person ends their journeys: the webhook's own call ends theirs.
    ended = {journey.cio_id: (journey.state, journey.exit_reason) for journey in journeys.all()}
    assert ended == {bob.cio_id: (Journey.State.EXITED, "unmatched"),
                     ada.cio_id: (Journey.State.EXITED, "person_deleted"),
                     cy.cio_id: (Journey.State.EXITED, "person_deleted")}

    # The canvas shows each step's figures.
    open_editor(page, campaign)
    expect(page.locator(f"#figures-{mail} [data-metric=entered]")).to_have_text("3")
    expect(page.locator(f"#figures-{mail} [data-metric=sent]")).to_have_text("3")
    expect(page.locator(f"#figures-{wait} [data-metric=entered]")).to_have_text("3")
    # Bob reached the webhook too, and exited there before it was sent.
    expect(page.locator(f"#figures-{delete} [data-metric=entered]")).to_have_text("3")
    expect(page.locator(f"#figures-{delete} [data-metric=sent]")).to_have_text("2")
    page.click(f"#step-{delete} .step-open")
    expect(page.locator("#send-test-request")).to_be_visible()
    page.click("[data-zoom=out]")
    page.locator("#editor").evaluate("editor => editor.scrollIntoView()")
    screenshot(page, "seed-canvas")

    # The People page lists who came back, and nobody who was deleted.
    page.goto("/people/")
    rows = page.locator("#people-rows")
    for stays in (bob, dee):
        expect(rows.locator(f"tr[data-person='{stays.pk}']")).to_have_count(1)
    for gone in (ada, cy):
        expect(rows.locator(f"tr[data-person='{gone.pk}']")).to_have_count(0)
    expect(rows).not_to_contain_text("ada@example.com")

    # The overview and the journeys: who came back and who was deleted.
    page.goto(f"/campaigns/{campaign.pk}/overview/")
    expect(page.locator("[data-total=entered]")).to_contain_text("3")
    expect(page.locator("[data-total=active]")).to_contain_text("0")
    expect(page.locator("[data-total=exited]")).to_contain_text("3")
    expect(page.locator(f"#step-table tr[data-step={delete}] [data-metric=sent]")).to_have_text(
        "2")
    expect(page.locator("#daily-chart canvas")).to_be_visible()
    screenshot(page, "seed-overview")
    page.goto(f"/campaigns/{campaign.pk}/journeys/")
    expect(page.locator("#journeys tbody tr")).to_have_count(3)
    expect(page.locator("#journeys tbody tr", has_text="bob")).to_contain_text(
        "Exited (unmatched)")
    for gone in (ada, cy):
        row = page.locator("#journeys tbody tr", has_text=f"cio_{gone.cio_id}")
        expect(row).to_contain_text("(deleted)")
        expect(row).to_contain_text("Exited (person_deleted)")
