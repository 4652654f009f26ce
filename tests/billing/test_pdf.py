"""The invoice PDF: what a person files must carry every amount and where it comes from.

The PDF's text is read back with pypdf, so these tests check what a reader (or a
screen reader, or a search) finds in it, not how it was drawn.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import time
from decimal import Decimal

import pytest
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pypdf import PdfReader

from portal.billing import views
from portal.billing.models import Invoice, InvoiceItem, InvoiceStatus
from portal.billing.pdf import (
    ELLIPSIS,
    InvoiceDocument,
    ItemRow,
    SectionBlock,
    render_invoice_pdf,
)
from portal.billing.terms import discount_grant
from portal.core.clock import frozen_at
from portal.core.phone import display_number, display_number_fast
from portal.lines.services import line_move
from tests.conftest import Api
from tests.factories import SYSTEM, issue_invoice, make_lines, make_sub_account, make_user


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    """No collectstatic in tests: pages name their assets by their plain names."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


# Accented Latin, Greek and Cyrillic: the font must draw all three.
ZOE, GREEK, CYRILLIC = "Zoë’s Café – Équipe", "Πελάτης Αθήνα", "Клиент Москва"
MINUS = "\u2212"


def pdf_pages(data: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]


def number(text: str) -> Decimal:
    """``−1,234.50`` as printed → ``Decimal("-1234.50")``."""
    return Decimal(text.replace(MINUS, "-").replace(",", ""))


def history(partner):
    """A holds two lines and C one from April; one of A's moves to B on June 16.

    July (domain §3's worked example): A = 50.00 − 25.00, B = 50.00 + 25.00, C = 50.00.
    """
    a = make_sub_account(partner, ZOE)
    b = make_sub_account(partner, GREEK)
    c = make_sub_account(partner, CYRILLIC)
    with frozen_at(dt.datetime(2026, 4, 10, 9, tzinfo=dt.UTC)):
        lines = make_lines(partner, 3)
        for line, target in zip(lines, (a, a, c), strict=True):
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=target.pk)
    issue_invoice(partner, 2026, 6)
    with frozen_at(dt.datetime(2026, 6, 16, 12, tzinfo=dt.UTC)):
        line_move(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=b.pk)
    return lines[1], issue_invoice(partner, 2026, 7)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- Through the page and the API --------------------------------------------------------


