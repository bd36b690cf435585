"""Campaign insight pages in a real browser: the overview's chart, test mode for a real
person, drafts sent in bulk, and a person's journeys loaded into their page."""

from playwright.sync_api import expect

from campaigns.models import Delivery, Journey
from tests.campaigns.insights_support import MAIL, STEPS, enter, running
from tests.factories import make_person


def people(workspace, *names):
    return [make_person(workspace, name, email=f"{name}@example.com", first_name=name.title())
            for name in names]


def test_the_overview_draws_the_last_30_days_as_a_chart(viewer_page, workspace, screenshot):
    page = viewer_page
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    campaign = running(workspace, STEPS)
    enter(campaign, people(workspace, "ada", "bob"))

    page.goto(f"/campaigns/{campaign.pk}/overview/")

    chart = page.locator("#daily-chart")
    expect(chart.locator("canvas")).to_be_visible()
    assert chart.locator("canvas").bounding_box()["width"] > 300
    legend = chart.locator(".u-legend")
    for label in ("Entered", "Sent", "Opened", "Clicked", "Converted"):
        expect(legend).to_contain_text(label)
    expect(page.locator("[data-total=entered]")).to_contain_text("2")
    expect(page.locator("#step-table tr[data-step=wait] [data-metric=waiting]")).to_have_text("2")
    screenshot(page, "campaign-overview")
    page.click("#step-table tr[data-step=wait] [data-metric=waiting] a")
    expect(page.locator("#step-people tbody tr")).to_have_count(2)
    assert errors == []


def test_test_mode_runs_the_workflow_for_a_real_person(viewer_page, workspace, screenshot):
    page = viewer_page
    campaign = running(workspace, [
        {"id": "wait", "type": "delay", "duration": {"days": 1}},
        {"id": "pro", "type": "update_attributes", "set": {"plan": "pro"}, "unset": []},
        {"id": "is_pro", "type": "branch", "condition": {"attribute": {
            "field": "plan", "operator": "eq", "value": "pro"}},
         "paths": [{"key": "true", "steps": [MAIL]}, {"key": "false", "steps": []}]}])
    (ada,) = people(workspace, "ada")

    page.goto(f"/campaigns/{campaign.pk}/test/")
    page.fill("#test-person", "ada@example.com")
    page.click("#run-test")

    run = page.locator(f".dry-run[data-person='{ada.cio_id}']")
    expect(run.locator("li[data-step]")).to_have_count(4)
    page.wait_for_url("**/test/?person=ada%40example.com")  # a link to share the run
    expect(run.locator("li[data-step=is_pro]")).to_contain_text("takes the true path")
    mail = run.locator("li[data-step=mail]")
    expect(mail).to_contain_text("Would be sent (not sent in a test).")
    expect(mail.locator(".email-subject")).to_have_text("Hi Ada")
    expect(mail.frame_locator("iframe").locator("p")).to_have_text("Hello Ada")
    expect(run.locator(".dry-run-end")).to_contain_text("Finishes the workflow.")
    screenshot(page, "campaign-test-mode")
    ada.refresh_from_db()
    assert "plan" not in ada.attributes
    assert Journey.objects.count() == 0 and Delivery.objects.count() == 0


def test_an_editor_sends_checked_drafts(editor_page, workspace, screenshot):
    page = editor_page
    campaign = running(workspace, [{**MAIL, "sending": "draft"}])
    ada, bob = people(workspace, "ada", "bob")
    enter(campaign, [ada, bob])
    ada_draft = Delivery.objects.get(cio_id=ada.cio_id)

    page.goto(f"/campaigns/{campaign.pk}/drafts/")
    expect(page.locator("article.draft")).to_have_count(2)
    screenshot(page, "campaign-drafts")
    page.check(f"input[name=delivery][value='{ada_draft.pk}']")
    page.click("#send-drafts")

    expect(page.locator("article.message")).to_contain_text("Queued for sending: 1 draft.")
    expect(page.locator("article.draft")).to_have_count(1)
    ada_draft.refresh_from_db()
    assert ada_draft.state == Delivery.State.QUEUED


def test_a_persons_page_shows_their_journeys(viewer_page, workspace):
    page = viewer_page
    campaign = running(workspace, STEPS)
    (ada,) = people(workspace, "ada")
    enter(campaign, [ada])

    page.goto(f"/people/{ada.cio_id}/")

    journeys = page.locator("#person-journeys")
    expect(journeys).to_contain_text(campaign.name)
    expect(journeys).to_contain_text("Active")
    expect(journeys.locator(".journey-path li")).to_have_count(2)
