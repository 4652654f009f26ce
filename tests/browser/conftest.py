"""Browser fixtures: Playwright driving Debian's Chromium against pytest-django's live server.

Without /usr/bin/chromium these tests skip, unless PORTAL_REQUIRE_BROWSER=1 (CI), where
a missing browser fails the run instead of hiding it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("PORTAL_CHROMIUM", "/usr/bin/chromium"))
PASSWORD = "correct-horse-42"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    """No collectstatic in tests: serve assets by their plain names from the finders."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("PORTAL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing; install Debian's chromium package.")
        pytest.skip(f"{CHROMIUM} is missing")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test
    # makes itself stay synchronous and safe.
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
def page(browser) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.csp_violations = []  # type: ignore[attr-defined]
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " e => console.error('CSP violation: ' + e.violatedDirective))"
    )
    page.on(
        "console",
        lambda m: page.csp_violations.append(m.text) if "CSP violation" in m.text else None,
    )
    yield page
    violations = page.csp_violations
    context.close()
    assert violations == [], violations


@pytest.fixture
def log_in(live_server) -> Callable[[Any, str], None]:
    def _log_in(page: Any, email: str, password: str = PASSWORD) -> None:
        page.goto(live_server.url + "/login/")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(lambda url: "/login/" not in url)

    return _log_in


@pytest.fixture
def screenshot() -> Callable[[Any, str], None]:
    """``screenshot(page, name)`` saves a full-page PNG under $PORTAL_SCREENSHOTS (when set),
    so a person can look at what a test saw; without it, nothing is written."""

    def _screenshot(page: Any, name: str) -> None:
        folder = os.environ.get("PORTAL_SCREENSHOTS")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)

    return _screenshot
