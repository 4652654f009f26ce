"""The Sub-accounts list in a browser (issue 18, point 2): the columns by name, sorting by
This month, the Status filter, a pending deletion's purge date and Restore for an admin
only, and the key figure on a phone."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import expect

from portal.billing.summary import billing_summary
from portal.core.localtime import format_local
from portal.core.principal import Principal
from portal.partners.models import SubAccount, SubAccountStatus
from portal.workflows.services import deletions
from tests.browser.conftest import PASSWORD
from tests.factories import SYSTEM, make_sub_account, make_user
from tests.partners.test_sub_account_list import traffic

pytestmark = pytest.mark.django_db(transaction=True)

COLUMNS = ["Sub-account", "Lines", "This month", "Volume limit usage", "Response rate", "Flags"]


def world(partner) -> tuple[SubAccount, Any]:
    """Alpha, Beta and Gamma with lines and traffic, and Delta pending deletion."""
    traffic(partner)
    delta = make_sub_account(partner, "Delta – Closed")
    request = deletions.deletion_request_create(
        principal=SYSTEM.acting_for(partner.pk), sub_account_id=delta.pk
    )
    deletions.deletion_request_approve(principal=Principal.system("staff"), request_id=request.pk)
    delta.refresh_from_db()
    return delta, request


def body_names(page) -> list[str]:
    return page.locator("table.sub-account-list tbody tr:not(.pool) th").all_inner_texts()


def test_columns_sort_by_cost_status_filter_and_restore(
    live_server, page, log_in, tenant, screenshot
):
    partner = tenant.partner
    delta, _request = world(partner)
    admin = make_user(partner, "admin@acme.example", "admin", password=PASSWORD)
    log_in(page, "admin@acme.example")
    page.goto(live_server.url + "/sub-accounts/")
    table = page.get_by_role("table")
    for name in COLUMNS:
        heading = table.get_by_role("columnheader", name=re.compile(rf"^{name}\W+sort"))
        expect(heading).to_be_visible()
        expect(heading.get_by_role("link")).to_be_visible()
    expect(table.get_by_role("columnheader", name="Status", exact=True)).to_be_visible()
    expect(table.get_by_role("columnheader", name=re.compile("^Sub-account"))).to_have_attribute(
        "aria-sort", "ascending"
    )
    assert "Delta – Closed" not in body_names(page)  # pending deletion: not by default
    screenshot(page, "sub-accounts-list-desktop")

    # This month, largest first: the order of Billing's summary totals.
    table.get_by_role("link", name=re.compile(r"^This month\W+sort largest first")).click()
    page.wait_for_url(re.compile(r"sort=-this_month"))
    heading = page.get_by_role("columnheader", name=re.compile("^This month"))
    expect(heading).to_have_attribute("aria-sort", "descending")
    totals = {
        r.sub_account_id: r.total for r in billing_summary(principal=Principal.for_user(admin)).rows
    }
    listed = SubAccount.objects.filter(partner=partner, kind="standard").exclude(
        status=SubAccountStatus.PENDING_DELETION
    )
    expected = sorted(listed, key=lambda sa: sa.name.lower())
    expected.sort(key=lambda sa: totals.get(sa.pk, Decimal(0)), reverse=True)
    assert body_names(page) == [sa.name for sa in expected]
    assert body_names(page)[0] != sorted(body_names(page))[0]  # not just the name order
    expect(page.get_by_label("Sort by")).to_have_value("-this_month")

    # Status: Pending deletion shows Delta alone, its purge date with the zone, and Restore.
    page.get_by_label("Status").select_option(label="Pending deletion")
    expect(page.locator("table.sub-account-list tbody tr")).to_have_count(1)
    row = page.get_by_role("row", name=re.compile("Delta – Closed"))
    expect(row).to_contain_text("Pending deletion")
    expect(row).to_contain_text(f"Purge on {format_local(delta.purge_after, partner.timezone)}")
    screenshot(page, "sub-accounts-list-pending-deletion")
    row.get_by_role("button", name=re.compile("^Restore")).click()
    expect(page.get_by_text(re.compile(r"Deletion request #\d+ restored"))).to_be_visible()
    assert "/sub-accounts/" in page.url
    expect(page.locator("table.sub-account-list tbody")).to_contain_text("No sub-account")
    delta.refresh_from_db()
    assert delta.status == SubAccountStatus.ACTIVE
    page.get_by_label("Status").select_option(label="Active")
    row = page.get_by_role("row", name=re.compile("Delta – Closed"))
    expect(row.locator(".status")).to_have_text("Active")


@pytest.mark.parametrize("role", ["manager", "viewer"])
def test_no_restore_for_who_may_not(live_server, page, log_in, tenant, role):
    world(tenant.partner)
    make_user(tenant.partner, f"{role}@acme.example", role, password=PASSWORD)
    log_in(page, f"{role}@acme.example")
    page.goto(live_server.url + "/sub-accounts/?status=pending_deletion")
    row = page.get_by_role("row", name=re.compile("Delta – Closed"))
    expect(row).to_contain_text("Purge on")
    expect(row.get_by_role("button", name=re.compile("Restore"))).to_have_count(0)
    cost = page.get_by_role("columnheader", name=re.compile("^This month"))
    expect(cost).to_have_count(1 if role == "manager" else 0)
    expect(page.get_by_role("columnheader", name=re.compile("^Flags"))).to_have_count(1)


def test_this_month_is_on_screen_on_a_phone(live_server, browser, tenant, screenshot):
    world(tenant.partner)
    make_user(tenant.partner, "admin@acme.example", "admin", password=PASSWORD)
    context = browser.new_context(viewport={"width": 375, "height": 780})
    context.set_default_timeout(10_000)
    phone = context.new_page()
    try:
        phone.goto(live_server.url + "/login/?next=/sub-accounts/%3Fstatus%3Dall")
        phone.get_by_label("Email").fill("admin@acme.example")
        phone.get_by_label("Password").fill(PASSWORD)
        phone.get_by_role("button", name="Log in").click()
        phone.wait_for_url(lambda url: "/sub-accounts/" in url)
        keys = phone.locator("table.sub-account-list td.key")
        assert keys.count() == 5  # Available, Alpha, Beta, Gamma, Delta
        outside = phone.evaluate(
            """() => [...document.querySelectorAll('table.sub-account-list td.key')]
                .filter(e => { const b = e.getBoundingClientRect();
                               return b.width === 0 || b.left < 0 || b.right > 375; })
                .length"""
        )
        assert outside == 0
        assert keys.first.evaluate("e => getComputedStyle(e, '::before').content") == (
            '"This month"'
        )
        expect(phone.get_by_role("button", name=re.compile("^Restore"))).to_be_visible()
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        screenshot(phone, "sub-accounts-list-phone")
    finally:
        context.close()
