"""Billing pages: the current cycle's summary, invoices, "explain this charge", CSV and PDF.

Every figure comes from the selectors the REST API uses (``billing_summary``,
``invoice_list``, ``invoice_get``); these views only format it for people.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal.billing import selectors
from portal.billing import summary as summaries
from portal.billing.models import (
    PRORATION_KINDS,
    Invoice,
    InvoiceItem,
    InvoiceItemKind,
    InvoiceSection,
    InvoiceStatus,
)
from portal.billing.money import MINUS, format_money, quantize
from portal.billing.money import format_amount as money
from portal.billing.pdf import InvoiceDocument, ItemRow, SectionBlock, render_invoice_pdf
from portal.billing.policies import can_read_invoices
from portal.core.localtime import format_local, to_local
from portal.core.phone import display_number_fast
from portal.core.text import csv_safe
from portal.partners.models import SubAccountKind
from portal.partners.selectors import available_pool
from portal.web.decorators import portal_view

PAGE_SIZE = 25
KIND_LABELS = dict(InvoiceItemKind.choices)


def _plain(amount: Decimal, currency: str) -> str:
    """``amount`` as a plain number for CSV: ``-25.00``, no separators."""
    return f"{quantize(amount, currency):f}"


def _period(start: dt.datetime, end: dt.datetime, tz: str) -> dict[str, Any]:
    """A ``[start, end)`` cycle as local dates: first day and last day."""
    first = to_local(start, tz)
    last = to_local(end, tz)
    assert first is not None and last is not None
    return {
        "first": first.date(),
        "last": last.date() - dt.timedelta(days=1),
        "month": first.date(),
        "tz": tz,
    }


# --- Billing summary -------------------------------------------------------------------


@portal_view
def billing_summary(request: HttpRequest) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    summary = summaries.billing_summary(principal=principal)
    partner = summary.partner
    currency = summary.invoice.currency if summary.invoice else partner.currency
    pool_id = available_pool(partner.pk).pk
    rows = [
        {
            "name": r.name,
            "is_pool": r.sub_account_id == pool_id,
            "sub_account_id": r.sub_account_id,
            "line_count": r.line_count,
            "lines_now": r.lines_now,
            "recurring": money(r.recurring, currency),
            "invoiced_prorations": money(r.prorations - r.accruing_prorations, currency),
            "accruing_prorations": money(r.accruing_prorations, currency),
            "discounts": money(r.discounts, currency),
            "credits": money(r.credits, currency),
            "total": money(r.total, currency),
        }
        for r in summary.rows
    ]
    if not any(row["is_pool"] for row in rows):
        # The pool holds nothing this cycle: say so rather than leave it out.
        zero = money(Decimal(0), currency)
        rows.insert(
            0,
            {
                "name": "Available",
                "is_pool": True,
                "sub_account_id": pool_id,
                "line_count": 0,
                "lines_now": 0,
                **dict.fromkeys(
                    (
                        "recurring",
                        "invoiced_prorations",
                        "accruing_prorations",
                        "discounts",
                        "credits",
                        "total",
                    ),
                    zero,
                ),
            },
        )
    accruing = sum((r.accruing_prorations for r in summary.rows), Decimal(0))
    totals = {
        "line_count": sum(r.line_count for r in summary.rows),
        "lines_now": sum(r.lines_now for r in summary.rows),
        "recurring": money(sum((r.recurring for r in summary.rows), Decimal(0)), currency),
        "invoiced_prorations": money(
            sum((r.prorations - r.accruing_prorations for r in summary.rows), Decimal(0)),
            currency,
        ),
        "accruing_prorations": money(accruing, currency),
        "discounts": money(sum((r.discounts for r in summary.rows), Decimal(0)), currency),
        "credits": money(sum((r.credits for r in summary.rows), Decimal(0)), currency),
        "total": money(summary.total, currency),
    }
    return render(
        request,
        "billing/summary.html",
        {
            "active_section": "billing",
            "summary": summary,
            "currency": currency,
            "period": _period(summary.cycle.start, summary.cycle.end, partner.timezone),
            "rows": rows,
            "totals": totals,
            "invoice_part": money(summary.total - accruing, currency),
            "accruing": money(accruing, currency),
            "next_month": summary.cycle.next().first_day,
            "can_read_invoices": can_read_invoices(principal),
        },
    )


# --- Invoices ----------------------------------------------------------------------------


@portal_view
def invoice_list(request: HttpRequest) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    qs = selectors.invoice_list(principal=principal)
    page_obj = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    invoices = [
        {
            "invoice": invoice,
            "period": _period(invoice.period_start, invoice.period_end, invoice.timezone),
            "issued_at": to_local(invoice.issued_at, invoice.timezone),
            "total": money(invoice.total, invoice.currency),
        }
        for invoice in page_obj
    ]
    return render(
        request,
        "billing/invoice_list.html",
        {"active_section": "invoices", "page_obj": page_obj, "invoices": invoices},
    )


@dataclass
class ItemView:
    """One invoice item as the Explain disclosure shows it."""

    item: InvoiceItem
    line_number: str
    amount: str
    unit_price: str
    formula: str
    is_proration: bool


def _formula(item: InvoiceItem, currency: str) -> str:
    """How the item's amount follows from its stored fields, when it does so plainly."""
    price = money(item.unit_price, currency)
    if item.kind == InvoiceItemKind.RECURRING:
        return f"{item.quantity} × {price}"
    if item.kind not in PRORATION_KINDS:
        return item.description  # discounts and credits say what they are themselves
    n = item.service_end.day  # prorations run to the last day of the cycle they correct
    if quantize(item.unit_price * item.days / n, currency) == abs(item.amount):
        sign = MINUS if item.amount < 0 else ""
        return f"{sign}{price} × {item.days}/{n} days"
    if abs(item.amount) == quantize(item.unit_price, currency):
        return f"{'' if item.amount >= 0 else MINUS}{price} (full month)"
    return "Limited to what was charged for the line"


