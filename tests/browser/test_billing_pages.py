"""Billing and Invoices pages in a real browser: the summary, an invoice, Explain, CSV, PDF."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect
from pypdf import PdfReader

from portal.billing.invoicing import invoice_issue
from portal.billing.models import Invoice
from portal.billing.periods import cycle_containing
from portal.core import clock
from portal.core.clock import frozen_at
from portal.core.phone import display_number
from portal.lines.services import line_move
from tests.browser.conftest import PASSWORD
from tests.factories import SYSTEM, at, issue_invoice, make_lines, make_sub_account, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def build_history(partner):
    """Three lines activated on May 20 (two to A); one moves A → B on June 16."""
    a = make_sub_account(partner, "Client A – Sales")
    b = make_sub_account(partner, "Client B – Support")
    with frozen_at(at("2026-05-20T09:00:00+00:00")):
        first, second, _third = make_lines(partner, 3)
        line_move(principal=SYSTEM, line_id=first.pk, sub_account_id=a.pk)
        line_move(principal=SYSTEM, line_id=second.pk, sub_account_id=a.pk)
    june = issue_invoice(partner, 2026, 6)
    with frozen_at(at("2026-06-16T12:00:00+00:00")):
        line_move(principal=SYSTEM, line_id=second.pk, sub_account_id=b.pk)
    july = issue_invoice(partner, 2026, 7)
    return a, b, second, june, july


def test_billing_invoice_explain_and_both_downloads(live_server, page, log_in, tenant, tmp_path):
    make_user(tenant.partner, "admin@acme.example", "admin", password=PASSWORD)
    _a, _b, moved, june, july = build_history(tenant.partner)
    # June: 3 lines × 50.00, plus the May 20 activations: 3 × round(50.00 × 12/31) = 58.05.
    assert june.total == Decimal("208.05")
    assert july.total == Decimal("150.00")

    log_in(page, "admin@acme.example")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    expect(page.get_by_role("heading", name="Billing", exact=True)).to_be_visible()
    # Since July every sub-account holds one line at the cycle's start: 50.00 each.
    pool = page.get_by_role("row", name=re.compile("^Available"))
    expect(pool).to_contain_text("unassigned lines")
    expect(pool).to_contain_text("50.00")
    expect(page.get_by_role("row", name=re.compile("^Client A – Sales"))).to_contain_text("50.00")
    expect(page.get_by_role("row", name=re.compile("^Client B – Support"))).to_contain_text("50.00")
    expect(page.get_by_role("row", name=re.compile("^Total \\(USD\\)"))).to_contain_text("150.00")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Invoices").click()
    expect(page.get_by_role("heading", name="Invoices")).to_be_visible()
    expect(page.get_by_role("link", name="Invoice 1 for June 2026")).to_be_visible()
    page.get_by_role("link", name="Invoice 2 for July 2026").click()

    expect(page.get_by_role("heading", name=re.compile("^Invoice 2"))).to_be_visible()
    expect(page.get_by_text("July 2026: 1 Jul 2026 – 31 Jul 2026")).to_be_visible()
    summary = page.get_by_role("table", name=re.compile("^Invoice 2 by sub-account"))
    a_row = summary.get_by_role("row", name=re.compile("^Client A – Sales"))
    expect(a_row.get_by_role("cell").last).to_have_text("25.00")
    section = page.locator("details", has=page.get_by_role("heading", name="Client A – Sales"))
    credit = section.get_by_role("row", name=re.compile("^Move credit"))
    expect(credit).to_be_hidden()
    a_row.get_by_role("link", name="Client A – Sales").click()
    expect(credit).to_be_visible()
    expect(credit).to_be_in_viewport()
    expect(credit).to_contain_text(display_number(moved.number))
    expect(credit).to_contain_text("Client B – Support")
    expect(credit).to_contain_text("2026-06-16")
    expect(credit.get_by_role("cell").nth(3)).to_have_text("15")
    expect(credit).to_contain_text("\u221225.00")

    with page.expect_download() as info:
        page.get_by_role("link", name=re.compile("^Download CSV")).click()
    download = info.value
    assert download.suggested_filename == "invoice-2-2026-07.csv"
    path = tmp_path / "invoice.csv"
    download.save_as(path)
    rows = list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))
    assert sum(Decimal(r["amount"]) for r in rows) == july.total
    move_credit = next(r for r in rows if r["kind"] == "move_credit")
    assert move_credit["section"] == "Client A – Sales"
    assert move_credit["other_sub_account"] == "Client B – Support"
    assert move_credit["line_number"] == "'" + moved.number  # "+1…" could start a formula
    assert (move_credit["service_start"], move_credit["days"]) == ("2026-06-16", "15")
    assert move_credit["amount"] == "-25.00"
    assert {r["currency"] for r in rows} == {"USD"}

    with page.expect_download() as info:
        page.get_by_role("link", name=re.compile("^Download PDF")).click()
    download = info.value
    assert download.suggested_filename == "invoice-2-2026-07.pdf"
    path = tmp_path / "invoice.pdf"
    download.save_as(path)
    data = path.read_bytes()
    assert data.startswith(b"%PDF-")
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
    assert "Invoice total (USD) 150.00" in text
    assert "Total of Client A – Sales 25.00" in text
    assert f"Move credit {display_number(moved.number)} Client B – Support 2026-06-16" in text
    # What the server said it is, with the browser's own session.
    href = page.get_by_role("link", name=re.compile("^Download PDF")).get_attribute("href")
    response = page.request.get(live_server.url + href)
    assert response.status == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == 'attachment; filename="invoice-2-2026-07.pdf"'


SUB_ACCOUNTS = [
    "Acme Dental – Appointment Reminders",
    "Brightside Realty – Lead Follow-up",
    "Cedar Auto Group – Service Reminders",
    "Harbor Fitness – Membership Renewals",
    "Lakeside Pediatrics – Appointment Reminders",
    "Metro Plumbing – Dispatch Updates",
    "Northside Law – Client Intake",
    "Pinnacle Insurance – Policy Renewals",
    "Riverview Dental – Recall Campaign",
    "Summit Roofing – Sales Campaign",
    "Urban Eats – Order Notifications",
    "Willow Salon – Booking Reminders",
]
SUMMARY_HEADERS = [
    "Sub-account",
    "Lines",
    "Recurring",
    "Prorations",
    "Discounts",
    "Credits",
    "Total (USD)",
]


def thirteen_sections(partner) -> Invoice:
    """Twelve sub-accounts and Available hold lines from May; lines move in June; the
    July invoice has thirteen sections, with prorations."""
    subs = [make_sub_account(partner, name) for name in SUB_ACCOUNTS]
    with frozen_at(at("2026-05-20T09:00:00+00:00")):
        lines = make_lines(partner, 2 * len(subs) + 2)
        for line, sa in zip(lines, subs * 2, strict=False):
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=sa.pk)
    issue_invoice(partner, 2026, 6)
    with frozen_at(at("2026-06-16T12:00:00+00:00")):
        for line, sa in zip(lines[:6], subs[6:], strict=True):
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=sa.pk)
    return issue_invoice(partner, 2026, 7)


def test_the_invoice_opens_with_a_summary_linking_each_section_to_its_items(
    live_server, page, log_in, tenant
):
    make_user(tenant.partner, "billing@acme.example", "billing", password=PASSWORD)
    invoice = thirteen_sections(tenant.partner)
    sections = list(invoice.sections.order_by("position"))
    assert len(sections) == 13

    log_in(page, "billing@acme.example")
    page.goto(live_server.url + f"/invoices/{invoice.pk}/")
    summary = page.get_by_role(
        "table", name=re.compile(f"^Invoice {invoice.number} by sub-account")
    )
    expect(summary).to_be_visible()
    headers = summary.get_by_role("columnheader")
    expect(headers).to_have_text(SUMMARY_HEADERS)
    # Above the fold, and the page is not thirteen cards of items.
    assert summary.bounding_box()["y"] < 860
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 2600, height
    rows = summary.locator("tbody tr")
    expect(rows).to_have_count(13)
    expect(rows.locator("th")).to_have_text(
        [f"{s.name} (unassigned lines)" if s.kind == "available" else s.name for s in sections]
    )
    expect(summary.get_by_role("row", name=re.compile("^Invoice total"))).to_contain_text(
        f"{invoice.total:,.2f}"
    )
    # Each row's name leads to that section's items.
    moved_to = next(s for s in sections if s.name == SUB_ACCOUNTS[8])
    assert moved_to.prorations > 0
    summary.get_by_role("link", name=moved_to.name).click()
    assert page.url.endswith(f"#section-{moved_to.sub_account_id}")
    items = page.get_by_role("table", name=f"Items behind the total of {moved_to.name}, in USD")
    expect(items).to_be_visible()
    expect(items).to_be_in_viewport()
    expect(items.get_by_role("row", name=re.compile("^Move charge"))).to_have_count(1)
    expect(items.get_by_role("row", name=re.compile(f"^Total of {moved_to.name}"))).to_contain_text(
        f"{moved_to.total:,.2f}"
    )
    # Its own page too: the address a sub-account's Billing tab links to.
    page.get_by_role(
        "link", name=re.compile(f"^These items on a page of their own.*{re.escape(moved_to.name)}$")
    ).click()
    expect(page.get_by_role("heading", name=moved_to.name, level=1)).to_be_visible()
    assert page.url.endswith(f"/invoices/{invoice.pk}/sections/{moved_to.sub_account_id}/")
    expect(page.get_by_role("row", name=re.compile("^Move charge"))).to_have_count(1)
    page.get_by_role("link", name=re.compile(f"^← Invoice {invoice.number}")).click()
    expect(summary).to_be_visible()


def test_billing_labels_lines_at_the_cycle_start_and_now(page, log_in, tenant):
    """Three lines in Available at this cycle's start move to a sub-account since: 0 at the
    cycle's start, 3 now, and the page says which is which. (The live server reads the
    real clock: the history is laid down around the current cycle.)"""
    partner = tenant.partner
    make_user(partner, "admin@acme.example", "admin", password=PASSWORD)
    client = make_sub_account(partner, "Client C – Campaigns")
    cycle = cycle_containing(clock.now(), partner.timezone)
    with frozen_at(cycle.start - dt.timedelta(days=40)):
        lines = make_lines(partner, 3)
    with frozen_at(cycle.start):
        current = invoice_issue(principal=SYSTEM, partner=partner, cycle=cycle)
    for line in lines:
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=client.pk)

    log_in(page, "admin@acme.example")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    table = page.get_by_role("table", name=re.compile("^Current cycle by sub-account"))
    headers = table.get_by_role("columnheader")
    expect(headers.nth(1)).to_have_text("Lines at cycle start")
    expect(headers.nth(2)).to_have_text("Lines now")
    row = table.get_by_role("row", name=re.compile("^Client C – Campaigns"))
    expect(row.get_by_role("cell").nth(0)).to_have_text("0")
    expect(row.get_by_role("cell").nth(1)).to_have_text("3")
    pool = table.get_by_role("row", name=re.compile("^Available"))
    expect(pool.get_by_role("cell").nth(0)).to_have_text("3")
    expect(pool.get_by_role("cell").nth(1)).to_have_text("0")
    notes = page.locator("#billing-notes")
    expect(notes).to_contain_text("Lines at cycle start: the lines each sub-account held")
    expect(notes).to_contain_text(f"charged on invoice {current.number}, issued")
    expect(notes).to_contain_text(f"which the invoice for {cycle.next().first_day:%B %Y}")
