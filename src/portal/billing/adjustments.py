"""Discounts and credits on an invoice: pure arithmetic, no clock and no database.

domain §3 orders an invoice section as recurring + prorations − discounts − credits.
This module decides the discount and credit amounts from the sections' figures, so
the rules can be tested as properties (parts add up, nothing goes negative) apart
from the SQL that gathers the figures.

**Discounts** reduce recurring charges only, never prorations. They apply one after
the other, each to what is left of the recurring charges after the ones before it:
first the sub-account discounts, then the partner-wide ones, each group in the order
staff granted them. So a percentage never discounts money another discount already
took off (10 % then 10 % is 19 %), and a fixed amount is capped at what is left, so a
recurring charge is never discounted below zero. A partner-wide discount's amount is
computed on the sum of what is left in every section, and spread over the sections in
proportion to their recurring charges *before* any sub-account discount (domain §3) with
:func:`~portal.billing.money.split_largest_remainder`, so the parts add up to the
discount exactly. A section whose share would exceed what its own discounts left of it
gets what is left (``capped``), and the rest is spread over the others on the same basis.

**Credits** come after discounts. A sub-account's balance is applied to its own
section (in invoice order), then the partner's balance is spread over the sections
still positive, in proportion to their totals (largest remainder again, ties to the
earlier section). No credit makes a section total or the invoice total negative: the
amount applied is capped by both, and what is not applied stays in the balance for
the next invoice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from portal.billing.money import quantize, split_largest_remainder

PERCENT = "percent"
AMOUNT = "amount"
ZERO = Decimal(0)


@dataclass(frozen=True)
class DiscountRule:
    """A discount in force for the invoice: ``sub_account_id`` None = partner-wide."""

    id: int
    sub_account_id: int | None
    kind: str  # PERCENT or AMOUNT
    value: Decimal


@dataclass(frozen=True)
class DiscountPart:
    """What one discount takes off one section's recurring charge (positive).

    For a partner-wide discount, ``basis`` is the section's recurring charge before any
    sub-account discount and ``basis_total`` the sum of those of the sections it was
    spread over; ``capped`` when the share was cut to what the section's own discounts
    left of its recurring charge (the difference went to the other sections).
    """

    discount_id: int
    sub_account_id: int
    amount: Decimal
    basis: Decimal = ZERO
    basis_total: Decimal = ZERO
    capped: bool = False


def discount_amount(rule: DiscountRule, base: Decimal, currency: str) -> Decimal:
    """The discount on ``base`` (what is left of the recurring charge), never above it."""
    if base <= 0:
        return ZERO
    if rule.kind == PERCENT:
        wanted = quantize(base * rule.value / 100, currency)
    elif rule.kind == AMOUNT:
        wanted = quantize(rule.value, currency)
    else:
        raise ValueError(f"unknown discount kind {rule.kind!r}")
    return min(wanted, base)


def apply_discounts(
    recurring: Mapping[int, Decimal], rules: Sequence[DiscountRule], currency: str
) -> list[DiscountPart]:
    """The parts of every discount, per section (``recurring`` is keyed by sub-account,
    in invoice order). Discounts of sub-accounts not on the invoice give nothing."""
    basis = {sa: quantize(amount, currency) for sa, amount in recurring.items()}
    left = dict(basis)
    parts: list[DiscountPart] = []
    ordered = sorted(rules, key=lambda r: (r.sub_account_id is None, r.id))
    for rule in ordered:
        if rule.sub_account_id is not None:
            if rule.sub_account_id not in left:
                continue
            amount = discount_amount(rule, left[rule.sub_account_id], currency)
            if amount > 0:
                left[rule.sub_account_id] -= amount
                parts.append(DiscountPart(rule.id, rule.sub_account_id, amount))
            continue
        keys = [sa for sa in left if left[sa] > 0]
        total = discount_amount(rule, sum((left[sa] for sa in keys), ZERO), currency)
        if total <= 0:
            continue
        shares, capped = spread_by_basis(total, keys, basis, left, currency)
        basis_total = sum((basis[sa] for sa in keys), ZERO)
        for sa in keys:
            share = shares[sa]
            if share > 0:
                left[sa] -= share
                parts.append(DiscountPart(rule.id, sa, share, basis[sa], basis_total, sa in capped))
    return parts


def spread_by_basis(
    total: Decimal,
    keys: Sequence[int],
    basis: Mapping[int, Decimal],
    left: Mapping[int, Decimal],
    currency: str,
) -> tuple[dict[int, Decimal], set[int]]:
    """``total`` (rounded, at most ``Σ left``) split over ``keys`` in proportion to
    ``basis`` with the largest remainder, no key getting more than its ``left``.

    A key whose share would pass its ``left`` gets exactly ``left`` (it is returned in
    the capped set) and what remains is split again over the others, on the same basis,
    until every share fits: each round caps at least one key, so it ends, and the
    shares always add up to ``total``.
    """
    shares = dict.fromkeys(keys, ZERO)
    capped: set[int] = set()
    remaining = total
    open_keys = list(keys)
    while remaining > 0 and open_keys:
        split = split_largest_remainder(remaining, [basis[sa] for sa in open_keys], currency)
        over = [sa for sa, share in zip(open_keys, split, strict=True) if share > left[sa]]
        if not over:
            for sa, share in zip(open_keys, split, strict=True):
                shares[sa] = share
            break
        for sa in over:
            shares[sa] = left[sa]
            remaining -= left[sa]
            capped.add(sa)
        open_keys = [sa for sa in open_keys if sa not in capped]
    return shares, capped


@dataclass(frozen=True)
class CreditPart:
    """Credit taken from a balance (``pool`` None = the partner's) for one section."""

    pool: int | None
    sub_account_id: int
    amount: Decimal


def apply_credits(
    totals: Mapping[int, Decimal],
    sub_account_balances: Mapping[int, Decimal],
    partner_balance: Decimal,
    currency: str,
) -> list[CreditPart]:
    """Credits for sections whose totals (after discounts, in invoice order) are
    ``totals``; the balances are what each pool holds before this invoice."""
    left = dict(totals)
    invoice_left = max(ZERO, sum(left.values(), ZERO))
    parts: list[CreditPart] = []
    for sa in left:
        balance = sub_account_balances.get(sa, ZERO)
        amount = min(balance, max(ZERO, left[sa]), invoice_left)
        if amount > 0:
            left[sa] -= amount
            invoice_left -= amount
            parts.append(CreditPart(sa, sa, amount))
    amount = quantize(min(max(ZERO, partner_balance), invoice_left), currency)
    if amount > 0:
        keys = [sa for sa in left if left[sa] > 0]
        weights = [left[sa] for sa in keys]
        for sa, share in zip(keys, split_largest_remainder(amount, weights, currency), strict=True):
            if share > 0:
                parts.append(CreditPart(None, sa, share))
    return parts