def _item_view(item: InvoiceItem, currency: str) -> ItemView:
    number = item.line.number if item.line_id else ""
    return ItemView(
        item=item,
        # No break inside a number: "+1 415 555 0100" stays on one line.
        line_number=display_number_fast(number).replace(" ", "\u00a0") if number else "",
        amount=money(item.amount, currency),
        unit_price=money(item.unit_price, currency),
        formula=_formula(item, currency),
        is_proration=item.kind in PRORATION_KINDS,
    )


# The summary table lists this many sections a page; an invoice of up to INLINE_SECTIONS
# sections and INLINE_ITEMS items also shows every item below it (one page to read and
# search), a larger one links each row to its section's own page.
SECTION_PAGE_SIZE = 100
INLINE_SECTIONS = 30
INLINE_ITEMS = 300
ITEM_PAGE_SIZE = 100


def _section_figures(s: InvoiceSection, currency: str) -> dict[str, Any]:
    return {
        "section": s,
        "is_pool": s.kind == SubAccountKind.AVAILABLE,
        "recurring": money(s.recurring, currency),
        "prorations": money(s.prorations, currency),
        "discounts": money(s.discounts, currency),
        "credits": money(s.credits, currency),
        "total": money(s.total, currency),
    }


@portal_view
def invoice_detail(request: HttpRequest, invoice_id: int) -> HttpResponse:
    """The invoice: its details, then one summary row per section, each linking to the
    items that explain it. A fixed number of queries (the invoice, the column sums, a page
    of sections, and their items when few) whatever the invoice holds."""
    principal = request.principal  # type: ignore[attr-defined]
    invoice = selectors.invoice_head_get(principal=principal, invoice_id=invoice_id)
    c = invoice.currency
    sums = selectors.invoice_section_sums(invoice)
    paginator = Paginator(selectors.invoice_sections(invoice), SECTION_PAGE_SIZE)
    paginator.count = sums.count  # known from the sums: no second count
    page_obj = paginator.get_page(request.GET.get("page"))
    page_sections = list(page_obj)
    inline = sums.count <= INLINE_SECTIONS
    items: list[InvoiceItem] = []
    if inline:
        items = selectors.invoice_items_of(page_sections, INLINE_ITEMS + 1)
        inline = len(items) <= INLINE_ITEMS
    by_section: dict[int, list[ItemView]] = {}
    if inline:
        for item in items:
            by_section.setdefault(item.section_id, []).append(_item_view(item, c))
    sections = [
        {**_section_figures(s, c), "items": by_section.get(s.pk, [])} for s in page_sections
    ]
    totals = {
        "line_quantity": sums.line_quantity,
        "recurring": money(sums.recurring, c),
        "prorations": money(sums.prorations, c),
        "discounts": money(sums.discounts, c),
        "credits": money(sums.credits, c),
        "total": money(invoice.total, c),
    }
    return render(
        request,
        "billing/invoice_detail.html",
        {
            "active_section": "invoices",
            "invoice": invoice,
            "period": _period(invoice.period_start, invoice.period_end, invoice.timezone),
            "unit_price": money(invoice.unit_price, c),
            "total": money(invoice.total, c),
            "sections": sections,
            "section_count": sums.count,
            "page_obj": page_obj,
            "inline": inline,
            "totals": totals,
        },
    )


