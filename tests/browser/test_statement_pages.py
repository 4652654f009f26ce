"""Billing → Statements in a real browser: find a client's statement by period and by
sub-account, open it, download the PDF to send (domain §8.1); a phone width too."""

from __future__ import annotations

import io
import re

import pytest
from playwright.sync_api import expect
from pypdf import PdfReader

from tests.billing.statement_history import statement_history
from tests.browser.conftest import PASSWORD
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_statements_by_period_and_by_sub_account_and_the_pdf(
    live_server, page, log_in, tenant, tmp_path, screenshot
):
    make_user(tenant.partner, "billing@acme.example", "billing", password=PASSWORD)
    h = statement_history(tenant.partner)

    log_in(page, "billing@acme.example")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    page.get_by_role("navigation", name="Billing").get_by_role("link", name="Statements").click()
    expect(page.get_by_role("heading", name="Statements", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Statements", exact=True)).to_have_attribute(
        "aria-current", "page"
    )
    # The latest period first: July's two statements and their total.
    expect(page.get_by_label("Period")).to_have_value("2026-07")
    table = page.get_by_role("table", name="July 2026")
    expect(table.locator("tbody tr")).to_have_count(2)
    a_row = table.get_by_role("row", name=re.compile("^Statement 2 of Client A – Sales"))
    expect(a_row).to_contain_text("\u221240.00")
    expect(a_row).to_contain_text("Draft")
    expect(table.get_by_role("row", name=re.compile("^Total of 2 statements"))).to_contain_text(
        "137.50"
    )
    screenshot(page, "statements-desktop")

    # June, then one client's statements over every period.
    page.get_by_label("Period").select_option(label="June 2026")
    page.get_by_role("button", name="Show statements").click()
    june = page.get_by_role("table", name="June 2026")
    expect(june.locator("tbody tr")).to_have_count(1)
    expect(june).to_contain_text("160.00")
    page.get_by_label("Period").select_option(label="All periods")
    page.get_by_label("Sub-account").select_option(label="Client A – Sales")
    page.get_by_role("button", name="Show statements").click()
    every = page.get_by_role("table", name="Client A – Sales, every period")
    expect(every.locator("tbody tr th")).to_have_text(
        [
            "Statement 2 of Client A – Sales for July 2026",
            "Statement 1 of Client A – Sales for June 2026",
        ]
    )

    # The statement's page, then its PDF.
    every.get_by_role("link", name="Statement 2 of Client A – Sales for July 2026").click()
    expect(page.get_by_role("heading", name=re.compile("^Statement 2"))).to_be_visible()
    screenshot(page, "statement-detail-desktop")
    charges = page.get_by_role("table", name=re.compile("^Charges of statement 2"))
    expect(charges.get_by_role("row", name=re.compile("^Line moved out"))).to_contain_text(
        "moved out on 16 June 2026: 15 of 30 days × 80.00"
    )
    expect(charges.get_by_role("row", name=re.compile("^Total \\(USD\\)"))).to_contain_text("40.00")
    with page.expect_download() as info:
        page.get_by_role("link", name=re.compile("^Download PDF")).click()
    download = info.value
    assert download.suggested_filename == "statement-2-2026-07-client-a-sales.pdf"
    path = tmp_path / "statement.pdf"
    download.save_as(path)
    data = path.read_bytes()
    assert data.startswith(b"%PDF-")
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
    for expected in ("Acme Resellers", "Statement 2", "Client A – Sales", "Reference: CL-1001"):
        assert expected in text, expected
    assert "40.00 USD" in text

    # The sub-account's own workspace lists it too, with the same download.
    page.goto(live_server.url + f"/sub-accounts/{h.a.pk}/billing/")
    own = page.get_by_role("table", name="Statements of Client A – Sales")
    expect(own.locator("tbody tr")).to_have_count(2)
    screenshot(page, "statement-workspace-desktop")
    with page.expect_download() as info:
        own.get_by_role("link", name="PDF of statement 1 for June 2026").click()
    assert info.value.suggested_filename == "statement-1-2026-06-client-a-sales.pdf"


def test_statements_on_a_phone(live_server, page, log_in, tenant, screenshot):
    make_user(tenant.partner, "admin@acme.example", "admin", password=PASSWORD)
    statement_history(tenant.partner)
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, "admin@acme.example")
    page.goto(live_server.url + "/billing/statements/")
    row = page.get_by_role("row", name=re.compile("^Statement 1 of Client B – Support"))
    expect(row).to_be_visible()
    expect(row).to_contain_text("97.50")
    # Nothing wider than the phone: the table became one card per statement.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    screenshot(page, "statements-phone")
    row.get_by_role("link", name=re.compile("^Statement 1")).click()
    expect(page.get_by_role("heading", name=re.compile("^Statement 1"))).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    screenshot(page, "statement-detail-phone")
