"""What provider staff change about a partner's charges, one function per change:
discounts granted and removed, credit granted, the price per line and the proration
policies.

Discounts and credits are applied when an invoice is issued (as a draft): a grant
never changes an invoice already issued, draft or finalized; it applies from the
next invoice issued. A new price applies from the next cycle.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.db import transaction

from portal.accounts.policies import require
from portal.audit.services import audit_record
from portal.billing.cycles_due import cycle_has_charges, invoice_cycles_due, next_invoice_cycle
from portal.billing.drafting import invoice_for_cycle, price_for_cycle
from portal.billing.models import CreditEntry, CreditEntryKind, Discount, DiscountKind, PriceChange
from portal.billing.money import format_money, minor_units
from portal.billing.periods import Cycle, cycle_containing
from portal.billing.policies import can_change_billing_settings, can_grant_adjustments
from portal.core import clock
from portal.core.errors import Conflict, Invalid
from portal.core.principal import Principal
from portal.core.retry import retry_on_lost_race
from portal.core.text import clean_text
from portal.partners.models import Partner, SubAccount, SubAccountStatus
from portal.partners.selectors import partner_for

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


def _sub_account_of(principal: Principal, sub_account_id: Any) -> SubAccount:
    """An active sub-account of the principal's partner (the one ``partner_for`` gave)."""
    sub = SubAccount.objects.get_visible(principal, sub_account_id, what="Sub-account")
    if sub.status != SubAccountStatus.ACTIVE:
        raise Conflict(f"Sub-account {sub.display_name} is {sub.get_status_display().lower()}.")
    return sub


# --- Discounts ----------------------------------------------------------------------------


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
    kind: str,
    value: Decimal | str,
    name: str = "",
    sub_account_id: int | None = None,
    first_month: dt.date | None = None,
    cycles: int | None = None,
) -> Discount:
    """Grant a discount on recurring charges of the partner staff act for: ``percent``
    (0 < value ≤ 100) or a fixed ``amount`` per invoice; partner-wide when
    ``sub_account_id`` is None.

    It applies to the invoices of ``cycles`` cycles (None = until removed) from
    ``first_month`` (default: the next invoice not issued yet). Invoices already issued
    are never changed, so a start whose invoice exists is refused.
    """
    require(can_grant_adjustments(principal), "Only provider staff grant discounts.")
    partner = partner_for(principal)
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
    sub = _sub_account_of(principal, sub_account_id) if sub_account_id is not None else None
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


# --- Credit -------------------------------------------------------------------------------


@retry_on_lost_race
@transaction.atomic
def credit_grant(
    *,
    principal: Principal,
    amount: Decimal | str,
    reason: str,
    sub_account_id: int | None = None,
) -> CreditEntry:
    """Add credit to the balance of the partner staff act for (or a sub-account's), with
    a reason.

    Appended to the ledger; the next invoices issued take it after discounts, never
    below zero, and carry what is left (an invoice already issued is not changed).
    """
    require(can_grant_adjustments(principal), "Only provider staff grant credits.")
    # A merge or deletion moving a sub-account's balance holds the partner's row
    # (credit_balances_transfer): waiting for it, a grant to a sub-account then sees it
    # merged or pending deletion (409) instead of landing on a balance already moved.
    partner = partner_for(principal, lock=sub_account_id is not None)
    value = _clean_amount(
        amount,
        field="amount",
        label="Amount",
        places=minor_units(partner.currency),
        unit=partner.currency,
    )
    text = clean_text(reason, field="reason", label="Reason", max_length=500, required=True)
    sub = _sub_account_of(principal, sub_account_id) if sub_account_id is not None else None
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


# --- Price and policies -------------------------------------------------------------------


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
    line_price: Decimal | str | None = None,
    prorate_new_lines: bool | None = None,
    credit_disconnects: bool | None = None,
) -> Partner:
    """Change the price per line and/or the proration policies (None = keep) of the
    partner staff act for.

    A new price applies from the next cycle (a :class:`PriceChange` effective then):
    the invoice of the current cycle, issued or not, and every invoice already issued
    keep their price, and prorations always use the price charged for the cycle they
    correct. Policies apply to invoices issued from now on.
    """
    require(can_change_billing_settings(principal), "Only provider staff change prices.")
    locked = partner_for(principal, lock=True)
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
