"""Billing pages: the current cycle's summary, invoices, "explain this charge", CSV and PDF.

Every figure comes from the selectors the REST API uses (``billing_summary``,
``invoice_list``, ``invoice_get``); these views only format it for people (items read
through ``display``, the downloads built by ``exports``, which the API serves too).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal.billing import selectors
from portal.billing import summary as summaries
from portal.billing.display import ItemView, item_view, period_dates
from portal.billing.exports import invoice_csv_response, invoice_pdf_response
from portal.billing.models import InvoiceItem, InvoiceSection
from portal.billing.money import format_amount as money
from portal.billing.navigation import billing_tabs
from portal.billing.policies import can_read_invoices
from portal.core.localtime import to_local
from portal.partners.models import SubAccountKind
from portal.partners.selectors import available_pool
from portal.web.decorators import portal_view

PAGE_SIZE = 25


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
            "period": period_dates(summary.cycle.start, summary.cycle.end, partner.timezone),
            "rows": rows,
            "totals": totals,
            "invoice_part": money(summary.total - accruing, currency),
            "accruing": money(accruing, currency),
            "next_month": summary.cycle.next().first_day,
            "can_read_invoices": can_read_invoices(principal),
            "billing_tabs": billing_tabs(principal, "summary"),
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
            "period": period_dates(invoice.period_start, invoice.period_end, invoice.timezone),
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
            by_section.setdefault(item.section_id, []).append(item_view(item, c))
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
            "period": period_dates(invoice.period_start, invoice.period_end, invoice.timezone),
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
            "period": period_dates(invoice.period_start, invoice.period_end, invoice.timezone),
            "s": {**_section_figures(section, c), "items": [item_view(i, c) for i in page_obj]},
            "page_obj": page_obj,
        },
    )


# --- Downloads ----------------------------------------------------------------------------


@portal_view
def invoice_csv(request: HttpRequest, invoice_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    invoice = selectors.invoice_get(principal=principal, invoice_id=invoice_id)
    return invoice_csv_response(invoice)


@portal_view
def invoice_pdf(request: HttpRequest, invoice_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    invoice = selectors.invoice_get(principal=principal, invoice_id=invoice_id)
    return invoice_pdf_response(invoice)
