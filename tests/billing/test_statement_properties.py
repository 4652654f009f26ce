"""Client statements are correct by construction (issue 19 point 5, domain §8.1).

Over random histories of new lines, moves, same-day moves, disconnects, merges, deletions,
resale price changes, provider price changes and proration policies, billed at each
cycle's start:

- every statement item has exactly one invoice item in its sub-account's section with the
  same line, day, days and kind, and every such invoice item of a sub-account priced for
  that cycle has one statement item: the statement is the section, repriced;
- its amount is the resale price in force for the cycle it charges (recurring) or corrects
  (prorations) over the same fraction, rounded on its own: read from a model of the
  changes this test made, not from the code under test;
- statements are numbered 1, 2, 3 … per sub-account, their totals are sums of their
  items, and a second billing run issues no second statement.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from portal.billing.invoicing import invoices_issue_due
from portal.billing.models import InvoiceItem, InvoiceItemKind, Statement, StatementItem
from portal.billing.money import quantize
from portal.billing.periods import Cycle
from portal.billing.proration import prorated_amount
from portal.billing.resale import resale_default_set, sub_account_resale_price_set
from portal.billing.terms import partner_billing_update
from portal.core.clock import frozen_at
from portal.core.errors import DomainError
from portal.lines.models import Line
from portal.lines.services import line_disconnect, line_move
from portal.partners.models import SubAccount
from portal.partners.selectors import available_pool
from portal.workflows.services import deletions, merges
from tests.factories import SYSTEM, make_lines, make_partner, make_sub_account

NAMES = ("A", "B", "C", "D")
START = dt.datetime(2026, 5, 3, 9, 0, tzinfo=dt.UTC)
MONTHS = (6, 7, 8, 9)  # cycles billed; the history runs from May into August
PRICES = st.sampled_from(["40.00", "55.50", "65.00", "80.00", "99.99", "0.00"])
_counter = itertools.count()

sub_names = st.sampled_from(("Available", *NAMES))
steps = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=118),  # days after START (into August)
        st.integers(min_value=0, max_value=14),  # hours after 09:00 that day
        st.one_of(
            st.tuples(st.just("add"), st.integers(1, 2)),
            st.tuples(st.just("move"), st.integers(0, 7), sub_names),
            st.tuples(st.just("move"), st.integers(0, 7), sub_names),
            st.tuples(st.just("same_day"), st.integers(0, 7), sub_names, sub_names),
            st.tuples(st.just("disconnect"), st.integers(0, 7)),
            st.tuples(st.just("resale_default"), st.one_of(st.none(), PRICES)),
            st.tuples(st.just("resale"), st.sampled_from(NAMES), st.one_of(st.none(), PRICES)),
            st.tuples(st.just("price"), st.sampled_from(["50.00", "45.00", "61.37"])),
            st.tuples(st.just("policy"), st.booleans(), st.booleans()),
            st.tuples(st.just("merge"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
            st.tuples(st.just("delete"), st.sampled_from(NAMES), sub_names),
        ),
    ),
    min_size=6,
    max_size=24,
)


class History:
    """One partner's random history, and the resale prices it set (the test's model)."""

    def __init__(self) -> None:
        self.partner = make_partner(f"Statements {next(_counter)}")
        self.staff = SYSTEM.acting_for(self.partner.pk)
        self.subs = {"Available": available_pool(self.partner)}
        self.subs |= {name: make_sub_account(self.partner, name) for name in NAMES}
        self.lines: list[Line] = []
        # (effective month, sub-account id or None for the default, price or None)
        self.resale: list[tuple[dt.date, int | None, Decimal | None]] = []

    def resale_price(self, sub_account_id: int, month: dt.date) -> Decimal | None:
        """The model's answer: the last override in force, else the last default."""
        own: Decimal | None = None
        default: Decimal | None = None
        for effective, sub, price in self.resale:
            if effective > month:
                continue
            if sub is None:
                default = price
            elif sub == sub_account_id:
                own = price
        return own if own is not None else default

    def line(self, index: int) -> Line | None:
        return self.lines[index % len(self.lines)] if self.lines else None

    def play(self, when: dt.datetime, op: tuple[Any, ...]) -> None:
        kind = op[0]
        with frozen_at(when):
            try:
                self._do(when, kind, op)
            except DomainError as refused:  # e.g. moving into a merged sub-account
                note(f"{when:%m-%d %H:%M} {op}: refused ({refused})")
            else:
                note(f"{when:%m-%d %H:%M} {op}")

    def _do(self, when: dt.datetime, kind: str, op: tuple[Any, ...]) -> None:
        effective = Cycle(when.year, when.month, "UTC").next().first_day
        if kind == "add":
            self.lines += make_lines(self.partner, op[1])
        elif kind in ("move", "same_day"):
            line = self.line(op[1])
            if line is None:
                return
            for name in op[2:]:
                line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=self.subs[name].pk)
        elif kind == "disconnect":
            line = self.line(op[1])
            if line is not None:
                line_disconnect(principal=SYSTEM, line_id=line.pk)
        elif kind == "resale_default":
            if resale_default_set(principal=self.staff, price=op[1]) is not None:
                self.resale.append((effective, None, None if op[1] is None else Decimal(op[1])))
        elif kind == "resale":
            sub = self.subs[op[1]]
            if sub_account_resale_price_set(
                principal=self.staff, sub_account_id=sub.pk, price=op[2]
            ):
                self.resale.append((effective, sub.pk, None if op[2] is None else Decimal(op[2])))
        elif kind == "price":
            partner_billing_update(principal=self.staff, line_price=op[1])
        elif kind == "policy":
            partner_billing_update(
                principal=self.staff, prorate_new_lines=op[1], credit_disconnects=op[2]
            )
        elif kind == "merge":
            source, target = self.subs[op[1]], self.subs[op[2]]
            request = merges.merge_request_create(
                principal=self.staff, source_ids=[source.pk], target_id=target.pk
            )
            merges.merge_request_approve(principal=self.staff, request_id=request.pk)
            merges.merge_request_run(principal=self.staff, request_id=request.pk)
        elif kind == "delete":
            sub, to = self.subs[op[1]], self.subs[op[2]]
            request = deletions.deletion_request_create(
                principal=self.staff,
                sub_account_id=sub.pk,
                line_disposition="move",
                move_to_id=to.pk,
            )
            deletions.deletion_request_approve(principal=self.staff, request_id=request.pk)