def test_the_pdf_traces_every_amount_to_its_lines_and_days(tenant):
    moved, invoice = history(tenant.partner)
    client = client_for(make_user(tenant.partner, "billing@acme.example", "billing"))
    response = client.get(f"/invoices/{invoice.pk}/pdf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="invoice-2-2026-07.pdf"'
    assert response.content.startswith(b"%PDF-")
    pages = pdf_pages(response.content)
    text = "\n".join(pages)

    assert "Invoice 2" in text and tenant.partner.name in text
    assert "July 2026: 1 Jul 2026 – 31 Jul 2026" in text
    assert "DRAFT" in text  # issued today, not finalized yet
    assert "Invoice total (USD) 150.00" in text
    # Each section ends on its total; together they make the invoice total.
    totals = {
        name: number(amount)
        for name, amount in re.findall(r"^Total of (.+) ([−\d.,]+)$", text, flags=re.M)
    }
    assert set(totals) == {ZOE, GREEK, CYRILLIC}  # the pool held nothing: no section
    assert totals == {s.name: s.total for s in invoice.sections.all()}
    assert sum(totals.values()) == invoice.total == Decimal("150.00")
    # The move: a credit in A and the same charge in B, naming the line, the other
    # sub-account, the day and the days, each with its amount.
    shown = display_number(moved.number)
    assert (
        f"Move credit {shown} {GREEK} 2026-06-16 15 {MINUS}50.00 × 15/30 days {MINUS}25.00" in text
    )
    assert f"Move charge {shown} {ZOE} 2026-06-16 15 50.00 × 15/30 days 25.00" in text
    # Every stored item's amount is printed on an item row.
    rows = [line for line in text.splitlines() if line.startswith(("Recurring 1–", "Move "))]
    items = InvoiceItem.objects.filter(section__invoice=invoice)
    assert len(rows) == items.count() == 5
    assert sorted(number(row.rsplit(" ", 1)[1]) for row in rows) == sorted(i.amount for i in items)
    assert "Page 1 of 1" in pages[0]


def test_a_long_explanation_is_wrapped_never_cut(tenant, tmp_path):
    """A partner-wide discount's explanation (domain §3: it states its basis) is far wider
    than the How column: every word of it is in the PDF, and no ellipsis."""
    partner = tenant.partner
    _moved, _july = history(partner)
    with frozen_at(dt.datetime(2026, 7, 20, tzinfo=dt.UTC)):
        discount_grant(principal=SYSTEM.acting_for(partner.pk), kind="amount", value="10.00")
    august = issue_invoice(partner, 2026, 8)
    client = client_for(make_user(partner, "billing@acme.example", "billing"))
    response = client.get(f"/invoices/{august.pk}/pdf")
    assert response.status_code == 200
    (tmp_path / "invoice.pdf").write_bytes(response.content)
    text = "\n".join(pdf_pages(response.content))
    assert ELLIPSIS not in text
    flowing = " ".join(text.split())
    descriptions = InvoiceItem.objects.filter(section__invoice=august, kind="discount")
    assert descriptions.count() == 3
    for item in descriptions:
        assert "before sub-account discounts" in item.description
        # The explanation's own lines, in order, with only the amount column between.
        assert " ".join(item.description.split()) in flowing.replace(" −3.33 ", " ").replace(
            " −3.34 ", " "
        ), item.description


def test_the_api_serves_the_pdf_and_the_csv(tenant):
    _moved, invoice = history(tenant.partner)
    api = Api(tenant.keys["billing"])
    pdf = api.get(f"/invoices/{invoice.pk}/pdf")
    assert pdf.status_code == 200
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf["Content-Disposition"] == 'attachment; filename="invoice-2-2026-07.pdf"'
    assert "Invoice total (USD) 150.00" in "\n".join(pdf_pages(pdf.content))
    csv = api.get(f"/invoices/{invoice.pk}/csv")
    assert csv.status_code == 200
    assert csv["Content-Type"] == "text/csv; charset=utf-8"
    assert csv["Content-Disposition"] == 'attachment; filename="invoice-2-2026-07.csv"'
    body = csv.content.decode("utf-8-sig")
    assert GREEK in body and CYRILLIC in body
    # Documented in OpenAPI as files, not JSON.
    paths = api.get("/openapi.json").json()["paths"]
    content = paths["/api/v1/invoices/{invoice_id}/pdf"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"application/pdf"}


def test_another_partners_pdf_is_not_found_and_weaker_roles_are_refused(tenant, other_tenant):
    _moved, theirs = history(other_tenant.partner)
    admin = client_for(make_user(tenant.partner, "admin@acme.example", "admin"))
    assert admin.get(f"/invoices/{theirs.pk}/pdf").status_code == 404
    missing = Api(tenant.keys["admin"]).get("/invoices/987654321/pdf")
    foreign = Api(tenant.keys["admin"]).get(f"/invoices/{theirs.pk}/pdf")
    assert foreign.status_code == missing.status_code == 404
    assert set(foreign.json()) == {"detail"}
    _moved, mine = history(tenant.partner)
    manager = client_for(make_user(tenant.partner, "manager@acme.example", "manager"))
    assert manager.get(f"/invoices/{mine.pk}/pdf").status_code == 403
    assert Api(tenant.keys["viewer"]).get(f"/invoices/{mine.pk}/pdf").status_code == 403


def test_a_finalized_invoice_has_no_draft_mark(tenant):
    _moved, invoice = history(tenant.partner)
    Invoice.objects.filter(pk=invoice.pk).update(
        status=InvoiceStatus.FINALIZED, finalized_at=invoice.issued_at
    )
    client = client_for(make_user(tenant.partner, "admin@acme.example", "admin"))
    text = "\n".join(pdf_pages(client.get(f"/invoices/{invoice.pk}/pdf").content))
    assert "FINALIZED" in text
    assert "DRAFT" not in text


def test_the_invoice_page_links_both_downloads(tenant):
    _moved, invoice = history(tenant.partner)
    client = client_for(make_user(tenant.partner, "admin@acme.example", "admin"))
    page = client.get(f"/invoices/{invoice.pk}/").content.decode()
    assert f'href="/invoices/{invoice.pk}/pdf" download>Download PDF' in page
    assert f'href="/invoices/{invoice.pk}/csv" download>Download CSV' in page


# --- The layout alone ------------------------------------------------------------------------


def document(
    *sections: SectionBlock, is_draft: bool = True, partner: str = "Acme"
) -> InvoiceDocument:
    return InvoiceDocument(
        number=7,
        partner=partner,
        status="Draft" if is_draft else "Finalized",
        is_draft=is_draft,
        period="July 2026: 1 Jul 2026 – 31 Jul 2026",
        period_short="July 2026",
        currency="EUR",
        total="0.00",
        details=(("Period", "July 2026"),),
        sections=sections,
    )


def section(name: str, items: int = 1, other: str = GREEK) -> SectionBlock:
    rows = [
        ItemRow(
            "Move credit",
            f"+1 415 555 {i:04d}",
            other,
            "2026-06-16",
            "15",
            f"{MINUS}50.00 × 15/30 days",
            f"{MINUS}25.00",
        )
        for i in range(items)
    ]
    return SectionBlock(name, "", 1, "50.00", "0.00", "0.00", "0.00", "25.00", rows)


def test_characters_the_font_lacks_are_shown_as_question_marks():
    name = "Emoji 😀 漢字 bell\x07 nul\x00 e\u0301"
    data = render_invoice_pdf(document(section(name, other="ok ✓"), partner="Ω Partner 🦄"))
    text = "\n".join(pdf_pages(data))
    assert "Emoji ? ?? bell nul e\u0301" in text or "Emoji ? ?? bell nul é" in text
    assert "Ω Partner ?" in text
    assert "ok ?" in text


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300), st.text(max_size=120))
def test_any_name_renders(name, other):
    data = render_invoice_pdf(document(section(name or "x", other=other), partner=name))
    assert data.startswith(b"%PDF-")


