"""On a phone (375 px): every navigation label whole, and the figure that matters on
Billing (Total) and Analytics (Flags) on screen without scrolling sideways (issue 18,
point 12)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from portal.lines.services import line_move
from tests.browser.conftest import PASSWORD
from tests.browser.test_analytics_pages import build_traffic
from tests.factories import SYSTEM, make_lines, make_sub_account, make_user

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 375, "height": 780}


@pytest.fixture
def phone(browser) -> Iterator[Any]:
    context = browser.new_context(viewport=PHONE)
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def outside_viewport(page, selector: str) -> list[str]:
    """The elements matching ``selector`` that are not whole inside the viewport's width
    or whose text is cut (wider than their box), described for the failure message."""
    return page.evaluate(
        """([selector, width]) => [...document.querySelectorAll(selector)]
            .filter(e => {
                const box = e.getBoundingClientRect();
                return box.width === 0 || box.left < 0 || box.right > width
                    || e.scrollWidth > e.clientWidth + 1;
            })
            .map(e => `${e.textContent.trim()} at ${JSON.stringify(e.getBoundingClientRect())}`)""",
        [selector, PHONE["width"]],
    )


def label_shown(cell) -> str:
    """The column name a stacked cell shows before its value (its ``::before``)."""
    content = cell.evaluate("e => getComputedStyle(e, '::before').content")
    return content.strip('"') if content not in ("none", "normal") else ""


def no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_every_navigation_label_is_whole_on_a_phone(live_server, phone, tenant):
    make_user(tenant.partner, "admin@acme.example", "admin", password=PASSWORD)
    phone.goto(live_server.url + "/login/")
    phone.get_by_label("Email").fill("admin@acme.example")
    phone.get_by_label("Password").fill(PASSWORD)
    phone.get_by_role("button", name="Log in").click()
    phone.wait_for_url(lambda url: "/login/" not in url)
    for path in ("/sub-accounts/", "/billing/", "/analytics/"):
        phone.goto(live_server.url + path)
        nav = phone.get_by_role("navigation", name="Main")
        links = nav.get_by_role("link")
        assert links.count() >= 8  # Sub-accounts … Audit log, Settings, Your account
        for name in ("Sub-accounts", "Lines", "Billing", "Invoices", "Analytics", "Requests"):
            expect(nav.get_by_role("link", name=name, exact=True)).to_be_visible()
        assert outside_viewport(phone, "nav.mainnav a") == []
        assert no_sideways_scroll(phone), path


def test_billing_total_is_on_screen_on_a_phone(live_server, phone, tenant):
    make_user(tenant.partner, "admin@acme.example", "admin", password=PASSWORD)
    partner = tenant.partner
    subs = [
        make_sub_account(partner, "Northwind Dental Group – Appointment Reminders"),
        make_sub_account(partner, "Client B – Support"),
    ]
    for line, sa in zip(make_lines(partner, 2), subs, strict=True):
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=sa.pk)
    phone.goto(live_server.url + "/login/?next=/billing/")
    phone.get_by_label("Email").fill("admin@acme.example")
    phone.get_by_label("Password").fill(PASSWORD)
    phone.get_by_role("button", name="Log in").click()
    phone.wait_for_url(lambda url: "/billing/" in url)
    totals = phone.locator("table.billing-summary td.key")
    assert totals.count() == 4  # Available, the two sub-accounts, the footer's total
    assert label_shown(totals.first) == "Total (USD)"  # its label shows beside it
    assert outside_viewport(phone, "table.billing-summary td.key") == []
    assert outside_viewport(phone, "table.billing-summary tbody th") == []
    assert no_sideways_scroll(phone)
    # Still a table with its column headings on a laptop.
    phone.set_viewport_size({"width": 1280, "height": 800})
    expect(phone.get_by_role("columnheader", name="Total (USD)")).to_be_visible()
    assert (
        phone.locator("table.billing-summary td.key").first.evaluate(
            "e => getComputedStyle(e).display"
        )
        == "table-cell"
    )


def test_analytics_flags_are_on_screen_on_a_phone(live_server, phone, tenant):
    make_user(tenant.partner, "viewer@acme.example", "viewer", password=PASSWORD)
    build_traffic(tenant.partner)
    phone.goto(live_server.url + "/login/?next=/analytics/")
    phone.get_by_label("Email").fill("viewer@acme.example")
    phone.get_by_label("Password").fill(PASSWORD)
    phone.get_by_role("button", name="Log in").click()
    phone.wait_for_url(lambda url: "/analytics/" in url)
    flags = phone.locator("table.analytics-compare td.flags")
    assert flags.count() == 3  # Available, Alpha and Beta
    assert label_shown(flags.first) == "Flags"
    assert outside_viewport(phone, "table.analytics-compare td.flags") == []
    # The headings stay usable as sort links.
    sort_by_sent = phone.get_by_role("link", name=re.compile(r"^Sent\W+sort largest first"))
    expect(sort_by_sent).to_be_visible()
    assert no_sideways_scroll(phone)


def test_invoice_totals_are_on_screen_on_a_phone(live_server, phone, tenant):
    """The invoice's summary table stacks like Billing's: each section's Total on screen,
    and so is each explained item's Amount."""
    from tests.browser.test_billing_pages import build_history

    make_user(tenant.partner, "billing@acme.example", "billing", password=PASSWORD)
    *_, july = build_history(tenant.partner)
    phone.goto(live_server.url + f"/login/?next=/invoices/{july.pk}/")
    phone.get_by_label("Email").fill("billing@acme.example")
    phone.get_by_label("Password").fill(PASSWORD)
    phone.get_by_role("button", name="Log in").click()
    phone.wait_for_url(lambda url: f"/invoices/{july.pk}/" in url)
    totals = phone.locator("table.invoice-summary td.key")
    assert totals.count() == 4  # Available, the two sub-accounts, the invoice total
    assert label_shown(totals.first) == "Total (USD)"
    assert outside_viewport(phone, "table.invoice-summary td.key") == []
    assert outside_viewport(phone, "table.invoice-summary tbody th") == []
    assert no_sideways_scroll(phone)
    # A section's items, opened from its row, show their amounts on screen too.
    phone.get_by_role("link", name="Client A – Sales").click()
    a = july.sections.get(name="Client A – Sales")
    amounts = phone.locator(f"#section-{a.sub_account_id} table.section-items td.key")
    expect(amounts.first).to_be_visible()
    assert label_shown(amounts.first) == "Amount"
    assert outside_viewport(phone, "details[open] table.section-items td.key") == []
    assert no_sideways_scroll(phone)
