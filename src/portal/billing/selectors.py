"""Scoped reads of billing for people: invoices with their sections and items, a
sub-account's sections, discounts, the credit ledger and balances, and the billing
settings. Each checks the principal's role and starts from ``visible_to(principal)``
(or ``partner_for(principal)``); the helpers that take an invoice or a section
(``invoice_sections``, ``invoice_section_items``, …) are given one read that way, and
name its partner only to lead the index.

What an invoice holds is computed by :mod:`portal.billing.drafting`; the billing summary
is :mod:`portal.billing.summary`; which cycles are due, :mod:`portal.billing.cycles_due`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, F, Prefetch, QuerySet, Sum, Window

from portal.accounts.policies import require
from portal.billing.drafting import credit_balances, invoice_for_cycle, price_for_cycle
from portal.billing.models import (
    CreditEntry,
    Discount,
    Invoice,
    InvoiceItem,
    InvoiceSection,
    InvoiceStatus,
    PriceChange,
)
from portal.billing.names import named_sub_accounts, section_name
from portal.billing.periods import Cycle, cycle_containing
from portal.billing.policies import can_read_adjustments, can_read_invoices
from portal.core import clock
from portal.core.errors import BadRequest, NotFound
from portal.core.principal import Principal
from portal.core.tenancy import db_id
from portal.partners.models import Partner
from portal.partners.selectors import partner_for

# --- Invoices -----------------------------------------------------------------------------


def invoice_list(*, principal: Principal, status: str | None = None) -> QuerySet[Invoice]:
    require(can_read_invoices(principal), "Your role may not read invoices.")
    qs = Invoice.objects.visible_to(principal)
    if status:
        if status not in InvoiceStatus.values:
            raise BadRequest(f"Unknown status {status!r}; use draft or finalized.")
        qs = qs.filter(status=status)
    return qs.order_by("-period_month", "partner_id", "-pk")


def invoice_get(*, principal: Principal, invoice_id: int) -> Invoice:
    """The invoice with its sections and their items, in three queries whatever its size."""
    require(can_read_invoices(principal), "Your role may not read invoices.")
    qs = Invoice.objects.prefetch_related(
        Prefetch(
            "sections",
            queryset=InvoiceSection.objects.order_by("position", "pk").prefetch_related(
                Prefetch(
                    "items",
                    queryset=InvoiceItem.objects.select_related("line")
                    .only(*_ITEM_FIELDS)
                    .order_by("pk"),
                )
            ),
        )
    )
    return qs.get_visible(principal, invoice_id, what="Invoice")


def invoice_head_get(*, principal: Principal, invoice_id: object) -> Invoice:
    """The invoice alone, without its sections: the invoice page reads those a page at a
    time (:func:`invoice_section_page`), an invoice may have 10,000 of them."""
    require(can_read_invoices(principal), "Your role may not read invoices.")
    return Invoice.objects.get_visible(principal, invoice_id, what="Invoice")


@dataclass(frozen=True, slots=True)
class SectionSums:
    """The sums of an invoice's section columns: the summary table's totals row."""

    count: int
    line_quantity: int
    recurring: Decimal
    prorations: Decimal
    discounts: Decimal
    credits: Decimal
    total: Decimal


def invoice_section_sums(invoice: Invoice) -> SectionSums:
    """Each column of the invoice's sections summed, in one aggregate. Every item belongs
    to a section (whole-invoice discounts and the partner's credit are spread over them),
    so ``total`` is the invoice's total."""
    zero = Decimal(0)
    sums = InvoiceSection.objects.filter(partner_id=invoice.partner_id, invoice=invoice).aggregate(
        count=Count("id"),
        line_quantity=Sum("line_quantity"),
        recurring=Sum("recurring"),
        prorations=Sum("prorations"),
        discounts=Sum("discounts"),
        credits=Sum("credits"),
        total=Sum("total"),
    )
    return SectionSums(
        count=sums["count"],
        line_quantity=sums["line_quantity"] or 0,
        **{k: sums[k] or zero for k in ("recurring", "prorations", "discounts", "credits")},
        total=sums["total"] or zero,
    )


def invoice_sections(invoice: Invoice) -> QuerySet[InvoiceSection]:
    """The invoice's sections in invoice order (Available first), without their items."""
    return InvoiceSection.objects.filter(partner_id=invoice.partner_id, invoice=invoice).order_by(
        "position", "pk"
    )


def invoice_section_get(
    *, principal: Principal, invoice_id: object, sub_account_id: object
) -> InvoiceSection:
    """A sub-account's section of an invoice, with its invoice (one query). The
    sub-account's id names it: the address stays the same for every invoice, and a
    sub-account's page can link to its section of each."""
    require(can_read_invoices(principal), "Your role may not read invoices.")
    invoice_key = db_id(invoice_id)
    found = (
        InvoiceSection.objects.visible_to(principal)
        .filter_id("sub_account_id", sub_account_id)
        .select_related("invoice")
        .filter(invoice_id=invoice_key)
        .first()
        if invoice_key is not None
        else None
    )
    if found is None:
        raise NotFound(f"Invoice {invoice_id} has no section for sub-account {sub_account_id}.")
    return found


def invoice_section_items(section: InvoiceSection) -> QuerySet[InvoiceItem]:
    """A section's items in invoice order, each with its line's number."""
    return (
        InvoiceItem.objects.filter(partner_id=section.partner_id, section=section)
        .select_related("line")
        .only(*_ITEM_FIELDS)
        .order_by("pk")
    )


def invoice_items_of(sections: list[InvoiceSection], limit: int) -> list[InvoiceItem]:
    """The items of ``sections`` (of one invoice) in invoice order, at most ``limit``:
    one query, whatever the sections hold."""
    if not sections:
        return []
    return list(
        InvoiceItem.objects.filter(
            partner_id=sections[0].partner_id, section_id__in=[s.pk for s in sections]
        )
        .select_related("line")
        .only(*_ITEM_FIELDS)
        .order_by("pk")[:limit]
    )


_ITEM_FIELDS = (
    "pk",
    "section_id",
    "kind",
    "line_id",
    "line__number",
    "other_sub_account_id",
    "other_name",
    "service_start",
    "service_end",
    "day",
    "days",
    "quantity",
    "unit_price",
    "amount",
    "description",
    "discount_id",
    "credit_entry_id",
)


def sub_account_invoice_sections(
    *, principal: Principal, sub_account_id: int
) -> QuerySet[InvoiceSection]:
    """One sub-account's section of every invoice, newest first, with its invoice."""
    require(can_read_invoices(principal), "Your role may not read invoices.")
    return (
        InvoiceSection.objects.visible_to(principal)
        .filter_id("sub_account_id", sub_account_id)
        .select_related("invoice")
        .order_by("-invoice__period_month", "-invoice_id")
    )


# --- Discounts and credits ----------------------------------------------------------------


def discount_list(
    *, principal: Principal, sub_account_id: object = None, state: str | None = None
) -> QuerySet[Discount]:
    """Discounts newest first; ``state`` ``active`` (not removed) or ``removed``."""
    require(can_read_adjustments(principal), "Your role may not see discounts.")
    qs = Discount.objects.visible_to(principal).select_related("sub_account")
    if sub_account_id is not None:
        qs = qs.filter_id("sub_account_id", sub_account_id)
    if state == "active":
        qs = qs.filter(removed_at__isnull=True)
    elif state == "removed":
        qs = qs.filter(removed_at__isnull=False)
    elif state:
        raise BadRequest(f"Unknown state {state!r}; use active or removed.")
    return qs.order_by("-pk")


def discount_get(*, principal: Principal, discount_id: object) -> Discount:
    require(can_read_adjustments(principal), "Your role may not see discounts.")
    return Discount.objects.select_related("sub_account").get_visible(
        principal, discount_id, what="Discount"
    )


def credit_ledger(*, principal: Principal, sub_account_id: object = None) -> QuerySet[CreditEntry]:
    """Ledger entries newest first, each with ``balance``: its pool's running balance
    after it (a window sum in id order, so it is derived, never stored)."""
    require(can_read_adjustments(principal), "Your role may not see credits.")
    qs = CreditEntry.objects.visible_to(principal)
    if sub_account_id is not None:
        qs = qs.filter_id("sub_account_id", sub_account_id)
    running = Window(
        Sum("amount"),
        partition_by=[F("partner_id"), F("sub_account_id")],
        order_by=F("id").asc(),
    )
    return qs.annotate(balance=running).select_related("sub_account", "invoice").order_by("-pk")


@dataclass(frozen=True, slots=True)
class CreditBalance:
    sub_account_id: int | None
    name: str
    balance: Decimal


def credit_balance_list(*, principal: Principal) -> tuple[Partner, list[CreditBalance]]:
    """The partner's credit balances, its own first (always listed), then each
    sub-account with credit left or ever granted, by name."""
    require(can_read_adjustments(principal), "Your role may not see credits.")
    partner = partner_for(principal)
    balances = credit_balances(partner_id=partner.pk, keep_zero=True)
    subs = named_sub_accounts(partner.pk, {pk for pk in balances if pk is not None})
    rows = [CreditBalance(None, partner.name, balances.get(None, Decimal(0)))]
    rows += sorted(
        (CreditBalance(pk, section_name(subs[pk]), b) for pk, b in balances.items() if pk),
        key=lambda r: (r.name.lower(), r.sub_account_id),
    )
    return partner, rows


# --- Billing settings ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BillingSettings:
    partner: Partner
    current_cycle: Cycle
    current_price: Decimal
    next_price: Decimal
    price_changes: list[PriceChange]


def billing_settings(*, principal: Principal, now: dt.datetime | None = None) -> BillingSettings:
    """The price of the current cycle and of the next, and the policies."""
    require(can_read_adjustments(principal), "Your role may not see billing settings.")
    partner = partner_for(principal)
    cycle = cycle_containing(now or clock.now(), partner.timezone)
    invoice = invoice_for_cycle(partner.pk, cycle)
    current = invoice.unit_price if invoice is not None else price_for_cycle(partner, cycle)
    return BillingSettings(
        partner=partner,
        current_cycle=cycle,
        current_price=current,
        next_price=price_for_cycle(partner, cycle.next()),
        price_changes=list(
            PriceChange.objects.visible_to(principal).order_by("-effective_month", "-pk")
        ),
    )
