"""An invoice as a PDF (A4): the figures a person files, every amount traced to its items.

Layout only: this module takes an :class:`InvoiceDocument` of already formatted
strings (built by :func:`portal.billing.views.invoice_document` from the same helpers
as the invoice page, so the PDF and the page never disagree) and draws it. It reads no
database and no clock, so tests and the benchmark can render any size directly.

Why fpdf2: pure Python with small, well-kept dependencies (fontTools subsets the
embedded font, Pillow), and a low-level drawing API, so rows are written straight
into the page stream: a section of 10,000 items renders in a few seconds, with the
table header repeated on every page. The font is Fira Sans (Mozilla, OFL) from the
``fontpkg-fira-sans`` wheel — static Regular and Bold TrueType files covering Latin,
Greek and Cyrillic; no font file lives in this repository. A character the font lacks
is drawn as "?" rather than silently dropped, and control characters are removed.

:class:`PdfCanvas` holds what any billing document draws with (font, text that fits or
wraps, tables whose header repeats on every page); the client statement
(``statement_pdf``) draws with it too.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import fontpkg
from fpdf import FPDF

FONT = "Fira Sans"
PAGE_MARGIN = 15.0  # mm, left and right
TOP = 14.0
BOTTOM = 16.0  # room for the footer
ROW_H = 5.0
LINE_H = 3.5  # each further line of a wrapped row
HEAD_H = 6.0
ELLIPSIS = "…"

# Colours (RGB): ink, muted text, rules, header and zebra fills, status badges.
INK = (33, 37, 41)
MUTED = (100, 106, 115)
RULE = (206, 212, 218)
HEAD_FILL = (236, 240, 244)
ZEBRA = (248, 249, 251)
DRAFT = (176, 96, 0)
FINAL = (25, 120, 60)


@dataclass(frozen=True, slots=True)
class ItemRow:
    """One invoice item, formatted: what it is, the line and days behind it, the amount."""

    kind: str
    line: str
    other: str
    date: str
    days: str
    how: str
    amount: str


@dataclass(frozen=True)
class SectionBlock:
    """One sub-account's part of the invoice: its figures, its items, its total."""

    name: str
    note: str
    line_quantity: int
    recurring: str
    prorations: str
    discounts: str
    credits: str
    total: str
    items: Sequence[ItemRow]


@dataclass(frozen=True)
class InvoiceDocument:
    """Everything the PDF shows, as text; amounts already in the currency's format."""

    number: int
    partner: str
    status: str
    is_draft: bool
    period: str
    period_short: str
    currency: str
    total: str
    details: Sequence[tuple[str, str]]
    sections: Sequence[SectionBlock]
    notes: Sequence[str] = field(default_factory=tuple)
    # The summary's totals row below Lines … Credits, as the invoice page shows it.
    column_totals: Sequence[str] = field(default_factory=tuple)


@cache
def _font_files() -> tuple[Path, Path]:
    return fontpkg.path(FONT), fontpkg.path(FONT, weight=700)


# Columns: (heading, width in mm, alignment). Both tables span the 180 mm text width.
SUMMARY_COLUMNS = (
    ("Sub-account", 56.0, "L"),
    ("Lines", 14.0, "R"),
    ("Recurring", 22.0, "R"),
    ("Prorations", 22.0, "R"),
    ("Discounts", 22.0, "R"),
    ("Credits", 22.0, "R"),
    ("Total", 22.0, "R"),
)
ITEM_COLUMNS = (
    ("Item", 26.0, "L"),
    ("Line", 26.0, "L"),
    ("Other sub-account", 37.0, "L"),
    ("Date", 22.0, "L"),
    ("Days", 9.0, "R"),
    ("How", 38.0, "L"),
    ("Amount", 22.0, "R"),
)
PAD = 1.5  # mm inside each cell


