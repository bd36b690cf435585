"""The webhook step's "Send test request" in a real browser: the settings as they stand
in the panel, rendered for a chosen person, sent once; the answer shown in the panel."""

from playwright.sync_api import expect

from campaigns.models import Delivery, Journey
from tests.browser.test_campaign_editor import make_campaign, open_editor, steps_of
from tests.factories import make_person
from tests.webhook_server import Reply


def test_send_a_test_request_and_see_the_answer(editor_page, workspace, webhook_server,
                                                settings):
    page = editor_page
    settings.ENGAGE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    ada = make_person(workspace, "ada", email="ada@example.com")
    make_person(workspace, "bob", email="bob@example.com")
    webhook_server.answer(f"/customers/{ada.cio_id}",
                          Reply(200, json={"deleted": True}, headers={"X-Request-Id": "r1"}))
    campaign = make_campaign(workspace, [{"id": "hook", "type": "webhook"}])
    open_editor(page, campaign)

    page.click("#step-hook .step-open")
    page.select_option("#panel select[name=method]", "DELETE")
    page.fill("#panel [name=url]", webhook_server.url + "/customers/{{customer.cio_id}}")
    page.fill("#panel [name=headers]", "Authorization: Basic c2l0ZTprZXk=")
    page.fill("#test-person", "ada@example.com")
    page.click("#send-test-request")

    answer = page.locator("#test-response")
    expect(answer.locator("#test-status")).to_have_text("HTTP 200 (success)")
    expect(answer.locator("#test-request-line")).to_have_text(
        f"DELETE {webhook_server.url}/customers/{ada.cio_id}")
    expect(answer.locator("#test-body")).to_contain_text('"deleted": true')
    answer.locator("summary", has_text="Response headers").click()
    expect(answer.locator("#test-headers")).to_contain_text("X-Request-Id: r1")
    (request,) = webhook_server.requests
    assert (request.method, request.headers["Authorization"]) == ("DELETE",
                                                                 "Basic c2l0ZTprZXk=")
    # Only sent: the step keeps its saved settings, and no delivery or journey is made.
    assert steps_of(campaign)[0].get("url") is None
    assert Delivery.objects.count() == 0 and Journey.objects.count() == 0

    # A person nobody is: nothing is sent.
    page.fill("#test-person", "zed@example.com")
    page.click("#send-test-request")
    expect(answer.locator("#test-nobody")).to_be_visible()
    assert len(webhook_server.requests) == 1
