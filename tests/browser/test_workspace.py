"""Issue 18 point 1: a sub-account's page is its workspace, clicked through by its tabs'
names; each tab shows that sub-account only, and its actions follow role and state."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD
from tests.factories import force_state, make_user
from tests.partners.test_workspace import World

pytestmark = pytest.mark.django_db(transaction=True)


def tab(page, name: str):
    return page.get_by_role("navigation", name="Sub-account sections").get_by_role(
        "link", name=name, exact=True
    )


def open_tab(page, name: str) -> None:
    tab(page, name).click()
    expect(tab(page, name)).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Client A – Sales")


def test_tabs_show_this_sub_account_only(live_server, page, log_in, tenant, screenshot):
    world = World(tenant)
    make_user(tenant.partner, "ann@acme.example", "admin", password=PASSWORD)
    first, second, third = (line.number for line in world.lines)
    log_in(page, "ann@acme.example")
    page.goto(f"{live_server.url}/sub-accounts/{world.a.pk}/")

    header = page.get_by_role("region", name="About Client A – Sales")
    expect(header).to_contain_text("This month")
    expect(header).to_contain_text("CL-1001")
    expect(header.get_by_role("link", name="priya.shah@acmedental.example")).to_be_visible()
    expect(header).to_contain_text("USD")
    expect(tab(page, "Lines")).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("row", name=re.compile(re.escape(first)))).to_be_visible()
    expect(page.get_by_text(second)).to_have_count(0)
    screenshot(page, "workspace-lines")

    open_tab(page, "Billing")
    expect(page).to_have_url(f"{live_server.url}/sub-accounts/{world.a.pk}/billing/")
    expect(page.get_by_text("Prorations accruing", exact=True)).to_be_visible()
    explain = page.get_by_role("link", name=re.compile(r"^Explain .* for Client A – Sales$"))
    expect(explain).to_have_count(2)
    screenshot(page, "workspace-billing")
    explain.first.click()
    expect(page).to_have_url(f"{live_server.url}/invoices/{world.second.pk}/sections/{world.a.pk}/")
    page.go_back()

    open_tab(page, "Analytics")
    expect(page.get_by_role("form", name="Date range")).to_be_visible()
    page.get_by_role("link", name="Last 7 days").click()
    expect(page).to_have_url(re.compile(rf"/sub-accounts/{world.a.pk}/analytics/\?start="))
    expect(tab(page, "Analytics")).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("heading", name="Per-line usage")).to_be_visible()
    screenshot(page, "workspace-analytics")

    open_tab(page, "Requests")
    expect(page.get_by_role("link", name=f"#{world.merge.pk} merge request")).to_be_visible()
    expect(page.get_by_role("link", name=f"#{world.deletion.pk} deletion request")).to_have_count(0)
    screenshot(page, "workspace-requests")

    open_tab(page, "Audit log")
    events = page.get_by_role("table", name="Audit events, newest first")
    expect(events).to_contain_text(first)
    expect(events).to_contain_text(second)  # it left A for B
    expect(events).not_to_contain_text(third)  # B's line, never A's
    screenshot(page, "workspace-audit")

    open_tab(page, "Lines")
    expect(page).to_have_url(f"{live_server.url}/sub-accounts/{world.a.pk}/")

    # The same tabs on B show B's things.
    page.goto(f"{live_server.url}/sub-accounts/{world.b.pk}/audit/")
    events = page.get_by_role("table", name="Audit events, newest first")
    expect(events).to_contain_text(third)
    expect(events).not_to_contain_text(first)

    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{live_server.url}/sub-accounts/{world.a.pk}/billing/")
    for name in ("Lines", "Billing", "Analytics", "Requests", "Audit log"):
        box = tab(page, name).bounding_box()  # every tab whole: none cut at the edge
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, box
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, width
    screenshot(page, "workspace-billing-phone")


def actions(page, name: str):
    return page.get_by_role("link", name=re.compile(rf"^{name}\b"))


def test_actions_follow_role_and_state(live_server, page, log_in, tenant):
    world = World(tenant)
    make_user(tenant.partner, "ann@acme.example", "admin", password=PASSWORD)
    make_user(tenant.partner, "vic@acme.example", "viewer", password=PASSWORD)
    b = f"{live_server.url}/sub-accounts/{world.b.pk}/"

    log_in(page, "ann@acme.example")
    page.goto(b)
    expect(actions(page, "Edit")).to_have_count(1)
    expect(actions(page, "Request merge")).to_have_count(1)
    expect(actions(page, "Request deletion")).to_have_count(1)
    actions(page, "Request merge").click()
    expect(page).to_have_url(f"{b}request-merge/")
    page.get_by_role("button", name="Log out").click()

    log_in(page, "vic@acme.example")
    page.goto(b)
    for name in ("Edit", "Request merge", "Request deletion"):
        expect(actions(page, name)).to_have_count(0)
    for name in ("Billing", "Requests", "Audit log"):
        expect(tab(page, name)).to_have_count(0)
    expect(tab(page, "Analytics")).to_be_visible()
    page.get_by_role("button", name="Log out").click()

    force_state(world.b, status="merged", merged_into=world.a)
    log_in(page, "ann@acme.example")
    page.goto(b)
    for name in ("Edit", "Request merge", "Request deletion"):
        expect(actions(page, name)).to_have_count(0)
    expect(page.get_by_role("status").first).to_contain_text(
        "Client B – Support was merged into Client A – Sales; it is read-only."
    )
    tab(page, "Billing").click()
    expect(page).to_have_url(f"{b}billing/")
    expect(actions(page, "Edit")).to_have_count(0)
