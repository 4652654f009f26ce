"""Writes for billing: issuing and finalising invoices, discounts, credits and the
partner's price and policies, one function per change.

An invoice is computed from assignment history by :func:`selectors.invoice_draft`
and stored in one transaction with one audit event. Issuing is idempotent: the
unique ``(partner, period_month)`` key means a second run, or a concurrent one,
returns the invoice already there, unchanged, whatever its status.

Discounts and credits are applied when an invoice is issued (as a draft): a grant
never changes an invoice already issued, draft or finalized; it applies from the
next invoice issued. The credits an invoice takes are appended to the credit ledger
in the same transaction as the invoice, so they exist exactly when the invoice does.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from django.db import IntegrityError, connection, transaction
from django.db.models import BigIntegerField, Case, F, Max, Sum, Value, When

from portal.accounts.policies import require
from portal.accounts.principal import Principal
from portal.audit.services import Change, audit_record, audit_record_many
from portal.billing.models import (
    CreditEntry,
    CreditEntryKind,
    Discount,
    DiscountKind,
    Invoice,
    InvoiceItem,
    InvoiceItemKind,
    InvoiceSection,
    InvoiceStatus,
    PriceChange,
    SummaryAccrual,
    SummaryAccrualRow,
)
from portal.billing.money import format_money, minor_units, quantize
from portal.billing.periods import Cycle, cycle_containing
from portal.billing.policies import (
    can_change_billing_settings,
    can_finalize_invoices,
    can_grant_adjustments,
    can_issue_invoices,
)
from portal.billing.selectors import (
    ACCRUAL_LAG,
    DraftInvoice,
    accrual_changes,
    accrual_key,
    cycle_has_charges,
    invoice_as_of,
    invoice_cycles_due,
    invoice_draft,
    invoice_for_cycle,
    next_invoice_cycle,
    price_for_cycle,
    proration_parts_sql,
)
from portal.core import clock
from portal.core.errors import Conflict, Invalid
from portal.core.retry import retry_on_lost_race
from portal.core.text import clean_text
from portal.partners.models import Partner, SubAccount, SubAccountStatus

logger = logging.getLogger("portal.billing")

FINALIZE_AFTER = dt.timedelta(days=3)
_BATCH = 2000
# Sub-accounts per statement when the worker adds changes to its precomputed summary.
_CHANGES_BATCH = 500


class BillingRunIncomplete(Exception):
    """Some partners could not be invoiced; the others were (see ``issued``)."""

    def __init__(self, issued: list[Invoice], failed: list[str]) -> None:
        super().__init__(f"Could not issue invoices for: {', '.join(failed)}.")
        self.issued = issued
        self.failed = failed


def invoice_issue(*, principal: Principal, partner: Partner, cycle: Cycle) -> Invoice:
    """Issue the invoice of ``cycle`` (in the partner's timezone) for ``partner``, in advance.

    Recurring charges for the lines held at the cycle's start, prorations for the
    cycle before; see :mod:`portal.billing.selectors`. Returns the existing invoice
    unchanged when the cycle is already invoiced.

    This issues exactly the cycle asked for, even one with nothing to bill (a 0.00
    invoice). Billing runs go through :func:`invoices_issue_due`, which issues every
    cycle due since a partner's latest invoice, oldest first, and skips empty ones.
    """
    invoice, _ = _issue(principal=principal, partner=partner, cycle=cycle, skip_empty=False)
    assert invoice is not None  # only skip_empty leaves a cycle without an invoice
    return invoice


@retry_on_lost_race
def _issue(
    *, principal: Principal, partner: Partner, cycle: Cycle, skip_empty: bool
) -> tuple[Invoice | None, bool]:
    """The invoice of the cycle and whether this call created it; None (and nothing
    stored) when ``skip_empty`` and the cycle has nothing to bill."""
    require(can_issue_invoices(principal), "Only the provider issues invoices.")
    if cycle.tz != partner.timezone:
        raise Invalid(
            f"Cycle {cycle} is not in the partner's timezone ({partner.timezone}).", field="cycle"
        )
    if clock.now() < cycle.start:
        raise Conflict(f"The invoice for {cycle} is not due before {cycle.start.isoformat()}.")
    existing = invoice_for_cycle(partner.pk, cycle)
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            return _create(
                principal=principal, partner_id=partner.pk, cycle=cycle, skip_empty=skip_empty
            )
    except IntegrityError:
        # A concurrent run stored it first: its invoice is the answer.
        existing = invoice_for_cycle(partner.pk, cycle)
        if existing is None:
            raise
        return existing, False


def _create(
    *, principal: Principal, partner_id: int, cycle: Cycle, skip_empty: bool
) -> tuple[Invoice | None, bool]:
    # The partner's row serialises issuing per partner (numbers, price read once);
    # SQLite's IMMEDIATE transaction already does. NO KEY UPDATE, as every lock
    # (docs/architecture.md): rows referencing the partner (periods, rollups) can still
    # be inserted while an invoice is computed.
    partner = Partner.objects.select_for_update(no_key=True).get(pk=partner_id)
    existing = invoice_for_cycle(partner.pk, cycle)
    if existing is not None:
        return existing, False
    # A cycle already over is being caught up: issued as it would have been at its start.
    draft = invoice_draft(partner=partner, cycle=cycle, as_of=invoice_as_of(cycle, clock.now()))
    if skip_empty and not draft.sections:
        # No line held at the start, nothing to prorate: no invoice, no number spent.
        # Once the cycle has started this cannot change (the history it reads is closed).
        return None, False
    invoice = _store(principal=principal, partner=partner, draft=draft)
    audit_record(
        principal=principal,
        partner_id=partner.pk,
        action="invoice.issue",
        object_type="invoice",
        object_id=invoice.pk,
        at=invoice.issued_at,
        data={
            "number": invoice.number,
            "period_month": f"{cycle.first_day:%Y-%m}",
            "period_start": invoice.period_start.isoformat(),
            "period_end": invoice.period_end.isoformat(),
            "currency": invoice.currency,
            "unit_price": str(invoice.unit_price),
            "total": str(invoice.total),
            "discounts": str(sum((s.discounts for s in draft.sections), Decimal(0))),
            "credits": str(sum((s.credits for s in draft.sections), Decimal(0))),
            "sections": len(draft.sections),
            "items": sum(len(s.items) for s in draft.sections),
        },
    )
    return invoice, True


def _store(*, principal: Principal, partner: Partner, draft: DraftInvoice) -> Invoice:
    cycle = draft.cycle
    last = Invoice.objects.filter(partner_id=partner.pk).aggregate(m=Max("number"))["m"]
    invoice = Invoice.objects.create(
        partner=partner,
        number=(last or 0) + 1,
        period_month=cycle.first_day,
        period_start=cycle.start,
        period_end=cycle.end,
        timezone=cycle.tz,
        currency=partner.currency,
        unit_price=draft.unit_price,
        issued_at=clock.now(),
        total=draft.total,
    )
    sections = InvoiceSection.objects.bulk_create(
        [
            InvoiceSection(
                invoice=invoice,
                partner_id=partner.pk,
                sub_account_id=s.sub_account_id,
                name=s.name,
                kind=s.kind,
                position=s.position,
                line_quantity=s.line_quantity,
                recurring=s.recurring,
                prorations=s.prorations,
                discounts=s.discounts,
                credits=s.credits,
                total=s.total,
            )
            for s in draft.sections
        ],
        batch_size=_BATCH,
    )
    # One ledger entry per balance drawn on; the partial unique keys on (invoice, pool)
    # refuse a second one, so a credit can never be applied to this invoice twice.
    entries = {
        pool: CreditEntry.objects.create(
            partner=partner,
            sub_account_id=pool,
            kind=CreditEntryKind.APPLY,
            amount=-amount,
            invoice=invoice,
            reason=f"Applied to invoice {invoice.number} ({cycle.first_day:%Y-%m})",
            created_at=invoice.issued_at,
            created_by=principal.label,
        )
        for pool, amount in draft.credits_applied().items()
        if amount
    }
    _insert_items(
        (
            stored.pk,
            partner.pk,
            i.kind,
            i.line_id,
            i.other_sub_account_id,
            i.other_name,
            i.service_start,
            i.service_end,
            i.day,
            i.days,
            i.quantity,
            i.unit_price,
            i.amount,
            i.description,
            i.discount_id,
            entries[i.credit_pool].pk if i.kind == InvoiceItemKind.CREDIT else None,
        )
        for stored, s in zip(sections, draft.sections, strict=True)
        for i in s.items
    )
    return invoice


# The columns _insert_items writes, in the order of its rows.
_ITEM_COLUMNS = (
    "section_id",
    "partner_id",
    "kind",
    "line_id",
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


def _insert_items(rows: Iterable[tuple[Any, ...]]) -> None:
    """Store invoice items given as tuples of :data:`_ITEM_COLUMNS`.

    On PostgreSQL one ``COPY`` streams them: a partner with a million lines and
    100,000 moves has some 200,000 items, and building that many model objects for
    ``bulk_create`` cost more than a minute where ``COPY`` takes a few seconds (the
    table's CHECK constraints still apply). Elsewhere (SQLite) ``bulk_create``.
    """
    if connection.vendor == "postgresql":
        qn = connection.ops.quote_name
        table = qn(InvoiceItem._meta.db_table)
        columns = ", ".join(qn(c) for c in _ITEM_COLUMNS)
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return
    InvoiceItem.objects.bulk_create(
        (InvoiceItem(**dict(zip(_ITEM_COLUMNS, row, strict=True))) for row in rows),
        batch_size=_BATCH,
    )


def invoices_issue_due(*, principal: Principal, now: dt.datetime | None = None) -> list[Invoice]:
    """Issue, for every partner, every invoice due by ``now`` and missing (SPEC §3, "no
    month is ever lost"): each cycle since its latest invoice up to the one containing
    ``now``, oldest first, each exactly as it would have been issued on time (history
    decides what it holds), in its own transaction. A cycle with nothing to bill is
    skipped without spending a number.

    Returns the invoices this call created, per partner oldest first. A partner that
    fails is logged and the others are still invoiced, then
    :class:`BillingRunIncomplete` reports it; what was issued before the failure stays,
    and a rerun resumes at the cycle after its latest invoice.
    """
    require(can_issue_invoices(principal), "Only the provider issues invoices.")
    now = now or clock.now()
    partners = list(Partner.objects.order_by("pk"))
    current = {p.pk: cycle_containing(now, p.timezone) for p in partners}
    # The usual run finds every current cycle invoiced: one query, then nothing to do.
    invoiced = set(
        Invoice.objects.filter(
            period_month__in={c.first_day for c in current.values()}
        ).values_list("partner_id", "period_month")
    )
    issued: list[Invoice] = []
    failed: list[str] = []
    for partner in partners:
        if (partner.pk, current[partner.pk].first_day) in invoiced:
            continue
        cycle = current[partner.pk]
        try:
            for cycle in invoice_cycles_due(partner, now):
                invoice, created = _issue(
                    principal=principal, partner=partner, cycle=cycle, skip_empty=True
                )
                if created and invoice is not None:
                    issued.append(invoice)
        except Exception:
            logger.exception("Could not issue the %s invoice of partner %s", cycle, partner.slug)
            failed.append(partner.slug)
    if failed:
        raise BillingRunIncomplete(issued, failed)
    return issued


@retry_on_lost_race
@transaction.atomic
def invoice_finalize(*, principal: Principal, invoice: Invoice) -> Invoice:
    """Draft → finalized, once; the invoice never changes afterwards (409 when not a draft)."""
    require(can_finalize_invoices(principal), "Only provider staff finalize invoices.")
    current = Invoice.objects.get_visible(principal, invoice.pk, what="Invoice")
    at = clock.now()
    finalized = Invoice.objects.filter(pk=current.pk, status=InvoiceStatus.DRAFT).update(
        status=InvoiceStatus.FINALIZED, finalized_at=at
    )
    if not finalized:
        raise Conflict(f"Invoice {current.number} is already finalized.")
    audit_record(
        principal=principal,
        partner_id=current.partner_id,
        action="invoice.finalize",
        object_type="invoice",
        object_id=current.pk,
        at=at,
        data={
            "number": current.number,
            "before": {"status": InvoiceStatus.DRAFT},
            "after": {"status": InvoiceStatus.FINALIZED},
        },
    )
    current.refresh_from_db()
    return current


@retry_on_lost_race
@transaction.atomic
def invoices_finalize_due(*, principal: Principal, now: dt.datetime | None = None) -> int:
    """Finalize every draft issued at least :data:`FINALIZE_AFTER` ago. Returns how many.

    Set-based: one conditional ``UPDATE`` per batch and one audit event per invoice.
    """
    require(can_finalize_invoices(principal), "Only provider staff finalize invoices.")
    at = now or clock.now()
    due = list(
        Invoice.objects.select_for_update(no_key=True)
        .filter(status=InvoiceStatus.DRAFT, issued_at__lte=at - FINALIZE_AFTER)
        .order_by("pk")
        .values_list("pk", "partner_id", "number")
    )
    by_partner: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for pk, partner_id, number in due:
        by_partner[partner_id].append((pk, number))
    done = 0
    for partner_id, invoices in sorted(by_partner.items()):
        for batch in _batches(invoices):
            done += Invoice.objects.filter(
                pk__in=[pk for pk, _ in batch], status=InvoiceStatus.DRAFT
            ).update(status=InvoiceStatus.FINALIZED, finalized_at=at)
            audit_record_many(
                principal=principal,
                partner_id=partner_id,
                action="invoice.finalize",
                at=at,
                changes=(
                    Change(
                        "invoice",
                        pk,
                        {
                            "number": number,
                            "before": {"status": InvoiceStatus.DRAFT},
                            "after": {"status": InvoiceStatus.FINALIZED},
                        },
                    )
                    for pk, number in batch
                ),
            )
    return done


def _batches(rows: Sequence[tuple[int, int]]) -> list[Sequence[tuple[int, int]]]:
    return [rows[i : i + _BATCH] for i in range(0, len(rows), _BATCH)]


# --- Discounts, credits, price and policies ---------------------------------------------

MAX_AMOUNT = Decimal("100000000")
MAX_DISCOUNT_CYCLES = 120


def _clean_amount(value: Any, *, field: str, label: str, places: int, unit: str) -> Decimal:
    """A positive number with at most ``places`` decimals (never silently rounded)."""
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise Invalid(f"{label} {value!r} is not a number.", field=field) from None
    if not amount.is_finite() or amount <= 0 or amount >= MAX_AMOUNT:
        raise Invalid(f"{label} must be more than 0 and less than 100000000.", field=field)
    step = Decimal(1).scaleb(-places)
    if amount != amount.quantize(step, rounding=ROUND_HALF_UP):
        raise Invalid(f"{label} has more than {places} decimals ({unit}).", field=field)
    return amount.quantize(step)


def _sub_account_of(principal: Principal, partner: Partner, sub_account_id: Any) -> SubAccount:
    sub = (
        SubAccount.objects.visible_to(principal)
        .filter(partner_id=partner.pk)
        .get_visible(principal, sub_account_id, what="Sub-account")
    )
    if sub.status != SubAccountStatus.ACTIVE:
        raise Conflict(f"Sub-account {sub.display_name} is {sub.get_status_display().lower()}.")
    return sub


def _months_after(month: dt.date, count: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + count
    return dt.date(index // 12, index % 12 + 1, 1)


def _discount_data(d: Discount) -> dict[str, Any]:
    return {
        "name": d.name,
        "kind": d.kind,
        "value": str(d.value),
        "sub_account_id": d.sub_account_id,
        "first_month": f"{d.first_month:%Y-%m}",
        "last_month": f"{d.last_month:%Y-%m}" if d.last_month else None,
    }


def _why_not_from(partner: Partner, month: dt.date) -> str:
    """Why a discount cannot start with ``month``, a cycle before the next invoice's."""
    cycle = Cycle(month.year, month.month, partner.timezone)
    if invoice_for_cycle(partner.pk, cycle) is not None:
        return f"The invoice of {month:%Y-%m} is already issued and never changes"
    current = cycle_containing(clock.now(), partner.timezone)
    if cycle == current:
        return f"{month:%Y-%m} has nothing to bill, so it gets no invoice"
    if cycle in invoice_cycles_due(partner) and cycle_has_charges(partner, cycle):
        # Missed by billing (an outage): the next run issues it as it stood when due.
        return (
            f"The invoice of {month:%Y-%m}, not issued yet, was due on "
            f"{month:%Y-%m-%d}: billing issues it as it would have been then"
        )
    return f"{month:%Y-%m} had nothing to bill, so it got no invoice"


@retry_on_lost_race
@transaction.atomic
def discount_grant(
    *,
    principal: Principal,
    partner: Partner,
    kind: str,
    value: Decimal | str,
    name: str = "",
    sub_account_id: int | None = None,
    first_month: dt.date | None = None,
    cycles: int | None = None,
) -> Discount:
    """Grant a discount on recurring charges: ``percent`` (0 < value ≤ 100) or a fixed
    ``amount`` per invoice; partner-wide when ``sub_account_id`` is None.

    It applies to the invoices of ``cycles`` cycles (None = until removed) from
    ``first_month`` (default: the next invoice not issued yet). Invoices already issued
    are never changed, so a start whose invoice exists is refused.
    """
    require(can_grant_adjustments(principal), "Only provider staff grant discounts.")
    if kind not in DiscountKind.values:
        raise Invalid(f"Kind {kind!r} is not percent or amount.", field="kind")
    if kind == DiscountKind.PERCENT:
        amount = _clean_amount(
            value, field="value", label="Percentage", places=2, unit="a percentage"
        )
        if amount > 100:
            raise Invalid("A percentage discount is at most 100.", field="value")
    else:
        amount = _clean_amount(
            value,
            field="value",
            label="Amount",
            places=minor_units(partner.currency),
            unit=partner.currency,
        )
    sub = (
        _sub_account_of(principal, partner, sub_account_id) if sub_account_id is not None else None
    )
    upcoming = next_invoice_cycle(partner).first_day
    if first_month is None:
        first_month = upcoming
    elif first_month.day != 1:
        raise Invalid("The first cycle is given as a month (its 1st day).", field="first_month")
    elif first_month < upcoming:
        raise Invalid(
            f"{_why_not_from(partner, first_month)}; start from {upcoming:%Y-%m} or later.",
            field="first_month",
        )
    if cycles is not None and not 1 <= cycles <= MAX_DISCOUNT_CYCLES:
        raise Invalid(
            f"Cycles must be between 1 and {MAX_DISCOUNT_CYCLES}, or empty for “until removed”.",
            field="cycles",
        )
    if kind == DiscountKind.PERCENT:
        default_name = f"{amount.normalize():f}% discount"
    else:
        default_name = f"{format_money(amount, partner.currency)} discount"
    label = clean_text(name, field="name", label="Name", max_length=120) or default_name
    discount = Discount.objects.create(
        partner=partner,
        sub_account=sub,
        name=label,
        kind=kind,
        value=amount,
        first_month=first_month,
        last_month=_months_after(first_month, cycles - 1) if cycles else None,
        created_at=clock.now(),
        created_by=principal.label,
    )
    audit_record(
        principal=principal,
        partner_id=partner.pk,
        action="discount.grant",
        object_type="discount",
        object_id=discount.pk,
        sub_account_id=discount.sub_account_id,
        at=discount.created_at,
        data={"after": _discount_data(discount)},
    )
    return discount


@retry_on_lost_race
@transaction.atomic
def discount_remove(*, principal: Principal, discount_id: Any) -> Discount:
    """End a discount now: invoices issued from now on no longer apply it; those
    already issued keep it. 409 when it was already removed."""
    require(can_grant_adjustments(principal), "Only provider staff remove discounts.")
    discount = Discount.objects.select_for_update(no_key=True).get_visible(
        principal, discount_id, what="Discount"
    )
    at = clock.now()
    removed = Discount.objects.filter(pk=discount.pk, removed_at__isnull=True).update(
        removed_at=at, removed_by=principal.label
    )
    if not removed:
        raise Conflict(f"Discount “{discount.name}” was already removed.")
    audit_record(
        principal=principal,
        partner_id=discount.partner_id,
        action="discount.remove",
        object_type="discount",
        object_id=discount.pk,
        sub_account_id=discount.sub_account_id,
        at=at,
        data={"before": _discount_data(discount), "after": {"removed_at": at.isoformat()}},
    )
    discount.refresh_from_db()
    return discount


@retry_on_lost_race
@transaction.atomic
def credit_grant(
    *,
    principal: Principal,
    partner: Partner,
    amount: Decimal | str,
    reason: str,
    sub_account_id: int | None = None,
) -> CreditEntry:
    """Add credit to the partner's balance (or a sub-account's), with a reason.

    Appended to the ledger; the next invoices issued take it after discounts, never
    below zero, and carry what is left (an invoice already issued is not changed).
    """
    require(can_grant_adjustments(principal), "Only provider staff grant credits.")
    value = _clean_amount(
        amount,
        field="amount",
        label="Amount",
        places=minor_units(partner.currency),
        unit=partner.currency,
    )
    text = clean_text(reason, field="reason", label="Reason", max_length=500, required=True)
    if sub_account_id is not None:
        # A merge or deletion moving this sub-account's balance holds the partner's row
        # (credit_balances_transfer): waiting for it, the grant then sees the sub-account
        # merged or pending deletion (409) instead of landing on a balance already moved.
        Partner.objects.select_for_update(no_key=True).only("pk").get(pk=partner.pk)
    sub = (
        _sub_account_of(principal, partner, sub_account_id) if sub_account_id is not None else None
    )
    entry = CreditEntry.objects.create(
        partner=partner,
        sub_account=sub,
        kind=CreditEntryKind.GRANT,
        amount=value,
        reason=text,
        created_at=clock.now(),
        created_by=principal.label,
    )
    audit_record(
        principal=principal,
        partner_id=partner.pk,
        action="credit.grant",
        object_type="credit_entry",
        object_id=entry.pk,
        sub_account_id=entry.sub_account_id,
        at=entry.created_at,
        data={
            "after": {
                "amount": str(value),
                "currency": partner.currency,
                "reason": text,
                "sub_account_id": entry.sub_account_id,
            }
        },
    )
    return entry


def _clean_price(value: Any) -> Decimal:
    try:
        price = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise Invalid(f"Line price {value!r} is not a number.", field="line_price") from None
    if not price.is_finite() or price < 0 or price >= MAX_AMOUNT:
        raise Invalid("Line price must be between 0 and 99999999.", field="line_price")
    if price.as_tuple().exponent < -4:  # type: ignore[operator]
        raise Invalid("Line price has more than 4 decimal places.", field="line_price")
    return price


@retry_on_lost_race
@transaction.atomic
def partner_billing_update(
    *,
    principal: Principal,
    partner: Partner,
    line_price: Decimal | str | None = None,
    prorate_new_lines: bool | None = None,
    credit_disconnects: bool | None = None,
) -> Partner:
    """Change the partner's price per line and/or its proration policies (None = keep).

    A new price applies from the next cycle (a :class:`PriceChange` effective then):
    the invoice of the current cycle, issued or not, and every invoice already issued
    keep their price, and prorations always use the price charged for the cycle they
    correct. Policies apply to invoices issued from now on.
    """
    require(can_change_billing_settings(principal), "Only provider staff change prices.")
    locked = Partner.objects.select_for_update(no_key=True).get(pk=partner.pk)
    now = clock.now()
    current = cycle_containing(now, locked.timezone)
    before = {
        "line_price": str(price_for_cycle(locked, current.next())),
        "prorate_new_lines": locked.prorate_new_lines,
        "credit_disconnects": locked.credit_disconnects,
    }
    after: dict[str, Any] = {}
    if line_price is not None:
        price = _clean_price(line_price)
        previous = price_for_cycle(locked, current.next())
        if price != previous:
            change = PriceChange.objects.create(
                partner=locked,
                effective_month=current.next().first_day,
                previous_price=previous,
                price=price,
                created_at=now,
                created_by=principal.label,
            )
            locked.line_price = price
            after["line_price"] = str(price)
            after["effective_month"] = f"{change.effective_month:%Y-%m}"
    if prorate_new_lines is not None and prorate_new_lines != locked.prorate_new_lines:
        locked.prorate_new_lines = bool(prorate_new_lines)
        after["prorate_new_lines"] = locked.prorate_new_lines
    if credit_disconnects is not None and credit_disconnects != locked.credit_disconnects:
        locked.credit_disconnects = bool(credit_disconnects)
        after["credit_disconnects"] = locked.credit_disconnects
    if not after:
        return locked
    locked.save(update_fields=["line_price", "prorate_new_lines", "credit_disconnects"])
    audit_record(
        principal=principal,
        partner_id=locked.pk,
        action="partner.billing_update",
        object_type="partner",
        object_id=locked.pk,
        at=now,
        data={"before": {k: before[k] for k in after if k in before}, "after": after},
    )
    return locked


# --- Precomputed accruals for the billing summary -------------------------------------------


def proration_accruals_precompute(*, principal: Principal, now: dt.datetime | None = None) -> int:
    """For every partner, precompute the billing summary of its current cycle through
    ``now`` less ``ACCRUAL_LAG`` (:class:`SummaryAccrual`: a row per section of the
    cycle's invoice with the prorations accruing for the next invoice, and a row per other
    sub-account with accruing items), unless already summed: the billing summary then
    reads it in one statement and adds only the lines changed since
    (:func:`~portal.billing.selectors.accrual_rows`). Returns how many partners were
    summed.

    Set-based: a run adds to the partner's rows the changes since its previous run (the
    same :func:`~portal.billing.selectors.accrual_changes` a read adds), writing only the
    rows they change; the first run of a cycle, of each day, after the invoice is issued,
    or after a change of price or policy rewrites the rows in one ``INSERT … SELECT`` of
    the invoice's sections and every change of the cycle so far.

    A cache, not a state change: no audit event. Each partner in its own transaction,
    which locks the partner's summary row, so two runs at once sum in turn (the second
    finds the work done).
    """
    require(can_issue_invoices(principal), "Only the provider precomputes billing figures.")
    through = (now or clock.now()) - ACCRUAL_LAG
    summed = rewritten = 0
    for partner in Partner.objects.order_by("pk"):
        cycle = cycle_containing(through, partner.timezone)
        if through <= cycle.start:
            continue
        done = _summary_accrual_update(partner, cycle, through)
        summed += done is not None
        rewritten += bool(done)
    if rewritten and connection.vendor == "postgresql":
        # Fresh statistics for the rows rewritten, so that a read walks a summary's rows
        # by its index in order (stale ones, e.g. without autovacuum, make it sort them).
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(SummaryAccrualRow._meta.db_table)}")
    return summed


def _summary_accrual_update(partner: Partner, cycle: Cycle, through: dt.datetime) -> bool | None:
    """:func:`proration_accruals_precompute` for one partner: None when already done,
    True when its rows were rewritten, False when changes were added to them."""
    with transaction.atomic():
        summary = SummaryAccrual.objects.select_for_update().filter(partner=partner).first()
        fresh = summary is None
        if summary is None:
            try:
                with transaction.atomic():
                    summary = SummaryAccrual.objects.create(
                        **accrual_key(partner, cycle, Decimal(0)), through=through
                    )
            except IntegrityError:  # another run created it meanwhile: wait for it
                summary = SummaryAccrual.objects.select_for_update().get(partner=partner)
                fresh = False
        # Read under the lock: an invoice issued meanwhile is seen.
        invoice = invoice_for_cycle(partner.pk, cycle)
        price = invoice.unit_price if invoice is not None else price_for_cycle(partner, cycle)
        key = {**accrual_key(partner, cycle, price), "invoice_id": invoice.pk if invoice else None}
        same = not fresh and all(getattr(summary, k) == v for k, v in key.items())
        if same and summary.through == through:
            return None
        if (
            same
            and summary.through < through
            and cycle.day_of(summary.through) == cycle.day_of(through)
        ):
            changes = accrual_changes(
                partner=partner, cycle=cycle, price=price, since=summary.through, until=through
            )
            _summary_accrual_add(summary.pk, changes)
            rewritten = False
        else:
            # Afresh once a day: a change committed later than ACCRUAL_LAG after its
            # instant (a transaction that long) is missed by the sums for a day at most.
            _summary_accrual_rebuild(summary.pk, partner, cycle, price, key["invoice_id"], through)
            rewritten = True
        key.pop("partner_id")
        SummaryAccrual.objects.filter(pk=summary.pk).update(**key, through=through)
    return rewritten


def _summary_accrual_add(summary_id: int, changes: dict[int, tuple[int, int]]) -> None:
    """Adds ``changes`` (``{sub-account: (minor units, items)}``) to a summary's rows:
    per batch, which rows exist, one ``UPDATE`` of those and one ``INSERT`` of the others;
    then the rows without a section whose items all went (a move undone) are deleted."""
    rows = SummaryAccrualRow.objects.filter(summary_id=summary_id)
    pending = list(changes.items())
    for k in range(0, len(pending), _CHANGES_BATCH):
        batch = dict(pending[k : k + _CHANGES_BATCH])
        found = set(rows.filter(sub_account_id__in=batch).values_list("sub_account_id", flat=True))
        if found:

            def by_row(part: int, found: set[int] = found, batch: dict = batch) -> Case:
                whens = [When(sub_account_id=pk, then=Value(batch[pk][part])) for pk in found]
                return Case(*whens, default=Value(0), output_field=BigIntegerField())

            rows.filter(sub_account_id__in=found).update(
                accruing_units=F("accruing_units") + by_row(0),
                accruing_items=F("accruing_items") + by_row(1),
            )
        # A sub-account absent had no items: it gains some (never fewer than none).
        SummaryAccrualRow.objects.bulk_create(
            [
                SummaryAccrualRow(
                    summary_id=summary_id, sub_account_id=pk, accruing_units=u, accruing_items=n
                )
                for pk, (u, n) in batch.items()
                if pk not in found and n > 0
            ]
        )
    if changes:
        rows.filter(position__isnull=True, accruing_items__lte=0).delete()


def _summary_accrual_rebuild(
    summary_id: int,
    partner: Partner,
    cycle: Cycle,
    price: Decimal,
    invoice_id: int | None,
    through: dt.datetime,
) -> None:
    """Rewrites a summary's rows: a delete, then one ``INSERT … SELECT`` of the invoice's
    sections (in their order) with every change of the cycle through ``through`` summed
    per sub-account (:func:`~portal.billing.selectors.proration_parts_sql`), and a row per
    other sub-account with items."""
    SummaryAccrualRow.objects.filter(summary_id=summary_id).delete()
    found = proration_parts_sql(partner=partner, cycle=cycle, price=price, until=through)
    if found is None:  # through the cycle's start: nothing accrues
        return
    parts, params = found
    qn = connection.ops.quote_name
    rows = qn(SummaryAccrualRow._meta.db_table)
    sections = qn(InvoiceSection._meta.db_table)
    columns = ", ".join(
        qn(c)
        for c in (
            *("summary_id", "position", "sub_account_id", "name", "line_quantity"),
            *("recurring", "prorations", "discounts", "credits"),
            *("accruing_units", "accruing_items"),
        )
    )
    sql = f"""
        {parts},
        invoiced AS (
            SELECT ROW_NUMBER() OVER (ORDER BY {qn("position")}, id) AS ordinal, sub_account_id,
                   name, line_quantity, recurring, prorations, discounts, credits
            FROM {sections} WHERE invoice_id = %s
        )
        INSERT INTO {rows} ({columns})
        SELECT %s, s.ordinal, s.sub_account_id, s.name, s.line_quantity, s.recurring,
               s.prorations, s.discounts, s.credits, COALESCE(p.units, 0), COALESCE(p.items, 0)
        FROM invoiced s LEFT JOIN parts p ON p.sub_account_id = s.sub_account_id
        UNION ALL
        SELECT %s, NULL, p.sub_account_id, '', 0, 0, 0, 0, 0, p.units, p.items
        FROM parts p
        WHERE p.items > 0
          AND NOT EXISTS (SELECT 1 FROM invoiced s WHERE s.sub_account_id = p.sub_account_id)
    """  # noqa: S608 (only the statement's own text and quoted names are formatted in)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, invoice_id, summary_id, summary_id])


# --- Balances that follow their sub-account -----------------------------------------------


def credit_balances_transfer(
    *,
    principal: Principal,
    partner_id: int,
    sub_account_ids: Sequence[int],
    to_sub_account_id: int | None,
    event: str,
    reference: str,
    at: dt.datetime,
) -> list[dict[str, Any]]:
    """Move the whole credit balance of each of ``sub_account_ids`` to the balance of
    ``to_sub_account_id`` (None = the partner's): SPEC §3, a sub-account's balance
    follows it when it is merged (to the target) or deleted (to the partner).

    Part of the caller's state change (a merge completing, a deletion being scheduled),
    not a change of its own: it runs inside the caller's transaction and writes no audit
    event; the caller's one event carries what this returns, one
    ``{"sub_account_id", "name", "amount"}`` per balance moved (none when nothing was
    left). Each balance gives a pair of ``transfer`` ledger entries (appended, never a
    rewrite): the amount leaving the sub-account's pool and the same amount joining the
    other. ``event`` says what happened to them ("merged into Salon East"), ``reference``
    which request did it; both go into the entries' reasons, which the next invoice's
    credit items quote. Five statements whatever the number of sub-accounts.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("A credit transfer is part of its caller's transaction.")
    # Issuing locks the partner's row while it reads and applies balances: taken here
    # too, no invoice can apply a balance this moves, or the other way round. NO KEY
    # UPDATE, so rows referencing the partner can still be inserted meanwhile.
    partner = Partner.objects.select_for_update(no_key=True).get(pk=partner_id)
    balances = dict(
        CreditEntry.objects.filter(partner_id=partner_id, sub_account_id__in=list(sub_account_ids))
        .values("sub_account_id")
        .annotate(balance=Sum("amount"))
        .filter(balance__gt=0)
        .order_by("sub_account_id")
        .values_list("sub_account_id", "balance")
    )
    if not balances:
        return []
    names = dict(
        SubAccount.objects.filter(partner_id=partner_id, pk__in=list(balances)).values_list(
            "pk", "name"
        )
    )
    if to_sub_account_id is None:
        destination = "the partner's credit balance"
    else:
        target = SubAccount.objects.get(partner_id=partner_id, pk=to_sub_account_id)
        destination = f"the credit balance of {target.name}"
    day = at.astimezone(ZoneInfo(partner.timezone)).date()
    entries: list[CreditEntry] = []
    moved: list[dict[str, Any]] = []
    for pk, balance in balances.items():
        happened = f"{names[pk]}, {event} on {day:%Y-%m-%d} ({reference})"
        common = {
            "partner_id": partner_id,
            "kind": CreditEntryKind.TRANSFER,
            "created_at": at,
            "created_by": principal.label[:200],
        }
        entries.append(
            CreditEntry(
                sub_account_id=pk,
                amount=-balance,
                counterpart_id=to_sub_account_id,
                reason=f"Moved to {destination}: {happened}"[:500],
                **common,
            )
        )
        entries.append(
            CreditEntry(
                sub_account_id=to_sub_account_id,
                amount=balance,
                counterpart_id=pk,
                reason=f"Balance of {happened}"[:500],
                **common,
            )
        )
        shown = quantize(balance, partner.currency)
        moved.append({"sub_account_id": pk, "name": names[pk], "amount": f"{shown:f}"})
    CreditEntry.objects.bulk_create(entries)
    return moved