@portal_view
def invoice_section(request: HttpRequest, invoice_id: int, sub_account_id: int) -> HttpResponse:
    """One sub-account's section of an invoice: its figures and the items that explain
    them, a page at a time (a section may hold thousands of prorations)."""
    principal = request.principal  # type: ignore[attr-defined]
    section = selectors.invoice_section_get(
        principal=principal, invoice_id=invoice_id, sub_account_id=sub_account_id
    )
    invoice = section.invoice
    c = invoice.currency
    page_obj = Paginator(selectors.invoice_section_items(section), ITEM_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "billing/invoice_section.html",
        {
            "active_section": "invoices",
            "invoice": invoice,
            "period": _period(invoice.period_start, invoice.period_end, invoice.timezone),
            "s": {**_section_figures(section, c), "items": [_item_view(i, c) for i in page_obj]},
            "page_obj": page_obj,
        },
    )


# --- CSV export ---------------------------------------------------------------------------

CSV_HEADER = [
    "invoice_number",
    "period",
    "section",
    "kind",
    "line_number",
    "other_sub_account",
    "service_start",
    "service_end",
    "days",
    "quantity",
    "unit_price",
    "amount",
    "currency",
    "description",
]


def _number_cell(value: str) -> str:
    """Amounts are written as numbers (``-25.00`` stays a number); anything else is text."""
    try:
        Decimal(value)
    except ArithmeticError:
        return csv_safe(value)
    return value if value.lstrip("-").replace(".", "", 1).isdigit() else csv_safe(value)


def invoice_csv_rows(invoice: Invoice) -> list[list[str]]:
    """The CSV rows (header first) of an invoice fetched with :func:`selectors.invoice_get`."""
    c = invoice.currency
    rows = [CSV_HEADER]
    for section in invoice.sections.all():
        for item in section.items.all():
            rows.append(
                [
                    str(invoice.number),
                    f"{invoice.period_month:%Y-%m}",
                    csv_safe(section.name),
                    item.kind,
                    csv_safe(item.line.number if item.line_id else ""),
                    csv_safe(item.other_name),
                    item.service_start.isoformat(),
                    item.service_end.isoformat(),
                    str(item.days),
                    str(item.quantity),
                    _number_cell(_plain(item.unit_price, c)),
                    _number_cell(_plain(item.amount, c)),
                    c,
                    csv_safe(item.description),
                ]
            )
    return rows


def export_filename(invoice: Invoice, extension: str) -> str:
    """``invoice-2-2026-07.pdf``: the number and the month, what people file it by."""
    return f"invoice-{invoice.number}-{invoice.period_month:%Y-%m}.{extension}"


