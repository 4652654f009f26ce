"""A client statement as files a reseller sends: CSV (one row per charge) and PDF (A4),
and the words pages, files and the API share for it (domain §8.1).

The statement's page (``statement_views``) and the REST API (``statement_api``) both
answer with these responses, so a download is the same file whichever way it was asked
for. Each takes a statement fetched with
:func:`portal.billing.statement_selectors.statement_get` (items prefetched).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.http import HttpResponse
from django.utils.text import slugify

from portal.billing.models import InvoiceItemKind, Statement, StatementItem
from portal.billing.money import format_amount, format_money, plain_amount
from portal.billing.statement_pdf import StatementDocument, StatementRow, render_statement_pdf
from portal.core.downloads import attachment, csv_response
from portal.core.localtime import to_local
from portal.core.phone import display_number, display_number_fast
from portal.core.text import csv_safe

# What each charge is, in the client's words: a move between two of the reseller's
# clients is a line joining or leaving this client's account (the other is never named).
CHARGE_LABELS = {
    InvoiceItemKind.RECURRING: "Monthly charge",
    InvoiceItemKind.MOVE_CHARGE: "Line moved in",
    InvoiceItemKind.MOVE_CREDIT: "Line moved out",
    InvoiceItemKind.ACTIVATION: "New line",
    InvoiceItemKind.DISCONNECT_CREDIT: "Line disconnected",
}


def charge_label(kind: str) -> str:
    return CHARGE_LABELS.get(kind, kind.replace("_", " ").capitalize())  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class StatementPeriod:
    """A statement's cycle as the client's local dates."""

    month: dt.date  # the 1st
    first: dt.date
    last: dt.date
    previous: dt.date  # the 1st of the month its adjustments correct

    @property
    def label(self) -> str:
        return f"{self.month:%B %Y}"

    @property
    def span(self) -> str:
        return f"{self.first:%-d %b} – {self.last:%-d %b %Y}"


def statement_period(statement: Statement) -> StatementPeriod:
    first = to_local(statement.period_start, statement.timezone).date()
    last = to_local(statement.period_end, statement.timezone).date() - dt.timedelta(days=1)
    month = statement.period_month
    previous = (month - dt.timedelta(days=1)).replace(day=1)
    return StatementPeriod(month=month, first=first, last=last, previous=previous)


def client_lines(statement: Statement) -> list[str]:
    """The client's contact as the statement was issued to it, the lines it has."""
    lines = [statement.contact_name, statement.contact_email]
    if statement.contact_phone:
        lines.append(display_number(statement.contact_phone))
    if statement.internal_reference:
        lines.append(f"Reference: {statement.internal_reference}")
    return [line for line in lines if line]


def export_filename(statement: Statement, extension: str) -> str:
    """``statement-3-2026-07-acme-dental.pdf``: the number, the month and the client, what
    a reseller sending many files them by (ASCII only, so every mail client keeps it)."""
    client = slugify(statement.name)[:40].strip("-")
    stem = f"statement-{statement.number}-{statement.period_month:%Y-%m}"
    return f"{stem}-{client}.{extension}" if client else f"{stem}.{extension}"


def _line_number(item: StatementItem) -> str:
    return item.line.number if item.line_id else ""


# --- CSV ----------------------------------------------------------------------------------

CSV_HEADER = [
    "statement_number",
    "period",
    "client",
    "internal_reference",
    "kind",
    "charge",
    "line_number",
    "service_start",
    "service_end",
    "days",
    "quantity",
    "unit_price",
    "amount",
    "currency",
    "description",
]


def statement_csv_rows(statement: Statement) -> list[list[str]]:
    """The CSV rows (header first): one per charge. Text cells are formula-safe."""
    c = statement.currency
    client = csv_safe(statement.name)
    reference = csv_safe(statement.internal_reference)
    rows = [CSV_HEADER]
    for item in statement.items.all():
        rows.append(
            [
                str(statement.number),
                f"{statement.period_month:%Y-%m}",
                client,
                reference,
                item.kind,
                charge_label(item.kind),
                csv_safe(_line_number(item)),
                item.service_start.isoformat(),
                item.service_end.isoformat(),
                str(item.days),
                str(item.quantity),
                plain_amount(item.unit_price, c),
                plain_amount(item.amount, c),
                c,
                csv_safe(item.description),
            ]
        )
    return rows


def statement_csv_response(statement: Statement) -> HttpResponse:
    """The CSV download of a statement (the page and the API both serve this)."""
    return csv_response(export_filename(statement, "csv"), statement_csv_rows(statement))


# --- PDF ----------------------------------------------------------------------------------


def statement_notes(period: StatementPeriod, *, has_adjustments: bool) -> list[str]:
    """What the figures mean, in the client's terms."""
    notes = [
        f"Monthly charges are billed in advance for the lines held on {period.first:%-d %B %Y}."
    ]
    if has_adjustments:
        notes.append(
            f"Adjustments correct {period.previous:%B %Y} by the day: lines that moved into or "
            "out of the account, new lines and disconnected lines, each for the days concerned."
        )
    return notes


def statement_document(statement: Statement) -> StatementDocument:
    """What the PDF shows of a statement fetched with ``statement_get``, in the words and
    formats of its page."""
    c = statement.currency
    period = statement_period(statement)
    issued = to_local(statement.issued_at, statement.timezone).date()
    details = [
        ("Period", f"{period.label}: {period.span}"),
        ("Issued", f"{issued:%-d %B %Y}"),
        ("Lines", f"{statement.line_quantity} on {period.first:%-d %B %Y}"),
    ]
    if statement.unit_price is not None:
        details.append(("Price per line", f"{format_money(statement.unit_price, c)} a month"))
    details.append(("Currency", c))
    rows = [
        StatementRow(
            charge=charge_label(item.kind),
            line=display_number_fast(_line_number(item)) if item.line_id else "",
            details=item.description,
            amount=format_amount(item.amount, c),
        )
        for item in statement.items.all()
    ]
    return StatementDocument(
        number=statement.number,
        reseller=statement.partner_name,
        client=statement.name,
        client_lines=client_lines(statement),
        period_short=period.label,
        currency=c,
        details=details,
        rows=rows,
        sums=(
            ("Monthly charges", format_amount(statement.recurring, c)),
            (f"Adjustments for {period.previous:%B %Y}", format_amount(statement.prorations, c)),
        ),
        total=format_amount(statement.total, c),
        notes=statement_notes(
            period,
            has_adjustments=any(i.kind != InvoiceItemKind.RECURRING for i in statement.items.all()),
        ),
    )


def statement_pdf_response(statement: Statement) -> HttpResponse:
    """The PDF download of a statement (the page and the API both serve this)."""
    return attachment(
        render_statement_pdf(statement_document(statement)),
        content_type="application/pdf",
        filename=export_filename(statement, "pdf"),
    )