def test_a_section_of_ten_thousand_items_repeats_its_header_and_numbers_its_pages():
    started = time.perf_counter()
    data = render_invoice_pdf(document(section(CYRILLIC, items=10_000)))
    elapsed = time.perf_counter() - started
    assert elapsed < 30, f"rendering took {elapsed:.1f} s"  # about 3 s on the CI machine
    pages = pdf_pages(data)
    count = len(pages)
    assert count > 150
    header = "Item Line Other sub-account Date Days How Amount"
    rows = 0
    for index, page in enumerate(pages, start=1):
        assert f"Page {index} of {count}" in page
        assert header in page, index
        if index > 1:
            assert f"{CYRILLIC} (continued)" in page
        rows += sum(1 for line in page.splitlines() if line.startswith("Move credit"))
    assert rows == 10_000
    assert f"Total of {CYRILLIC} 25.00" in pages[-1]


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["+1415", "+1212", "+4420", "+447", "+336", "+4915", "+8190", "+6141"]),
    st.text(alphabet="0123456789", min_size=4, max_size=9),
)
def test_numbers_are_displayed_as_phonenumbers_formats_them(prefix, rest):
    """The per-block template the export uses gives exactly the formatter's answer."""
    number = prefix + rest
    assert display_number_fast(number) == display_number(number)


def test_money_never_prints_a_negative_zero():
    assert views.money(Decimal("-0.00"), "USD") == "0.00"
    assert views.money(Decimal("0"), "USD") == "0.00"
    assert views.money(Decimal("-0.004"), "USD") == "0.00"
