"""The settings pages in a real browser: key regeneration, and what a viewer may not do."""

from playwright.sync_api import expect
from rest_framework.test import APIClient

from engage.models import IdentifierModeChange, Membership, Workspace
from tests.api.conftest import basic
from tests.browser.conftest import sign_in
from tests.factories import make_member


def track_identify(workspace, key) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic(workspace.site_id, key))
    return client.put("/api/v1/customers/x", data={"plan": "pro"}, format="json").status_code


def test_an_admin_regenerates_the_track_key_and_sees_it_once(page, workspace):
    sign_in(page, make_member(workspace, Membership.Role.ADMIN, username="ada"))
    old = workspace.track_api_key

    page.click("#nav-settings")
    page.click("#settings-credentials-link")
    expect(page.locator("#site-id")).to_have_text(workspace.site_id)
    expect(page.locator("#track-key-prefix")).to_contain_text(old[:10])
    page.click("#regenerate-track")
    expect(page.locator("main")).to_contain_text("stops working")
    page.click("#confirm-regenerate")

    new = page.locator("#new-key").inner_text()
    assert new.startswith("trk_") and new != old
    expect(page.locator("#new-key-panel")).to_contain_text("it is not shown again")
    assert track_identify(workspace, old) == 401
    assert track_identify(workspace, new) == 200

    page.click("#back-to-credentials")
    expect(page.locator("#track-key-prefix")).to_contain_text(new[:10])
    assert new not in page.content()
    page.reload()
    assert new not in page.content()
    assert all(new not in cookie["value"] for cookie in page.context.cookies())


def test_a_viewer_sees_no_admin_settings_and_a_forged_regenerate_is_refused(viewer_page,
                                                                            workspace):
    page = viewer_page
    old_hash = workspace.track_key_hash

    page.click("#nav-settings")
    expect(page.locator("#settings-suppressions-link")).to_be_visible()
    for admin_link in ("#settings-identifiers-link", "#settings-credentials-link",
                       "#settings-members-link"):
        expect(page.locator(admin_link)).to_have_count(0)

    # A POST built by hand, with the page's own CSRF token, is still refused.
    status = page.evaluate("""async () => {
        const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken'];
        const response = await fetch('/settings/credentials/track/regenerate/', {
            method: 'POST', headers: {'X-CSRFToken': token}, credentials: 'same-origin'});
        return response.status;
    }""")

    assert status == 403
    assert Workspace.objects.get(pk=workspace.pk).track_key_hash == old_hash
    assert page.goto("/settings/credentials/").status == 403


def test_an_admin_switches_to_email_or_id_and_the_page_follows_the_change(page, id_workspace,
                                                                         monkeypatch):
    from people import identifier_mode
    from tests.factories import make_person

    for number in range(5):
        make_person(id_workspace, f"u{number}", email=f"User{number}@Example.com")
    monkeypatch.setattr(IdentifierModeChange, "batch_size", 2)
    # No worker has picked the change up yet: the test plays the worker, a batch at a time.
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: None)
    sign_in(page, make_member(id_workspace, Membership.Role.ADMIN, username="ada"))

    page.goto("/settings/identifiers/")
    expect(page.locator("#identifier-mode")).to_have_text("ID only")
    page.click("#switch-mode")
    expect(page.locator("#mode-change-state")).to_contain_text("0 of 5 people (0%)")
    expect(page.locator("#switch-mode")).to_have_count(0)

    change = identifier_mode.running_mode_change(id_workspace)
    identifier_mode.run_identifier_mode_change(change.pk, max_batches=1)
    expect(page.locator("#mode-change-state")).to_contain_text("2 of 5 people (40%)")
    identifier_mode.run_identifier_mode_change(change.pk)
    # Done: the page reloads itself and shows the new mode.
    expect(page.locator("#identifier-mode")).to_have_text("Email or ID")
    expect(page.locator("#mode-change")).to_have_count(0)
    assert Workspace.objects.get(pk=id_workspace.pk).identifier_mode == "email_or_id"
