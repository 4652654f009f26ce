"""A client statement as a PDF (A4) that a reseller can send to its client (domain §8.1).

Layout only, like :mod:`portal.billing.pdf` (whose :class:`~portal.billing.pdf.PdfCanvas`
it draws with): it takes a :class:`StatementDocument` of already formatted strings (built
by :func:`portal.billing.statement_exports.statement_document` from a stored statement)
and reads no database and no clock.

The document speaks for the reseller: its name heads the page and signs the footer, the
client is who it is addressed to. It never names the provider, nor shows the provider's
price, discounts, credits or the invoice's status: a statement is final when issued.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from portal.billing.pdf import (
    HEAD_FILL,
    INK,
    MUTED,
    PAGE_MARGIN,
    RULE,
    TOP,
    PdfCanvas,
)

TEXT_WIDTH = 180.0
ITEM_COLUMNS = (
    ("Charge", 28.0, "L"),
    ("Line", 30.0, "L"),
    ("Details", 94.0, "L"),
    ("Amount", 28.0, "R"),
)


@dataclass(frozen=True, slots=True)
class StatementRow:
    """One charge, formatted: what it is, the line, how it was worked out, the amount."""

    charge: str
    line: str
    details: str
    amount: str


@dataclass(frozen=True)
class StatementDocument:
    """Everything the PDF shows, as text; amounts already in the currency's format."""

    number: int
    reseller: str
    client: str
    client_lines: Sequence[str]  # contact name, email, phone, reference: those it has
    period_short: str  # "July 2026"
    currency: str
    details: Sequence[tuple[str, str]]  # (label, value) beside the client
    rows: Sequence[StatementRow]
    sums: Sequence[tuple[str, str]]  # (label, amount) above the total
    total: str
    notes: Sequence[str] = field(default_factory=tuple)


class _StatementPdf(PdfCanvas):
    def __init__(self, doc: StatementDocument) -> None:
        super().__init__()
        self.doc = doc
        self.set_title(f"Statement {doc.number} – {doc.client} – {doc.period_short}")
        self.set_author(doc.reseller)
        self.set_creator(doc.reseller)  # the reseller's document, nobody else's
        self.set_subject(f"Charges for {doc.period_short}")

    def header(self) -> None:
        if self.page_no() == 1:
            self.set_y(TOP)
            return
        doc = self.doc
        self.font(8, color=MUTED)
        left = f"{doc.reseller} · Statement {doc.number} · {doc.client} · {doc.period_short}"
        self.text(PAGE_MARGIN, TOP - 4, self.fit(left, TEXT_WIDTH))
        self.rule_across(TOP - 2.5)
        self.set_y(TOP)
        self.continued_heading()

    def footer(self) -> None:
        doc = self.doc
        self.page_footer(f"{doc.reseller} · Statement {doc.number} · amounts in {doc.currency}")


def render_statement_pdf(doc: StatementDocument) -> bytes:
    """The statement as PDF bytes."""
    pdf = _StatementPdf(doc)
    pdf.add_page()
    _letterhead(pdf, doc)
    _parties(pdf, doc)
    _total_box(pdf, doc)
    _items(pdf, doc)
    _sums(pdf, doc)
    return bytes(pdf.output())


def _letterhead(pdf: _StatementPdf, doc: StatementDocument) -> None:
    """The reseller's name (wrapped, never cut short: it is who the client pays) and the
    document's title on the first line, a rule below."""
    top = pdf.get_y()
    title = f"Statement {doc.number}"
    pdf.font(16, bold=True)
    title_width = pdf.width_of(title)
    pdf.text(pdf.w - PAGE_MARGIN - title_width, top + 7, title)
    y = top + 7
    for line in pdf.wrap(doc.reseller, TEXT_WIDTH - title_width - 8):
        pdf.text(PAGE_MARGIN, y, line)
        y += 6.5
    pdf.font(9, color=MUTED)
    subtitle = f"Charges for {doc.period_short}"
    pdf.text(pdf.w - PAGE_MARGIN - pdf.width_of(subtitle), top + 12.5, subtitle)
    rule = max(top + 16, y - 2.5)
    pdf.set_draw_color(*RULE)
    pdf.set_line_width(0.3)
    pdf.line(PAGE_MARGIN, rule, pdf.w - PAGE_MARGIN, rule)
    pdf.set_y(rule + 4)


