"""Screenshots of the main pages at desktop and phone widths, for docs/screenshots/.

Runs `portal demo` on a throw-away SQLite database and a free port, logs in as the
demo users and saves one PNG per page and width. Usage: `make screenshots`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
PASSWORD = "demo-pass-123"
DEMO_SLUG = "demo-reseller"  # slugify(portal.demo.seed.DEMO_PARTNER)
WIDTHS = {"desktop": (1280, 860), "phone": (375, 780)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own localhost
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def log_in(page: Page, base: str, email: str) -> None:
    page.goto(base + "/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login/" not in url)


def shoot(page: Page, name: str, kind: str) -> None:
    page.wait_for_load_state("networkidle")
    path = OUT / f"{name}-{kind}.png"
    page.screenshot(path=str(path))
    print(f"  {path.relative_to(ROOT)}")


def tour(page: Page, base: str, kind: str) -> None:
    page.goto(base + "/login/")
    shoot(page, "login", kind)
    log_in(page, base, "admin@demo.example")
    page.goto(base + "/sub-accounts/")
    shoot(page, "sub-accounts", kind)
    page.get_by_role("link", name=re.compile(r"^Acme Dental")).first.click()
    shoot(page, "sub-account-detail", kind)
    tabs = page.get_by_role("navigation", name="Sub-account sections")
    for tab in ("Billing", "Analytics", "Requests", "Audit log"):
        tabs.get_by_role("link", name=tab, exact=True).click()
        # On a phone the tab's content starts below the fold: show it from the tabs down.
        page.get_by_role("navigation", name="Sub-account sections").evaluate(
            "nav => nav.scrollIntoView({block: 'start'})"
        )
        shoot(page, "sub-account-" + tab.lower().replace(" ", "-"), kind)
    page.goto(base + "/sub-accounts/new/")
    page.get_by_label("Sub-account name").fill("Northside Clinic")
    page.wait_for_timeout(700)
    shoot(page, "create-sub-account", kind)
    page.goto(base + "/lines/")
    shoot(page, "lines", kind)
    page.goto(base + "/sub-accounts/")
    page.get_by_role("link", name="Available").click()
    page.get_by_role("link", name=re.compile("^Add new line")).first.click()
    page.get_by_role("dialog").wait_for()
    shoot(page, "add-new-line", kind)
    page.goto(base + "/lines/")
    page.get_by_role("link", name=re.compile("^Move ")).first.click()
    page.get_by_role("dialog").wait_for()
    shoot(page, "move-line", kind)
    page.goto(base + "/lines/orders/")
    shoot(page, "request-lines", kind)
    page.goto(base + "/audit/")
    shoot(page, "audit-log", kind)
    page.goto(base + "/billing/")
    shoot(page, "billing", kind)
    page.goto(base + "/invoices/")
    page.get_by_role("link", name=re.compile(r"^Invoice \d")).first.click()
    shoot(page, "invoice", kind)
    page.goto(base + "/requests/")
    shoot(page, "requests", kind)
    page.goto(base + "/analytics/")
    shoot(page, "analytics", kind)
    page.goto(base + "/analytics/?sort=-messages_sent")
    page.get_by_role("heading", name="Sub-accounts compared").scroll_into_view_if_needed()
    shoot(page, "analytics-compare", kind)
    compared = page.get_by_role("table", name=re.compile("^Sub-accounts compared"))
    compared.locator("tbody th a").first.click()
    shoot(page, "analytics-sub-account", kind)
    page.get_by_role("heading", name="Per-line usage").scroll_into_view_if_needed()
    shoot(page, "analytics-lines", kind)
    shoot_pages(
        page,
        base,
        kind,
        ("/analytics/alerts/", "alerts"),
        ("/notifications/", "notifications"),
        ("/billing/resale/", "resale-prices"),
        ("/billing/margins/", "margins"),
        ("/billing/statements/", "statements"),
        ("/settings/users/", "settings-users"),
        ("/settings/api-keys/", "api-keys"),
        ("/settings/webhooks/", "webhooks"),
    )
    # The reseller's client: its own sub-accounts, statements and inbox only.
    page.context.clear_cookies()
    log_in(page, base, "client@demo.example")
    shoot_pages(
        page,
        base,
        kind,
        ("/sub-accounts/", "client-sub-accounts"),
        ("/billing/statements/", "client-statements"),
        ("/analytics/", "client-analytics"),
        ("/notifications/", "client-notifications"),
    )
    page.context.clear_cookies()
    log_in(page, base, "staff@provider.example")
    shoot_pages(
        page,
        base,
        kind,
        ("/staff/partners/", "staff-partners"),
        ("/staff/line-orders/", "staff-line-orders"),
        ("/staff/inventory/", "staff-inventory"),
        (f"/staff/partners/{DEMO_SLUG}/billing/", "staff-partner-billing"),
    )


def shoot_pages(page: Page, base: str, kind: str, *pages: tuple[str, str]) -> None:
    """One screenshot of each ``(path, name)`` that opens for the person logged in."""
    for path, name in pages:
        if page.goto(base + path).ok:
            shoot(page, name, kind)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="portal-shots-") as var:
        env = {**os.environ, "PORTAL_VAR_DIR": var, "DATABASE_URL": ""}
        portal = Path(sys.executable).with_name("portal")
        demo = subprocess.Popen(
            [str(portal), "demo", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(base + "/healthz", timeout=120)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=os.environ.get("PORTAL_CHROMIUM", "/usr/bin/chromium"),
                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
                )
                for kind, (width, height) in WIDTHS.items():
                    print(f"{kind} ({width} px):")
                    context = browser.new_context(viewport={"width": width, "height": height})
                    tour(context.new_page(), base, kind)
                    context.close()
                browser.close()
        finally:
            demo.send_signal(signal.SIGINT)
            demo.wait(timeout=60)


if __name__ == "__main__":
    main()
