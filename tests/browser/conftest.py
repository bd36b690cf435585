"""Browser tests: Playwright driving Debian's Chromium against a live engage server."""

import os
import shutil

import pytest

from engage.models import Membership
from tests.factories import make_member

# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests
# make around it are ordinary synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium is needed for browser tests: install Debian's chromium ({CHROMIUM})")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-dev-shm-usage"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server, transactional_db):
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(15_000)
    in_flight = set()  # requests the live server may still be answering
    context.on("request", lambda request: in_flight.add(request))
    context.on("requestfinished", lambda request: in_flight.discard(request))
    context.on("requestfailed", lambda request: in_flight.discard(request))
    page = context.new_page()
    yield page
    # On SQLite the live server shares the test's in-memory database: a request still
    # being answered (a preview, a save's follow-up) when the test's data is flushed
    # would hold a table ("database table is locked"). Let them finish first, a while.
    for _ in range(50):
        if not in_flight:
            break
        page.wait_for_timeout(100)
    context.close()


def sign_in(page, user):
    page.goto("/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


@pytest.fixture
def editor_page(page, workspace):
    sign_in(page, make_member(workspace, Membership.Role.EDITOR, username="eddie"))
    return page


@pytest.fixture
def viewer_page(page, workspace):
    sign_in(page, make_member(workspace, Membership.Role.VIEWER, username="vera"))
    return page


@pytest.fixture
def screenshot():
    """Save a screenshot for the README when ``ENGAGE_SCREENSHOTS`` names a folder.

    ``python3 dev.py screenshots`` runs the browser tests whose names say "screenshot"
    with it set, so the README's pictures come from the same setup as the tests.
    """
    folder = os.environ.get("ENGAGE_SCREENSHOTS")

    def take(page, name: str) -> None:
        if folder:
            page.set_viewport_size({"width": 1280, "height": 800})
            page.screenshot(path=os.path.join(folder, f"{name}.png"))

    return take
