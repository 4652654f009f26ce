"""The invoice as files: CSV (one row per item) and PDF (the invoice page on A4).

The invoice's page (``views.py``) and the REST API (``api.py``) both answer with these
responses, so a download is the same file whichever way it was asked for. Both take an
invoice fetched with :func:`portal.billing.selectors.invoice_get` (sections and items
prefetched).
"""

from __future__ import annotations

from decimal import Decimal

from django.http import HttpResponse

from portal.billing.display import item_view, period_dates
from portal.billing.models import (
    PRORATION_KINDS,
    Invoice,
    InvoiceItem,
    InvoiceItemKind,
    InvoiceStatus,
)
from portal.billing.money import format_amount as money
from portal.billing.money import format_money, plain_amount
from portal.billing.pdf import InvoiceDocument, ItemRow, SectionBlock, render_invoice_pdf
from portal.core.downloads import attachment, csv_response
from portal.core.localtime import format_local
from portal.core.text import csv_safe
from portal.partners.models import SubAccountKind

KIND_LABELS = dict(InvoiceItemKind.choices)


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
                    _number_cell(plain_amount(item.unit_price, c)),
                    _number_cell(plain_amount(item.amount, c)),
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
    return csv_response(export_filename(invoice, "csv"), invoice_csv_rows(invoice))


# --- PDF export ---------------------------------------------------------------------------


def _item_date(item: InvoiceItem) -> str:
    if item.kind in PRORATION_KINDS:
        return item.service_start.isoformat()
    return f"{item.service_start.day}–{item.service_end:%-d %b %Y}"


def invoice_document(invoice: Invoice) -> InvoiceDocument:
    """What the PDF shows of an invoice fetched with :func:`selectors.invoice_get`, in the
    words and formats of the invoice page."""
    c = invoice.currency
    period = period_dates(invoice.period_start, invoice.period_end, invoice.timezone)
    sections = []
    for s in invoice.sections.all():
        items = []
        for item in s.items.all():
            view = item_view(item, c)
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
    return attachment(
        render_invoice_pdf(invoice_document(invoice)),
        content_type="application/pdf",
        filename=export_filename(invoice, "pdf"),
    )
