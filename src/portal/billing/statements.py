"""Client statements: what a partner charges each of its clients for a cycle, issued with
the partner's invoice of that cycle (domain §8.1).

One engine: a statement is priced from the draft its invoice was stored from, the same
lines held at the cycle's start and the same holder changes of the cycle before, through
the same :func:`~portal.billing.drafting.proration_items`, at the resale prices in force
for the cycle each item charges (recurring) or corrects (prorations). So every statement
item has exactly one invoice item with the same line, days and kind; a sub-account that
is not priced for a cycle simply gets no item for it, and one with no item gets no
statement. The provider's discounts, credits and price never appear.

Internal to billing: :func:`statements_store` runs inside the invoice's own transaction
(``billing.invoicing``), whose caller has already checked who may issue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Max

from portal.billing.drafting import DraftInvoice, DraftItem, proration_items
from portal.billing.models import (
    PRORATION_KINDS,
    Invoice,
    InvoiceItemKind,
    Statement,
    StatementItem,
)
from portal.billing.money import plain_amount, quantize
from portal.billing.resale import ResalePrices, resale_prices_in_force_for
from portal.core.bulk import copy_binary
from portal.partners.models import Partner, SubAccount, SubAccountKind

_BATCH = 2000


@dataclass(slots=True)
class DraftStatement:
    """A statement before it is stored (see :class:`~portal.billing.models.Statement`)."""

    sub_account_id: int
    unit_price: Decimal | None
    line_quantity: int = 0
    items: list[DraftItem] = field(default_factory=list)

    @property
    def recurring(self) -> Decimal:
        return sum(
            (i.amount for i in self.items if i.kind == InvoiceItemKind.RECURRING), Decimal(0)
        )

    @property
    def prorations(self) -> Decimal:
        return sum((i.amount for i in self.items if i.kind in PRORATION_KINDS), Decimal(0))

    @property
    def total(self) -> Decimal:
        return sum((i.amount for i in self.items), Decimal(0))


def statement_drafts(
    draft: DraftInvoice, *, prices: ResalePrices, previous_prices: ResalePrices
) -> list[DraftStatement]:
    """The client statements of ``draft``'s cycle, in its sections' order: ``prices`` are
    the resale prices in force for the cycle (recurring), ``previous_prices`` those of the
    cycle before (its prorations). Nothing stored."""
    partner, cycle = draft.partner, draft.cycle
    currency = partner.currency
    pool = {s.sub_account_id for s in draft.sections if s.kind == SubAccountKind.AVAILABLE}
    statements: dict[int, DraftStatement] = {}

    def statement(sub_account_id: int) -> DraftStatement:
        found = statements.get(sub_account_id)
        if found is None:
            found = statements[sub_account_id] = DraftStatement(
                sub_account_id=sub_account_id,
                unit_price=prices.price_of(sub_account_id),
                line_quantity=draft.held.get(sub_account_id, 0),
            )
        return found

    first, last = cycle.first_day, cycle.date_of(cycle.days)
    for sub_account_id, count in draft.held.items():
        price = None if sub_account_id in pool else prices.price_of(sub_account_id)
        if price is None:
            continue
        plural = "line" if count == 1 else "lines"
        statement(sub_account_id).items.append(
            DraftItem(
                sub_account_id=sub_account_id,
                kind=InvoiceItemKind.RECURRING,
                amount=quantize(count * price, currency),
                unit_price=price,
                quantity=count,
                service_start=first,
                service_end=last,
                days=cycle.days,
                description=(
                    f"{count} {plural} × {plain_amount(price, currency)} {currency} "
                    f"for {first:%B %Y}"
                ),
            )
        )

    def previous_price_of(sub_account_id: int) -> Decimal | None:
        return None if sub_account_id in pool else previous_prices.price_of(sub_account_id)

    for item in proration_items(
        partner=partner,
        cycle=cycle.previous(),
        price=previous_price_of,
        changes=draft.changes,
        names=None,
    ):
        statement(item.sub_account_id).items.append(item)
    order = {s.sub_account_id: s.position for s in draft.sections}
    return sorted(
        (s for s in statements.values() if s.items), key=lambda s: order[s.sub_account_id]
    )


def draft_statements_for(draft: DraftInvoice) -> list[DraftStatement]:
    """:func:`statement_drafts` at the resale prices in force for ``draft``'s cycle and the
    one before, read from their history (one query)."""
    month, previous = draft.cycle.first_day, draft.cycle.previous().first_day
    in_force = resale_prices_in_force_for(draft.partner.pk, (month, previous))
    return statement_drafts(draft, prices=in_force[month], previous_prices=in_force[previous])


# The columns of a stored statement item, in the order of _item_rows' tuples.
_ITEM_COLUMNS = (
    "statement_id",
    "partner_id",
    "kind",
    "line_id",
    "service_start",
    "service_end",
    "day",
    "days",
    "quantity",
    "unit_price",
    "amount",
    "description",
)


def statements_store(*, partner: Partner, invoice: Invoice, draft: DraftInvoice) -> int:
    """Issue the client statements of ``invoice`` (just stored from ``draft``, in the
    same transaction): each numbered after its sub-account's last one, the reseller and
    the client snapshotted. Returns how many were issued. The invoice's unique key already
    makes a second issue impossible; the statements' ``(invoice, sub_account)`` key would
    refuse a second statement even then."""
    drafts = draft_statements_for(draft)
    if not drafts:
        return 0
    ids = [d.sub_account_id for d in drafts]
    clients = {
        row["pk"]: row
        for row in SubAccount.objects.filter(partner_id=partner.pk, pk__in=ids).values(
            "pk", "name", "contact_name", "contact_email", "contact_phone", "internal_reference"
        )
    }
    last_numbers = dict(
        Statement.objects.filter(partner_id=partner.pk)
        .values("sub_account_id")
        .annotate(last=Max("number"))
        .order_by()
        .values_list("sub_account_id", "last")
    )
    reseller = partner.client_facing_name
    stored = Statement.objects.bulk_create(
        [
            Statement(
                partner_id=partner.pk,
                invoice=invoice,
                sub_account_id=d.sub_account_id,
                number=last_numbers.get(d.sub_account_id, 0) + 1,
                period_month=invoice.period_month,
                period_start=invoice.period_start,
                period_end=invoice.period_end,
                timezone=invoice.timezone,
                currency=invoice.currency,
                unit_price=d.unit_price,
                partner_name=reseller,
                name=clients[d.sub_account_id]["name"],
                contact_name=clients[d.sub_account_id]["contact_name"],
                contact_email=clients[d.sub_account_id]["contact_email"],
                contact_phone=clients[d.sub_account_id]["contact_phone"],
                internal_reference=clients[d.sub_account_id]["internal_reference"],
                line_quantity=d.line_quantity,
                recurring=d.recurring,
                prorations=d.prorations,
                total=d.total,
                issued_at=invoice.issued_at,
            )
            for d in drafts
        ],
        batch_size=_BATCH,
    )
    _insert_items(
        (
            statement.pk,
            partner.pk,
            i.kind,
            i.line_id,
            i.service_start,
            i.service_end,
            i.day,
            i.days,
            i.quantity,
            i.unit_price,
            i.amount,
            i.description,
        )
        for statement, d in zip(stored, drafts, strict=True)
        for i in d.items
    )
    return len(stored)


def _insert_items(rows: Any) -> None:
    """Store statement items: one binary ``COPY`` on PostgreSQL (as invoice items are),
    ``bulk_create`` elsewhere."""
    if connection.vendor == "postgresql":
        copy_binary(StatementItem._meta.db_table, _ITEM_COLUMNS, rows)
        return
    StatementItem.objects.bulk_create(
        (StatementItem(**dict(zip(_ITEM_COLUMNS, row, strict=True))) for row in rows),
        batch_size=_BATCH,
    )