class PdfCanvas(FPDF):
    """An A4 page in the embedded font, with the text and table helpers every document of
    billing draws with (the invoice here, the client statement in ``statement_pdf``):
    its subclass draws the page furniture (``header``, ``footer``) and the content."""

    def __init__(self) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        regular, bold = _font_files()
        self.add_font("body", "", regular)
        self.add_font("body", "B", bold)
        self.set_margins(PAGE_MARGIN, TOP, PAGE_MARGIN)
        self.set_auto_page_break(auto=False, margin=BOTTOM)
        self.set_creator("Reseller Partner Portal")
        self.set_lang("en")
        self._widths: dict[tuple[str, float, str], float] = {}
        self._glyphs: dict[str, set[int]] = {}
        self._cleaned: dict[tuple[str, str], str] = {}
        # Set while a table runs over pages, so the new page repeats its heading.
        self.continued: tuple[str, Sequence[tuple[str, float, str]]] | None = None

    # --- Text helpers -------------------------------------------------------------------

    def font(self, size: float, bold: bool = False, color: tuple[int, int, int] = INK) -> None:
        self.set_font("body", "B" if bold else "", size)
        self.set_text_color(*color)

    def clean(self, text: str) -> str:
        """``text`` drawable in the current font: controls removed, missing glyphs as ?."""
        if text.isascii() and text.isprintable():
            return text
        key = (self.font_style, text)
        cleaned = self._cleaned.get(key)
        if cleaned is not None:
            return cleaned  # names and formulas repeat on thousands of rows
        cmap = self._glyphs.get(self.font_style)
        if cmap is None:
            cmap = self._glyphs[self.font_style] = set(self.current_font.cmap)
        out = []
        for ch in text:
            if unicodedata.category(ch) in ("Cc", "Cf"):
                continue  # controls, and invisible format marks the font need not have
            out.append(ch if ord(ch) in cmap or ch.isspace() else "?")
        cleaned = self._cleaned[key] = "".join(out)
        return cleaned

    def width_of(self, text: str) -> float:
        key = (self.font_style, self.font_size_pt, text)
        width = self._widths.get(key)
        if width is None:
            width = self._widths[key] = self.get_string_width(text)
        return width

    def fit(self, text: str, width: float) -> str:
        """``text`` cut with an ellipsis so that it fits ``width`` mm."""
        text = self.clean(text)
        if self.width_of(text) <= width:
            return text
        low, high = 0, len(text)
        while low < high:  # the longest prefix that fits with the ellipsis
            mid = (low + high + 1) // 2
            if self.get_string_width(text[:mid].rstrip() + ELLIPSIS) <= width:
                low = mid
            else:
                high = mid - 1
        return text[:low].rstrip() + ELLIPSIS

    def put(self, x: float, y: float, width: float, text: str, align: str = "L") -> None:
        """Draw ``text`` in the cell ``[x, x + width]`` whose top is ``y`` (one row)."""
        if not text:
            return
        text = self.fit(text, width - 2 * PAD)
        baseline = y + ROW_H / 2 + self.font_size * 0.35
        if align == "R":
            self.text(x + width - PAD - self.width_of(text), baseline, text)
        else:
            self.text(x + PAD, baseline, text)

    # --- Page furniture -----------------------------------------------------------------

    @property
    def bottom(self) -> float:
        return self.h - BOTTOM

    def rule_across(self, y: float) -> None:
        """A thin rule from margin to margin at ``y``: under a running head, over a footer."""
        self.set_draw_color(*RULE)
        self.set_line_width(0.2)
        self.line(PAGE_MARGIN, y, self.w - PAGE_MARGIN, y)

    def page_footer(self, left: str) -> None:
        """The footer every billing document has: a rule, ``left`` and "Page n of N"."""
        y = self.h - BOTTOM + 7
        self.rule_across(y - 3.5)
        self.font(7.5, color=MUTED)
        self.text(PAGE_MARGIN, y, self.fit(left, 130))
        # The page count is only known at the end: fpdf2 replaces {nb} in cell text then.
        self.set_xy(self.w - PAGE_MARGIN - 40, y - 3)
        self.cell(40, 4, f"Page {self.page_no()} of {self.str_alias_nb_pages}", align="R")

    def continued_heading(self) -> None:
        """On a page a table runs onto: its heading "(continued)" and its header again."""
        if self.continued is None:
            return
        title, columns = self.continued
        self.font(9, bold=True)
        self.text(PAGE_MARGIN, self.get_y() + 3.5, self.fit(f"{title} (continued)", 180))
        self.set_y(self.get_y() + 5.5)
        self.table_head(columns)

    # --- Tables -------------------------------------------------------------------------

    def table_head(self, columns: Sequence[tuple[str, float, str]]) -> None:
        y = self.get_y()
        self.set_fill_color(*HEAD_FILL)
        self.rect(PAGE_MARGIN, y, sum(w for _, w, _ in columns), HEAD_H, style="F")
        self.font(7.5, bold=True, color=MUTED)
        x = PAGE_MARGIN
        for title, width, align in columns:
            self.put(x, y + 0.5, width, title, align)
            x += width
        self.set_y(y + HEAD_H)

    def table_rows(
        self,
        title: str,
        columns: Sequence[tuple[str, float, str]],
        rows: Sequence[Sequence[str]],
        *,
        bold_last: int = 0,
    ) -> None:
        """Rows under a header already drawn; a new page repeats heading and header.

        The last ``bold_last`` rows are totals: bold, above a rule, never alone on a page.
        """
        total_width = sum(w for _, w, _ in columns)
        *_, (_, last_width, _) = columns
        self.continued = (title, columns)
        count = len(rows)
        for index, row in enumerate(rows):
            is_total = index >= count - bold_last
            self.font(8, bold=is_total)
            if is_total and not any(row[1:-1]):  # the label spans every column but the amount's
                cells = [
                    (PAGE_MARGIN, total_width - last_width, "L", row[0]),
                    (PAGE_MARGIN + total_width - last_width, last_width, "R", row[-1]),
                ]
            else:
                cells, x = [], PAGE_MARGIN
                for (_, width, align), text in zip(columns, row, strict=True):
                    cells.append((x, width, align, text))
                    x += width
            # Text wraps onto more lines rather than losing its end; numbers never do.
            laid = [
                (x, width, align, self.wrap(text, width - 2 * PAD) if align == "L" else [text])
                for x, width, align, text in cells
            ]
            height = ROW_H + LINE_H * (max(len(lines) for *_, lines in laid) - 1)
            keep_with_totals = ROW_H * bold_last if index == count - bold_last - 1 else 0
            if self.get_y() + height + keep_with_totals > self.bottom:
                self.add_page()
                self.font(8, bold=is_total)
            y = self.get_y()
            if is_total:
                self.set_draw_color(*INK)
                self.set_line_width(0.3)
                self.line(PAGE_MARGIN, y, PAGE_MARGIN + total_width, y)
            elif index % 2:
                self.set_fill_color(*ZEBRA)
                self.rect(PAGE_MARGIN, y, total_width, height, style="F")
            for x, width, align, lines in laid:
                for k, line in enumerate(lines):
                    self.put(x, y + k * LINE_H, width, line, align)
            self.set_y(y + height)
        self.continued = None

    def wrap(self, text: str, width: float) -> list[str]:
        """``text`` in as many lines of ``width`` mm as it needs, by words: an explanation
        is never cut short. A word wider than a line (a long name without spaces) is
        broken where the line is full."""
        text = self.clean(text)
        if not text or self.width_of(text) <= width:
            return [text]
        lines: list[str] = []
        line = ""
        for word in text.split(" "):
            candidate = f"{line} {word}" if line else word
            if self.width_of(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while self.width_of(word) > width:
                cut = self._longest_prefix(word, width)
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        if line:
            lines.append(line)
        return lines

    def _longest_prefix(self, word: str, width: float) -> int:
        """How many characters of ``word`` fit ``width`` mm (at least one)."""
        low, high = 1, len(word)
        while low < high:
            mid = (low + high + 1) // 2
            if self.get_string_width(word[:mid]) <= width:
                low = mid
            else:
                high = mid - 1
        return low

    def ensure(self, height: float) -> None:
        """Start a new page unless ``height`` mm fit below the cursor."""
        if self.get_y() + height > self.bottom:
            self.add_page()


class _Pdf(PdfCanvas):
    """The invoice: its running header (number, partner, status) and footer (page n of
    m, a DRAFT mark over a draft's pages)."""

    def __init__(self, doc: InvoiceDocument) -> None:
        super().__init__()
        self.doc = doc
        self.set_title(f"Invoice {doc.number} – {doc.partner} – {doc.period_short}")
        self.set_author(doc.partner)

    def header(self) -> None:
        doc = self.doc
        if self.page_no() == 1:
            self.set_y(TOP)
            return
        self.font(8, color=MUTED)
        left = self.clean(f"Invoice {doc.number} · {doc.partner} · {doc.period_short}")
        self.text(PAGE_MARGIN, TOP - 4, self.fit(left, 140))
        self.font(8, bold=True, color=DRAFT if doc.is_draft else FINAL)
        status = doc.status.upper()
        self.text(self.w - PAGE_MARGIN - self.width_of(status), TOP - 4, status)
        self.rule_across(TOP - 2.5)
        self.set_y(TOP)
        self.continued_heading()

    def footer(self) -> None:
        doc = self.doc
        self.page_footer(f"Invoice {doc.number} · {doc.partner} · amounts in {doc.currency}")
        if doc.is_draft:
            # Over the page but translucent, so no table fill can hide it.
            with self.local_context(fill_opacity=0.12, text_color=DRAFT):
                self.set_font("body", "B", 96)
                with self.rotation(35, x=self.w / 2, y=self.h / 2):
                    width = self.get_string_width("DRAFT")
                    self.text(self.w / 2 - width / 2, self.h / 2 + 14, "DRAFT")


def render_invoice_pdf(doc: InvoiceDocument) -> bytes:
    """The invoice as PDF bytes."""
    pdf = _Pdf(doc)
    pdf.add_page()
    _title_block(pdf, doc)
    _summary(pdf, doc)
    for section in doc.sections:
        _section(pdf, doc, section)
    _closing(pdf, doc)
    return bytes(pdf.output())


def _title_block(pdf: _Pdf, doc: InvoiceDocument) -> None:
    top = pdf.get_y()
    pdf.font(20, bold=True)
    pdf.text(PAGE_MARGIN, top + 7, f"Invoice {doc.number}")
    # Status badge, right-aligned on the title line.
    status = doc.status.upper()
    pdf.font(9, bold=True, color=(255, 255, 255))
    width = pdf.width_of(status) + 6
    pdf.set_fill_color(*(DRAFT if doc.is_draft else FINAL))
    x = pdf.w - PAGE_MARGIN - width
    pdf.rect(x, top + 1.5, width, 6.5, style="F", round_corners=True, corner_radius=1.2)
    pdf.text(x + 3, top + 6.2, status)
    pdf.font(12, bold=True)
    pdf.text(PAGE_MARGIN, top + 14, pdf.fit(doc.partner, 180))
    y = top + 17
    for label, value in doc.details:
        pdf.font(8.5, color=MUTED)
        pdf.text(PAGE_MARGIN, y + 3.5, label)
        pdf.font(8.5)
        pdf.text(PAGE_MARGIN + 32, y + 3.5, pdf.fit(value, 148))
        y += 4.8
    pdf.font(7.5, color=MUTED)
    pdf.c_margin = 0
    pdf.set_y(y + 1.5)
    for note in doc.notes:  # what the figures mean, before them (page 1 has the room)
        pdf.multi_cell(180, 3.6, pdf.clean(note), new_x="LMARGIN", new_y="NEXT")
    y = pdf.get_y()
    pdf.set_draw_color(*RULE)
    pdf.set_line_width(0.3)
    pdf.line(PAGE_MARGIN, y + 2, pdf.w - PAGE_MARGIN, y + 2)
    pdf.set_y(y + 5)


def _summary(pdf: _Pdf, doc: InvoiceDocument) -> None:
    pdf.font(12, bold=True)
    pdf.text(PAGE_MARGIN, pdf.get_y() + 5, "Summary")
    pdf.font(8, color=MUTED)
    pdf.text(PAGE_MARGIN + 22, pdf.get_y() + 5, f"by sub-account, in {doc.currency}")
    pdf.set_y(pdf.get_y() + 8)
    pdf.table_head(SUMMARY_COLUMNS)
    rows = [
        [
            f"{s.name} {s.note}".strip(),
            str(s.line_quantity),
            s.recurring,
            s.prorations,
            s.discounts,
            s.credits,
            s.total,
        ]
        for s in doc.sections
    ]
    columns = list(doc.column_totals) if len(doc.column_totals) == 5 else [""] * 5
    rows.append([f"Invoice total ({doc.currency})", *columns, doc.total])
    pdf.table_rows("Summary", SUMMARY_COLUMNS, rows, bold_last=1)
    pdf.set_y(pdf.get_y() + 4)


def _section(pdf: _Pdf, doc: InvoiceDocument, section: SectionBlock) -> None:
    # Heading, figures, table header and two rows stay together.
    pdf.ensure(8 + 5 + HEAD_H + 2 * ROW_H + 4)
    y = pdf.get_y() + 4
    total = f"{section.total} {doc.currency}"
    pdf.font(11, bold=True)
    total_width = pdf.width_of(total)
    title = pdf.fit(section.name, 180 - total_width - 6)
    pdf.text(PAGE_MARGIN, y + 4, title)  # name, note, then total: the order text is read in
    if section.note:
        x = PAGE_MARGIN + pdf.width_of(title) + 2
        pdf.font(8.5, color=MUTED)
        if x + pdf.width_of(section.note) < pdf.w - PAGE_MARGIN - total_width - 4:
            pdf.text(x, y + 4, section.note)
    pdf.font(11, bold=True)
    pdf.text(pdf.w - PAGE_MARGIN - total_width, y + 4, total)
    plural = "line" if section.line_quantity == 1 else "lines"
    figures = (
        f"{section.line_quantity} {plural} at the start of {doc.period_short}"
        f"  ·  Recurring {section.recurring}  ·  Prorations {section.prorations}"
        f"  ·  Discounts {section.discounts}  ·  Credits {section.credits}"
    )
    pdf.font(8, color=MUTED)
    pdf.text(PAGE_MARGIN, y + 9, pdf.fit(figures, 180))
    pdf.set_y(y + 11.5)
    pdf.table_head(ITEM_COLUMNS)
    rows: list[Sequence[str]] = [
        (i.kind, i.line, i.other, i.date, i.days, i.how, i.amount) for i in section.items
    ]
    if not rows:
        rows.append(("No items.", "", "", "", "", "", ""))
    rows.append((f"Total of {section.name}", "", "", "", "", "", section.total))
    pdf.table_rows(section.name, ITEM_COLUMNS, rows, bold_last=1)


def _closing(pdf: _Pdf, doc: InvoiceDocument) -> None:
    pdf.ensure(14)
    y = pdf.get_y() + 5
    pdf.set_fill_color(*HEAD_FILL)
    pdf.rect(PAGE_MARGIN, y, 180, 9, style="F")
    pdf.font(11, bold=True)
    label = f"Invoice total ({doc.currency})"
    pdf.text(PAGE_MARGIN + 3, y + 6, label)
    total = f"{doc.total} {doc.currency}"
    pdf.text(pdf.w - PAGE_MARGIN - 3 - pdf.width_of(total), y + 6, total)
    pdf.set_y(y + 13)
