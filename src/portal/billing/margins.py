"""Margins (domain §8.1): per sub-account and cycle, what the provider charged beside what
the reseller charges its client.

For the period's invoice, one row per section (the Available pool included, so the
partner's totals add up: the cost total is the invoice total): ``cost`` is the section's
total (after the provider's discounts and credits), ``resale`` the total of that
sub-account's client statement issued with the invoice (0 when it has none: no resale
price in force), ``margin = resale − cost`` and ``margin_rate = margin / resale`` (None when
``resale`` is 0). A period with no invoice (not issued yet, or before the partner's
first) has no rows and zero totals.

Read set-based: the invoice, then one query over its sections with each one's statement
total beside it (the statement of the same invoice and sub-account: unique), whatever the
number of sub-accounts. Admins, billing people and staff only (``can_read_margins``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import OuterRef, Subquery

from portal.accounts.policies import require
from portal.billing.models import Invoice, InvoiceSection, Statement
from portal.billing.periods import cycle_containing
from portal.billing.policies import can_read_margins
from portal.core import clock
from portal.core.errors import Invalid
from portal.core.principal import Principal
from portal.partners.models import Partner, SubAccountKind
from portal.partners.selectors import partner_for

_PERIOD = re.compile(r"(\d{4})-(\d{2})")
# A margin rate is a ratio such as 0.3750 (37.50 %): four places, rounded half-up.
RATE_PLACES = Decimal("0.0001")


def parse_period(value: str | None) -> dt.date | None:
    """``"2026-07"`` as the 1st of that month; None for None or ""; Invalid otherwise."""
    if value is None or value == "":
        return None
    found = _PERIOD.fullmatch(value.strip()) if isinstance(value, str) else None
    if found is not None:
        year, month = int(found[1]), int(found[2])
        if year >= 1 and 1 <= month <= 12:
            return dt.date(year, month, 1)
    raise Invalid(f"Period {value!r} is not a month such as 2026-07.", field="period")


def margin_rate(margin: Decimal, resale: Decimal) -> Decimal | None:
    """``margin / resale`` to four places; None when nothing was resold."""
    if not resale:
        return None
    return (margin / resale).quantize(RATE_PLACES, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class MarginRow:
    """One section of the invoice beside its statement."""

    sub_account_id: int | None
    name: str
    kind: str
    cost: Decimal
    resale: Decimal
    has_statement: bool

    @property
    def is_pool(self) -> bool:
        return self.kind == SubAccountKind.AVAILABLE

    @property
    def margin(self) -> Decimal:
        return self.resale - self.cost

    @property
    def margin_rate(self) -> Decimal | None:
        return margin_rate(self.margin, self.resale)


@dataclass(slots=True)
class Margins:
    """The margins of one partner's period: rows in invoice order (Available first)."""

    partner: Partner
    period: dt.date  # the 1st of the month
    invoice: Invoice | None
    currency: str
    rows: list[MarginRow] = field(default_factory=list)

    @property
    def cost(self) -> Decimal:
        return sum((r.cost for r in self.rows), Decimal(0))

    @property
    def resale(self) -> Decimal:
        return sum((r.resale for r in self.rows), Decimal(0))

    @property
    def margin(self) -> Decimal:
        return self.resale - self.cost

    @property
    def margin_rate(self) -> Decimal | None:
        return margin_rate(self.margin, self.resale)


def margin_periods(*, principal: Principal) -> list[dt.date]:
    """The months the principal's partner has an invoice for, newest first (what the
    Margins page offers)."""
    require(can_read_margins(principal), "Only admins and billing people read margins.")
    partner = partner_for(principal)
    return list(
        Invoice.objects.visible_to(principal)
        .filter(partner_id=partner.pk)
        .order_by("-period_month")
        .values_list("period_month", flat=True)
    )


def margins_for_period(*, principal: Principal, period: dt.date | None) -> Margins:
    """The margins of ``period`` (the 1st of a month) for the principal's partner; with
    ``period`` None, those of its latest invoice (the current cycle when it has none)."""
    require(can_read_margins(principal), "Only admins and billing people read margins.")
    partner = partner_for(principal)
    invoices = Invoice.objects.visible_to(principal).filter(partner_id=partner.pk)
    if period is None:
        invoice = invoices.order_by("-period_month").first()
        period = (
            invoice.period_month
            if invoice is not None
            else cycle_containing(clock.now(), partner.timezone).first_day
        )
    else:
        invoice = invoices.filter(period_month=period).first()
    if invoice is None:
        return Margins(partner=partner, period=period, invoice=None, currency=partner.currency)
    statement_total = Statement.objects.filter(
        partner_id=invoice.partner_id,
        invoice_id=invoice.pk,
        sub_account_id=OuterRef("sub_account_id"),
    ).values("total")[:1]
    sections = (
        InvoiceSection.objects.filter(partner_id=invoice.partner_id, invoice_id=invoice.pk)
        .annotate(resale=Subquery(statement_total))
        .order_by("position", "pk")
        .values_list("sub_account_id", "name", "kind", "total", "resale")
    )
    rows = [
        MarginRow(
            sub_account_id=sub_account_id,
            name=name,
            kind=kind,
            cost=total,
            resale=resale if resale is not None else Decimal(0),
            has_statement=resale is not None,
        )
        for sub_account_id, name, kind, total, resale in sections
    ]
    return Margins(
        partner=partner, period=period, invoice=invoice, currency=invoice.currency, rows=rows
    )
