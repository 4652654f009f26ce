"""The bell and the Notifications page in a real browser: a manager sees the bell's
count, opens the inbox, marks one item read in place (HTMX: the item and the bell change
without a reload) and then the rest with Mark all read."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD
from tests.factories import make_user
from tests.notifications.support import fire_available_alert

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_bell_the_inbox_mark_read_and_mark_all_read(live_server, page, log_in, tenant):
    make_user(tenant.partner, "manager@acme.example", "manager", password=PASSWORD)
    fire_available_alert(tenant.partner)
    fire_available_alert(tenant.partner)  # a second rule on the same figure fires too
    log_in(page, "manager@acme.example")

    bell = page.get_by_role("link", name="Notifications 2 unread")
    expect(bell).to_be_visible()
    bell.click()
    expect(page.get_by_role("heading", name="Notifications")).to_be_visible()
    items = page.get_by_role("list", name="Notifications, newest first").get_by_role("listitem")
    expect(items).to_have_count(2)
    expect(items.first).to_contain_text("Unread")
    expect(items.first).to_contain_text("Lines in Available above 0")

    items.first.get_by_role("button", name="Mark read").click()
    expect(page.get_by_role("link", name="Notifications 1 unread")).to_be_visible()
    expect(items.first).not_to_contain_text("Unread")
    expect(items.nth(1)).to_contain_text("Unread")

    page.get_by_role("button", name="Mark all read").click()
    expect(page.get_by_role("link", name="Notifications 0 unread")).to_be_visible()
    expect(page.get_by_text("Unread", exact=True)).to_have_count(0)
    page.get_by_role("link", name="Lines in Available above 0").first.click()
    expect(page).to_have_url(live_server.url + "/analytics/alerts/")
