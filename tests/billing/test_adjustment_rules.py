"""The pure discount and credit rules (billing.adjustments) and merges in the oracle."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.billing import proration
from portal.billing.adjustments import (
    AMOUNT,
    PERCENT,
    DiscountRule,
    apply_credits,
    apply_discounts,
    discount_amount,
)
from portal.billing.money import quantum, split_largest_remainder
from portal.billing.periods import Cycle

D = Decimal
CURRENCIES = ["USD", "JPY", "KWD"]


def money(currency: str, low: int = 0, high: int = 10**6) -> st.SearchStrategy[Decimal]:
    q = quantum(currency)
    return st.integers(min_value=low, max_value=high).map(lambda units: D(units) * q)


@st.composite
def invoices(draw: st.DrawFn):
    currency = draw(st.sampled_from(CURRENCIES))
    n = draw(st.integers(min_value=1, max_value=6))
    recurring = {sa: draw(money(currency)) for sa in range(1, n + 1)}
    prorations = {sa: draw(money(currency, -(10**5), 10**5)) for sa in recurring}
    rules = []
    for rule_id in range(1, draw(st.integers(min_value=0, max_value=4)) + 1):
        kind = draw(st.sampled_from([PERCENT, AMOUNT]))
        if kind == PERCENT:
            value = D(draw(st.integers(min_value=1, max_value=10000))) / 100
        else:
            value = draw(money(currency, 1))
        target = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=n + 1)))
        rules.append(DiscountRule(rule_id, target, kind, value))
    return currency, recurring, prorations, rules


@settings(max_examples=300, deadline=None)
@given(invoice=invoices())
def test_discount_parts_add_up_and_never_exceed_recurring(invoice):
    currency, recurring, _, rules = invoice
    q = quantum(currency)
    parts = apply_discounts(recurring, rules, currency)
    per_section: dict[int, Decimal] = {}
    for part in parts:
        assert part.amount > 0 and part.amount == part.amount.quantize(q)
        per_section[part.sub_account_id] = per_section.get(part.sub_account_id, D(0)) + part.amount
    for sa, taken in per_section.items():
        assert taken <= recurring[sa]
    by_rule = {r.id: r for r in rules}
    for rule_id in {p.discount_id for p in parts}:
        rule = by_rule[rule_id]
        total = sum((p.amount for p in parts if p.discount_id == rule_id), D(0))
        if rule.kind == AMOUNT:
            assert total <= rule.value  # a fixed discount never grows when spread
        if rule.sub_account_id is not None:
            assert {p.sub_account_id for p in parts if p.discount_id == rule_id} == {
                rule.sub_account_id
            }


@settings(max_examples=300, deadline=None)
@given(invoice=invoices())
def test_a_partner_wide_discount_follows_recurring_before_sub_account_discounts(invoice):
    """Each partner-wide discount's parts add up exactly to its amount (on what is left)
    and are spread by the recurring charges *before* sub-account discounts: a section is
    either capped at what its own discounts left, or within one minor unit of its
    proportional share of what the capped sections did not take."""
    currency, recurring, _, rules = invoice
    q = quantum(currency)
    parts = apply_discounts(recurring, rules, currency)
    basis = {sa: amount.quantize(q) for sa, amount in recurring.items()}
    left = dict(basis)
    ordered = sorted(rules, key=lambda r: (r.sub_account_id is None, r.id))
    for rule in ordered:
        mine = [p for p in parts if p.discount_id == rule.id]
        if rule.sub_account_id is not None:
            for p in mine:
                left[p.sub_account_id] -= p.amount
            continue
        spread_over = [sa for sa in left if left[sa] > 0]
        wanted = discount_amount(rule, sum((left[sa] for sa in spread_over), D(0)), currency)
        assert sum((p.amount for p in mine), D(0)) == wanted  # exactly, never a cent off
        basis_total = sum((basis[sa] for sa in spread_over), D(0))
        free = [p for p in mine if not p.capped]
        for p in mine:
            assert p.basis == basis[p.sub_account_id] and p.basis_total == basis_total
            assert p.amount <= left[p.sub_account_id]
            if p.capped:
                assert p.amount == left[p.sub_account_id]
        uncapped = [
            sa for sa in spread_over if sa not in {p.sub_account_id for p in mine if p.capped}
        ]
        rest = wanted - sum((p.amount for p in mine if p.capped), D(0))
        rest_basis = sum((basis[sa] for sa in uncapped), D(0))
        got = {p.sub_account_id: p.amount for p in free}
        for sa in uncapped:
            exact = rest * basis[sa] / rest_basis if rest_basis else D(0)
            assert abs(got.get(sa, D(0)) - exact) < q
        if (
            not any(r.sub_account_id is not None for r in rules)
            and not any(p.capped for p in mine)
            and rule is ordered[0]
        ):
            # Nothing came before it: the parts are the plain largest-remainder split.
            split = split_largest_remainder(wanted, [basis[sa] for sa in spread_over], currency)
            assert got == {sa: s for sa, s in zip(spread_over, split, strict=True) if s > 0}
        for p in mine:
            left[p.sub_account_id] -= p.amount


def test_issue_15_figures_in_the_pure_rules():
    recurring = {1: D("33.33"), 2: D("66.66"), 3: D("133.32")}
    rules = [DiscountRule(1, None, AMOUNT, D("10.00")), DiscountRule(2, 2, PERCENT, D("12.5"))]
    parts = apply_discounts(recurring, rules, "USD")
    assert [(p.discount_id, p.sub_account_id, p.amount) for p in parts] == [
        (2, 2, D("8.33")),
        (1, 1, D("1.43")),
        (1, 2, D("2.86")),
        (1, 3, D("5.71")),
    ]


def test_a_share_beyond_what_is_left_goes_to_the_other_sections():
    # 1's own discount takes it all (nothing to spread onto), 2's leaves 5.00: 30.00 off
    # the invoice would give 2 and 3 15.00 each by basis, so 2 gets its 5.00 and 3 the rest.
    recurring = {1: D("100"), 2: D("100"), 3: D("100")}
    rules = [
        DiscountRule(1, 1, PERCENT, D("100")),
        DiscountRule(2, 2, PERCENT, D("95")),
        DiscountRule(3, None, AMOUNT, D("30.00")),
    ]
    parts = [p for p in apply_discounts(recurring, rules, "USD") if p.discount_id == 3]
    assert [(p.sub_account_id, p.amount, p.capped) for p in parts] == [
        (2, D("5.00"), True),
        (3, D("25.00"), False),
    ]


@settings(max_examples=300, deadline=None)
@given(invoice=invoices(), data=st.data())
def test_credits_never_make_a_total_negative_and_never_exceed_a_balance(invoice, data):
    currency, recurring, prorations, rules = invoice
    discounts = apply_discounts(recurring, rules, currency)
    totals = {sa: recurring[sa] + prorations[sa] for sa in recurring}
    for part in discounts:
        totals[part.sub_account_id] -= part.amount
    balances = {
        sa: data.draw(money(currency, 0, 10**5)) for sa in totals if data.draw(st.booleans())
    }
    partner_balance = data.draw(money(currency, 0, 10**6))
    parts = apply_credits(totals, balances, partner_balance, currency)
    after = dict(totals)
    taken: dict[int | None, Decimal] = {}
    for part in parts:
        assert part.amount > 0
        after[part.sub_account_id] -= part.amount
        taken[part.pool] = taken.get(part.pool, D(0)) + part.amount
        if part.pool is not None:
            assert part.pool == part.sub_account_id  # a sub-account's credit stays with it
    for sa, total in after.items():
        if taken and any(p.sub_account_id == sa for p in parts):
            assert total >= 0
    invoice_before = sum(totals.values(), D(0))
    invoice_after = sum(after.values(), D(0))
    assert invoice_after >= min(D(0), invoice_before)
    assert taken.get(None, D(0)) <= partner_balance
    for sa, balance in balances.items():
        assert taken.get(sa, D(0)) <= balance
    # Credit is only held back when the invoice is already at zero.
    left = partner_balance - taken.get(None, D(0))
    if left > 0:
        assert invoice_after <= 0


def test_a_partner_credit_is_shared_by_section_totals_with_largest_remainder():
    parts = apply_credits(
        {1: D("10.00"), 2: D("10.00"), 3: D("10.00"), 4: D(-5)}, {}, D("10.00"), "USD"
    )
    assert [(p.sub_account_id, p.amount) for p in parts] == [
        (1, D("3.34")),
        (2, D("3.33")),
        (3, D("3.33")),
    ]


# --- Merges in the oracle ------------------------------------------------------------------

JUNE = Cycle(2026, 6, "UTC")
A, B, C = 1, 2, 3


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        pytest.param(
            [
                proration.Segment(A, utc(2026, 1, 1), utc(2026, 6, 10)),
                proration.Segment(B, utc(2026, 6, 10), None, via_merge=True),
            ],
            [],
            id="merge only: nothing",
        ),
        pytest.param(
            [
                proration.Segment(A, utc(2026, 1, 1), utc(2026, 6, 10)),
                proration.Segment(B, utc(2026, 6, 10), utc(2026, 6, 16, 12)),
                proration.Segment(C, utc(2026, 6, 16, 12), None, via_merge=True),
            ],
            [("move_credit", A, B, 10, 21, "-35.00"), ("move_charge", B, A, 10, 21, "35.00")],
            id="move then merge: the mover keeps the line",
        ),
        pytest.param(
            [
                proration.Segment(A, utc(2026, 1, 1), utc(2026, 6, 10)),
                proration.Segment(B, utc(2026, 6, 10), utc(2026, 6, 12), via_merge=True),
                proration.Segment(C, utc(2026, 6, 12), utc(2026, 6, 16), via_merge=True),
                proration.Segment(B, utc(2026, 6, 16), None),
            ],
            [("move_credit", A, B, 16, 15, "-25.00"), ("move_charge", B, A, 16, 15, "25.00")],
            id="chained merges then a move: the first source is credited",
        ),
        pytest.param(
            [
                proration.Segment(A, utc(2026, 1, 1), utc(2026, 6, 1)),
                proration.Segment(B, utc(2026, 6, 1), utc(2026, 6, 16)),
                proration.Segment(C, utc(2026, 6, 16), None),
            ],
            [("move_credit", B, C, 16, 15, "-25.00"), ("move_charge", C, B, 16, 15, "25.00")],
            id="plain moves unchanged",
        ),
        pytest.param(
            [
                proration.Segment(A, utc(2026, 1, 1), utc(2026, 6, 1)),
                proration.Segment(B, utc(2026, 6, 1), utc(2026, 6, 16), via_merge=True),
                proration.Segment(C, utc(2026, 6, 16), None),
            ],
            [("move_credit", B, C, 16, 15, "-25.00"), ("move_charge", C, B, 16, 15, "25.00")],
            id="merge at the cycle start: the target was charged",
        ),
    ],
)
def test_merges_never_prorate_in_the_oracle(segments, expected):
    items = proration.prorate_line(
        line_id=7, segments=segments, cycle=JUNE, price=D("50.00"), currency="USD"
    )
    assert [
        (i.kind, i.sub_account_id, i.other_sub_account_id, i.day, i.days, str(i.amount))
        for i in items
    ] == expected
