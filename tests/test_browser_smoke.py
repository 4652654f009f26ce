"""Browser tests: Playwright driving Debian's Chromium against a live server.

Without /usr/bin/chromium these skip, unless PORTAL_REQUIRE_BROWSER=1 (CI), where a
missing browser fails the run instead of hiding it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import make_lines, make_sub_account, make_user

CHROMIUM = Path(os.environ.get("PORTAL_CHROMIUM", "/usr/bin/chromium"))
pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    """No collectstatic in tests: serve assets by their plain names from the finders."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        if os.environ.get("PORTAL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing; install Debian's chromium package.")
        pytest.skip(f"{CHROMIUM} is missing")
    # Playwright's sync API runs an event loop in this thread; the ORM calls made by
    # the test itself are still synchronous and safe.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    yield page
    context.close()


@pytest.mark.django_db(transaction=True)
def test_partner_admin_logs_in_and_sees_sub_accounts_with_counts(live_server, page, tenant):
    make_user(tenant.partner, "admin@acme.example", "admin", password="correct-horse-42")
    sales = make_sub_account(tenant.partner, "Client ABC – Sales Campaign")
    make_lines(tenant.partner, 3)

    page.goto(live_server.url + "/")
    page.get_by_label("Email").fill("admin@acme.example")
    page.get_by_label("Password").fill("correct-horse-42")
    page.get_by_role("button", name="Log in").click()

    rows = page.get_by_role("row")
    rows.first.wait_for()
    available = page.get_by_role("row", name="Available")
    assert "3" in available.inner_text()
    assert sales.name in page.get_by_role("row", name=sales.name).inner_text()


@pytest.mark.django_db(transaction=True)
def test_wrong_password_is_refused(live_server, page, tenant):
    make_user(tenant.partner, "admin@acme.example", "admin", password="correct-horse-42")
    page.goto(live_server.url + "/login/")
    page.get_by_label("Email").fill("admin@acme.example")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").is_visible()