def invoice_csv_response(invoice: Invoice) -> HttpResponse:
    """The CSV download of an invoice (the page and the API both serve this)."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{export_filename(invoice, "csv")}"'
    response.write("\ufeff")  # so spreadsheets read the names as UTF-8
    csv.writer(response).writerows(invoice_csv_rows(invoice))
    return response


@portal_view
def invoice_csv(request: HttpRequest, invoice_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    invoice = selectors.invoice_get(principal=principal, invoice_id=invoice_id)
    return invoice_csv_response(invoice)


# --- PDF export ---------------------------------------------------------------------------


def _item_date(item: InvoiceItem) -> str:
    if item.kind in PRORATION_KINDS:
        return item.service_start.isoformat()
    return f"{item.service_start.day}–{item.service_end:%-d %b %Y}"


def invoice_document(invoice: Invoice) -> InvoiceDocument:
    """What the PDF shows of an invoice fetched with :func:`selectors.invoice_get`, in the
    words and formats of the invoice page."""
    c = invoice.currency
    period = _period(invoice.period_start, invoice.period_end, invoice.timezone)
    sections = []
    for s in invoice.sections.all():
        items = []
        for item in s.items.all():
            view = _item_view(item, c)
            items.append(
                ItemRow(
                    kind=KIND_LABELS.get(item.kind, item.kind),
                    line=view.line_number.replace("\u00a0", " "),
                    other=item.other_name,
                    date=_item_date(item),
                    days=str(item.days),
                    how=view.formula,
                    amount=view.amount,
                )
            )
        sections.append(
            SectionBlock(
                name=s.name,
                note="(unassigned lines)" if s.kind == SubAccountKind.AVAILABLE else "",
                line_quantity=s.line_quantity,
                recurring=money(s.recurring, c),
                prorations=money(s.prorations, c),
                discounts=money(s.discounts, c),
                credits=money(s.credits, c),
                total=money(s.total, c),
                items=items,
            )
        )
    month = f"{period['month']:%B %Y}"
    span = f"{period['first']:%-d %b %Y} – {period['last']:%-d %b %Y}"
    stored = list(invoice.sections.all())
    column_totals = (
        str(sum(s.line_quantity for s in stored)),
        *(
            money(sum((getattr(s, kind) for s in stored), Decimal(0)), c)
            for kind in ("recurring", "prorations", "discounts", "credits")
        ),
    )
    return InvoiceDocument(
        number=invoice.number,
        partner=invoice.partner.name,
        status=invoice.get_status_display(),
        is_draft=invoice.status == InvoiceStatus.DRAFT,
        period=f"{month}: {span}",
        period_short=month,
        currency=c,
        total=money(invoice.total, c),
        details=(
            ("Period", f"{month}: {span} ({invoice.timezone})"),
            ("Status", invoice.get_status_display()),
            ("Issued", format_local(invoice.issued_at, invoice.timezone)),
            (
                "Finalized",
                format_local(invoice.finalized_at, invoice.timezone)
                if invoice.finalized_at
                else "Not yet (drafts are finalized after 3 days)",
            ),
            ("Currency", c),
            ("Price per line", format_money(invoice.unit_price, c)),
        ),
        sections=sections,
        column_totals=column_totals,
        notes=(
            f"Recurring: the lines each sub-account held at the start of {month}. "
            "Prorations: moves and new lines of the month before.",
            "Each section's total is the sum of its items; the invoice total is the sum of "
            "the sections.",
        ),
    )


def invoice_pdf_response(invoice: Invoice) -> HttpResponse:
    """The PDF download of an invoice (the page and the API both serve this)."""
    response = HttpResponse(render_invoice_pdf(invoice_document(invoice)))
    response["Content-Type"] = "application/pdf"
    response["Content-Disposition"] = f'attachment; filename="{export_filename(invoice, "pdf")}"'
    return response


@portal_view
def invoice_pdf(request: HttpRequest, invoice_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    invoice = selectors.invoice_get(principal=principal, invoice_id=invoice_id)
    return invoice_pdf_response(invoice)
