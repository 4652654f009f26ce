"""How an invoice reads for people: its cycle as local dates, each item's amount, line
number and the formula behind it. The pages (``views.py``) and the PDF
(``exports.py``) both show invoices through these, so they say the same thing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from portal.billing.models import PRORATION_KINDS, InvoiceItem, InvoiceItemKind
from portal.billing.money import MINUS, quantize
from portal.billing.money import format_amount as money
from portal.core.localtime import to_local
from portal.core.phone import display_number_fast


def period_dates(start: dt.datetime, end: dt.datetime, tz: str) -> dict[str, Any]:
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


@dataclass
class ItemView:
    """One invoice item as the Explain disclosure shows it."""

    item: InvoiceItem
    line_number: str
    amount: str
    unit_price: str
    formula: str
    is_proration: bool


def item_formula(item: InvoiceItem, currency: str) -> str:
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


def item_view(item: InvoiceItem, currency: str) -> ItemView:
    number = item.line.number if item.line_id else ""
    return ItemView(
        item=item,
        # No break inside a number: "+1 415 555 0100" stays on one line.
        line_number=display_number_fast(number).replace(" ", "\u00a0") if number else "",
        amount=money(item.amount, currency),
        unit_price=money(item.unit_price, currency),
        formula=item_formula(item, currency),
        is_proration=item.kind in PRORATION_KINDS,
    )