def _bill(partner_id: int, month: int) -> None:
    at = Cycle(2026, month, "UTC").start + dt.timedelta(minutes=10)
    with frozen_at(at):
        invoices_issue_due(principal=SYSTEM, now=at)


def _check(history: History) -> int:
    """Assert the properties of every statement issued; returns how many items were checked."""
    partner = history.partner
    pool = history.subs["Available"].pk
    checked = 0
    statements = Statement.objects.filter(partner=partner).select_related("invoice")
    by_invoice: dict[int, dict[int, Statement]] = defaultdict(dict)
    for statement in statements:
        by_invoice[statement.invoice_id][statement.sub_account_id] = statement
    invoice_items = (
        InvoiceItem.objects.filter(partner=partner)
        .exclude(kind__in=[InvoiceItemKind.DISCOUNT, InvoiceItemKind.CREDIT])
        .select_related("section__invoice")
    )
    expected: dict[tuple[int, int], Counter[tuple[Any, ...]]] = defaultdict(Counter)
    for item in invoice_items:
        invoice, sub = item.section.invoice, item.section.sub_account_id
        month = invoice.period_month
        if item.kind != InvoiceItemKind.RECURRING:
            month = Cycle(month.year, month.month, "UTC").previous().first_day
        if sub == pool or history.resale_price(sub, month) is None:
            continue
        expected[(invoice.pk, sub)][(item.line_id, item.day, item.days, item.kind)] += 1
    got: dict[tuple[int, int], Counter[tuple[Any, ...]]] = defaultdict(Counter)
    items = StatementItem.objects.filter(partner=partner).select_related("statement__invoice")
    for item in items:
        statement = item.statement
        got[(statement.invoice_id, statement.sub_account_id)][
            (item.line_id, item.day, item.days, item.kind)
        ] += 1
        invoice = statement.invoice
        cycle = Cycle(invoice.period_month.year, invoice.period_month.month, "UTC")
        if item.kind == InvoiceItemKind.RECURRING:
            price = history.resale_price(statement.sub_account_id, cycle.first_day)
            assert price is not None and item.unit_price == price
            assert item.amount == quantize(item.quantity * price, "USD")
        else:
            corrected = cycle.previous()
            price = history.resale_price(statement.sub_account_id, corrected.first_day)
            assert price is not None and item.unit_price == price
            fraction = prorated_amount(price, item.days, corrected.days, "USD")
            if item.kind == InvoiceItemKind.MOVE_CREDIT:
                assert item.amount == -fraction
            elif item.kind == InvoiceItemKind.MOVE_CHARGE:
                assert item.amount == fraction
            elif item.kind == InvoiceItemKind.ACTIVATION:
                assert item.amount in (fraction, quantize(price, "USD"))
            else:  # a disconnect credit: never more than the line was charged
                assert -fraction <= item.amount <= 0
        checked += 1
    assert got == {key: counts for key, counts in expected.items() if counts}
    for statement in statements:
        amounts = list(statement.items.values_list("kind", "amount"))
        assert statement.total == sum((a for _, a in amounts), Decimal(0))
        assert statement.recurring == sum(
            (a for k, a in amounts if k == InvoiceItemKind.RECURRING), Decimal(0)
        )
        assert statement.sub_account_id != pool
    numbers: dict[int, list[int]] = defaultdict(list)
    for sub, number in statements.order_by("period_month").values_list("sub_account_id", "number"):
        numbers[sub].append(number)
    assert all(found == list(range(1, len(found) + 1)) for found in numbers.values())
    return checked


@pytest.mark.django_db
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=steps)
def test_every_statement_item_is_its_invoice_item_repriced(steps):
    with transaction.atomic():
        history = History()
        history.play(START, ("add", 3))
        history.play(START + dt.timedelta(minutes=5), ("move", 0, "A"))
        history.play(START + dt.timedelta(minutes=6), ("move", 1, "B"))
        history.play(START + dt.timedelta(minutes=7), ("resale_default", "70.00"))
        timeline = sorted(
            ((START + dt.timedelta(days=day, hours=hour, minutes=10), i, op))
            for i, (day, hour, op) in enumerate(steps)
        )
        billed = iter(MONTHS)
        month = next(billed)
        for when, _, op in timeline:
            while month is not None and when >= Cycle(2026, month, "UTC").start:
                _bill(history.partner.pk, month)
                month = next(billed, None)
            history.play(when, op)
        while month is not None:
            _bill(history.partner.pk, month)
            month = next(billed, None)
        _check(history)
        count = Statement.objects.filter(partner=history.partner).count()
        _bill(history.partner.pk, MONTHS[-1])  # a second run issues nothing
        assert Statement.objects.filter(partner=history.partner).count() == count
        assert SubAccount.objects.filter(partner=history.partner).count() == len(NAMES) + 1
        transaction.set_rollback(True)