def _parties(pdf: _StatementPdf, doc: StatementDocument) -> None:
    """Left: who the statement is for. Right: the statement's details."""
    top = pdf.get_y()
    left_width, right_x = 92.0, PAGE_MARGIN + 98.0
    pdf.font(7.5, bold=True, color=MUTED)
    pdf.text(PAGE_MARGIN, top + 3, "STATEMENT FOR")
    y = top + 4
    pdf.font(11, bold=True)
    for line in pdf.wrap(doc.client, left_width):  # a long name wraps, never cut short
        pdf.text(PAGE_MARGIN, y + 4.5, line)
        y += 4.8
    y += 0.8
    pdf.font(9)
    for line in doc.client_lines:
        pdf.text(PAGE_MARGIN, y + 3.8, pdf.fit(line, left_width))
        y += 4.4
    left_end = y

    pdf.font(7.5, bold=True, color=MUTED)
    pdf.text(right_x, top + 3, "DETAILS")
    y = top + 4.5
    for label, value in doc.details:
        pdf.font(9, color=MUTED)
        pdf.text(right_x, y + 3.8, label)
        pdf.font(9)
        value_width = pdf.w - PAGE_MARGIN - (right_x + 26)
        pdf.text(right_x + 26, y + 3.8, pdf.fit(value, value_width))
        y += 4.6
    pdf.set_y(max(left_end, y) + 4)


def _total_box(pdf: _StatementPdf, doc: StatementDocument) -> None:
    """The figure the client looks for first, then what the charges mean."""
    y = pdf.get_y()
    pdf.set_fill_color(*HEAD_FILL)
    pdf.rect(PAGE_MARGIN, y, TEXT_WIDTH, 10, style="F")
    pdf.font(11, bold=True)
    pdf.text(PAGE_MARGIN + 3, y + 6.6, pdf.fit(f"Total for {doc.period_short}", 110))
    total = f"{doc.total} {doc.currency}"
    pdf.font(13, bold=True)
    pdf.text(pdf.w - PAGE_MARGIN - 3 - pdf.width_of(total), y + 6.8, total)
    pdf.set_y(y + 12.5)
    pdf.font(8, color=MUTED)
    pdf.c_margin = 0
    for note in doc.notes:
        pdf.multi_cell(TEXT_WIDTH, 3.8, pdf.clean(note), new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(pdf.get_y() + 3)


def _items(pdf: _StatementPdf, doc: StatementDocument) -> None:
    pdf.ensure(8 + 6 + 2 * 5)
    pdf.font(12, bold=True)
    pdf.text(PAGE_MARGIN, pdf.get_y() + 5, "Charges")
    pdf.font(8, color=MUTED)
    pdf.text(PAGE_MARGIN + 22, pdf.get_y() + 5, f"in {doc.currency}")
    pdf.set_y(pdf.get_y() + 8)
    pdf.table_head(ITEM_COLUMNS)
    rows: list[Sequence[str]] = [(r.charge, r.line, r.details, r.amount) for r in doc.rows]
    if not rows:
        rows.append(("No charges.", "", "", ""))
    pdf.table_rows("Charges", ITEM_COLUMNS, rows)


def _sums(pdf: _StatementPdf, doc: StatementDocument) -> None:
    """The subtotals and the total, right-aligned under the amounts, kept together."""
    height = 4 + 5 * len(doc.sums) + 8
    pdf.ensure(height)
    y = pdf.get_y() + 2
    label_x = PAGE_MARGIN + 90
    right = pdf.w - PAGE_MARGIN - 1.5
    pdf.set_draw_color(*INK)
    pdf.set_line_width(0.3)
    pdf.line(PAGE_MARGIN, y, PAGE_MARGIN + TEXT_WIDTH, y)
    y += 1
    for label, amount in doc.sums:
        pdf.font(9, color=MUTED)
        pdf.text(label_x, y + 3.8, pdf.fit(label, 60))
        pdf.font(9)
        pdf.text(right - pdf.width_of(amount), y + 3.8, amount)
        y += 5
    pdf.font(11, bold=True)
    label = f"Total ({doc.currency})"
    pdf.text(label_x, y + 5, label)
    total = f"{doc.total} {doc.currency}"
    pdf.text(right - pdf.width_of(total), y + 5, total)
    pdf.set_y(y + 9)
