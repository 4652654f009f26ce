"""Billing → Resale prices and Margins in a real browser (domain §8.1): a price edited in
place in its row, and the worked example's margins, sorted and downloaded."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from portal.billing.periods import cycle_containing
from portal.billing.resale import resale_settings
from portal.core import clock
from tests.billing.test_margins import worked_example
from tests.browser.conftest import PASSWORD
from tests.factories import make_sub_account, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_resale_price_is_edited_in_place(live_server, page, log_in, tenant):
    make_user(tenant.partner, "billing@acme.example", "billing", password=PASSWORD)
    alpha = make_sub_account(tenant.partner, "Client A – Sales")
    make_sub_account(tenant.partner, "Client B – Support")
    next_month = cycle_containing(clock.now(), tenant.partner.timezone).next().first_day
    from_next = f"from {next_month:%B %Y}"

    log_in(page, "billing@acme.example")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    page.get_by_role("navigation", name="Billing", exact=True).get_by_role(
        "link", name="Resale prices"
    ).click()
    expect(page.get_by_role("heading", name="Resale prices", level=1)).to_be_visible()

    # The default first: every sub-account without its own price shows it for next cycle.
    page.get_by_label("Default resale price (USD)").fill("65")
    page.get_by_role("button", name="Save default resale price").click()
    expect(page.get_by_role("status")).to_contain_text(f"65.00 USD {from_next}")
    row_b = page.get_by_role("row", name=re.compile("^Client B – Support"))
    expect(row_b).to_contain_text("65.00 (default)")
    expect(row_b).to_contain_text(from_next)

    # Alpha's own price: typed and Enter; the row comes back saved, focus kept.
    field = page.get_by_label("Resale price of Client A – Sales")
    field.fill("80")
    field.press("Enter")
    row_a = page.get_by_role("row", name=re.compile("^Client A – Sales"))
    expect(row_a.get_by_label("Resale price of Client A – Sales")).to_have_value("80.00")
    expect(row_a).to_contain_text(f"80.00 {from_next}")
    expect(page.get_by_label("Resale price of Client A – Sales")).to_be_focused()

    # A refused price stays in its row with the reason, and nothing changes.
    field = page.get_by_label("Resale price of Client A – Sales")
    field.fill("-5")
    field.press("Tab")  # leaving the field saves it too
    expect(row_a.get_by_role("alert")).to_contain_text("Resale price must be between")
    expect(page.get_by_label("Resale price of Client A – Sales")).to_have_attribute(
        "aria-invalid", "true"
    )
    assert resale_settings(tenant.partner.pk).override_of(alpha.pk) == Decimal("80.00")

    # Emptied: back to the default.
    field = page.get_by_label("Resale price of Client A – Sales")
    field.fill("")
    field.press("Enter")
    expect(row_a).to_contain_text("65.00 (default)")
    expect(row_a.get_by_role("alert")).to_have_count(0)
    assert resale_settings(tenant.partner.pk).override_of(alpha.pk) is None

    # Search narrows the table in place.
    page.get_by_role("searchbox", name="Search").fill("support")
    expect(page.get_by_role("row", name=re.compile("^Client A"))).to_have_count(0)
    expect(page.get_by_role("row", name=re.compile("^Client B"))).to_be_visible()


def test_margins_of_the_worked_example(live_server, page, log_in, tmp_path):
    tenant, *_ = worked_example()
    make_user(tenant.partner, "admin@worked.example", "admin", password=PASSWORD)

    log_in(page, "admin@worked.example")
    page.goto(live_server.url + "/billing/")
    page.get_by_role("navigation", name="Billing", exact=True).get_by_role(
        "link", name="Margins"
    ).click()
    expect(page.get_by_role("heading", name="Margins", level=1)).to_be_visible()
    expect(page.get_by_label("Period", exact=True)).to_have_value("2026-07")
    table = page.get_by_role("table", name=re.compile("^Margins for July 2026"))
    expect(table.get_by_role("row", name=re.compile("^A "))).to_contain_text("25.00")
    expect(table.get_by_role("row", name=re.compile("^A "))).to_contain_text("37.5 %")
    expect(table.get_by_role("row", name=re.compile("^B "))).to_contain_text("22.50")
    expect(table.get_by_role("row", name=re.compile("^Total"))).to_contain_text("137.50")

    # Sorted by margin, largest first: B, then A.
    table.get_by_role("link", name=re.compile(r"^Margin\W+sort")).click()
    names = page.get_by_role("table").locator("tbody th").all_inner_texts()
    assert names.index("B") < names.index("A"), names

    # Another period through the picker: June (A's two lines at 80.00).
    page.get_by_label("Period", exact=True).select_option("2026-06")
    expect(page.get_by_role("table", name=re.compile("^Margins for June 2026"))).to_be_visible()

    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("^Download CSV")).click()
    path = tmp_path / "margins.csv"
    download.value.save_as(path)
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    assert rows[0][:3] == ["period", "sub_account_id", "sub_account"]
    assert {r[2]: r[5] for r in rows[1:]}["A"] == "160.00"
