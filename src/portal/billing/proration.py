"""Prorations of domain §3: the pure reference ("oracle") for the SQL invoice engine.

The invoice for cycle N charges, in advance, every line to the sub-account that
holds it at the instant S that opens N. Whatever changed during N is corrected on
the invoice for N+1 by the items computed here. Everything is whole days in the
partner's timezone (:class:`~portal.billing.periods.Cycle`), so a DST change or a
UTC date that differs from the local date never shifts a day, and the two halves
of a move can never both claim (or both miss) a day.

This module takes instants and amounts only: it reads no clock and no database,
so the engine can be checked against it line by line, and "explain this charge"
can recompute any item from the assignment history.

The rules, for one line, walking its days in order from the holder charged at S:

- the holder of day ``d`` is the sub-account holding the line at the end of day
  ``d``, so several moves within a day collapse (A→C→B is A→B; A→B→A is nothing);
- a change of holder first seen on day ``d`` of ``n`` is worth
  ``x = price·(n−d+1)/n``, rounded half-up once per item;
- A → B (a move): A gets ``−x``, B gets ``+x``, the same ``x`` negated, so the pair
  nets to exactly zero and the credit lands on the section charged for those days;
- nobody → B (an activation): ``+x`` to B, or the full price when
  ``prorate_new_lines`` is off;
- A → nobody (a disconnect): nothing, or ``−x`` to A when ``credit_disconnects``
  is on, never more than A was charged for those days;
- merges never prorate: a segment that began because a merge moved the line
  (``via_merge``) inside the cycle is billed to the holder before it
  (:func:`billed_segments`), so the merge is no change, and a later move in the
  cycle credits the source, which was charged in advance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise

from portal.billing.money import quantize, quantum
from portal.billing.periods import Cycle

MOVE_CREDIT = "move_credit"
MOVE_CHARGE = "move_charge"
ACTIVATION = "activation"
DISCONNECT_CREDIT = "disconnect_credit"


@dataclass(frozen=True)
class Segment:
    """One assignment period of a line, as stored: held by ``sub_account_id`` over
    ``[start, end)``; ``end`` is None while the period is still open.

    Half-open, so consecutive periods of a line share their boundary instant
    without both holding the line at it.
    """

    sub_account_id: int
    start: dt.datetime
    end: dt.datetime | None
    via_merge: bool = False

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or (self.end is not None and self.end.tzinfo is None):
            raise ValueError("segment instants must be timezone-aware")
        if self.end is not None and self.end < self.start:
            raise ValueError(f"segment ends before it starts: {self}")

    def holds_at(self, instant: dt.datetime) -> bool:
        """True when the line is in this segment at ``instant`` (``start <= t < end``)."""
        return self.start <= instant and (self.end is None or instant < self.end)

    def holds_until(self, instant: dt.datetime) -> bool:
        """True when the line is in this segment just before ``instant``
        (``start < t <= end``): it held the line during the moments that close
        the day ending at ``instant``.
        """
        return self.start < instant and (self.end is None or instant <= self.end)


@dataclass(frozen=True)
class Run:
    """Consecutive days ``first_day..last_day`` (1-based, inclusive) of one holder.

    ``holder`` is a sub-account id, or None when the line was not active at the end
    of those days (not yet activated, or already disconnected).
    """

    holder: int | None
    first_day: int
    last_day: int

    def __post_init__(self) -> None:
        if not 1 <= self.first_day <= self.last_day:
            raise ValueError(f"a run needs 1 <= first_day <= last_day: {self}")

    @property
    def days(self) -> int:
        return self.last_day - self.first_day + 1


@dataclass(frozen=True)
class ProrationItem:
    """One proration item for the invoice that follows the cycle it corrects.

    ``amount`` is signed (credits are negative) and already rounded, so a section's
    prorations are the plain sum of its items. ``day`` is the day of the cycle the
    change took effect and ``days = n - day + 1`` the days it covers, which is what
    the invoice prints ("moved to B on June 16, 15/30 days").
    """

    kind: str
    sub_account_id: int
    other_sub_account_id: int | None
    line_id: int
    day: int
    days: int
    amount: Decimal


def holder_at(segments: Sequence[Segment], instant: dt.datetime) -> int | None:
    """The sub-account holding the line at ``instant``, or None when it is not active.

    With ``instant = cycle.start`` this is the holder charged in advance for the
    whole cycle, i.e. ``invoiced_holder`` of :func:`line_prorations`.
    """
    _check_no_overlap(segments)
    for segment in segments:
        if segment.holds_at(instant):
            return segment.sub_account_id
    return None


def day_runs(segments: Sequence[Segment], cycle: Cycle) -> list[Run]:
    """The holder of each day of ``cycle`` (1..n), merged into runs.

    A day belongs to whoever holds the line at the end of it: the segment that
    holds the line in the last moments before ``cycle.day_end(d)`` (``start <
    day_end(d) <= end``). Sampling once per day is what collapses the moves of
    one day (A→C→B is A→B, A→B→A is nothing). Days where no segment holds the line
    get ``None``.

    A change at exactly local midnight therefore counts on the day it starts,
    which is the day ``cycle.day_of(instant)`` gives: a line moved, activated or
    disconnected at exactly the instant S of the next cycle changes nothing in
    this one (so a merge that takes effect at S never prorates, and a line
    activated at S is charged once, by the next in-advance invoice).
    """
    _check_no_overlap(segments)
    holders: list[int | None] = []
    for instant in cycle.day_ends():
        holding = [s.sub_account_id for s in segments if s.holds_until(instant)]
        holders.append(holding[0] if holding else None)
    runs: list[Run] = []
    for day, holder in enumerate(holders, start=1):
        if runs and runs[-1].holder == holder:
            runs[-1] = Run(holder, runs[-1].first_day, day)
        else:
            runs.append(Run(holder, day, day))
    return runs


def owned_days(runs: Sequence[Run]) -> dict[int | None, int]:
    """Days per holder (``None`` = days the line was not active): what each section
    should end up paying for, and the numbers behind "explain this charge".
    """
    days: dict[int | None, int] = {}
    for run in runs:
        days[run.holder] = days.get(run.holder, 0) + run.days
    return days


def prorated_amount(price: Decimal, days: int, cycle_days: int, currency: str) -> Decimal:
    """``price · days / cycle_days``, rounded half-up to the currency's minor unit.

    Computed as an exact fraction and rounded once, so a value exactly halfway
    between two minor units always rounds away from zero, however many digits the
    division would need.
    """
    if not 0 <= days <= cycle_days:
        raise ValueError(f"days {days} outside 0..{cycle_days}")
    units = Fraction(price) * days / (cycle_days * Fraction(quantum(currency)))
    whole, rest = divmod(abs(units.numerator), units.denominator)
    if 2 * rest >= units.denominator:
        whole += 1
    signed = whole if units >= 0 else -whole
    return quantize(Decimal(signed) * quantum(currency), currency)


def recurring_amount(quantity: int, price: Decimal, currency: str) -> Decimal:
    """The in-advance charge of a section: ``quantity × price``, rounded once.

    Rounding the product rather than each line keeps a section's recurring charge
    equal to what the partner expects from its price list.
    """
    if quantity < 0:
        raise ValueError("quantity cannot be negative")
    return quantize(price * quantity, currency)


def line_prorations(
    *,
    line_id: int,
    invoiced_holder: int | None,
    runs: Sequence[Run],
    cycle_days: int,
    price: Decimal,
    currency: str,
    prorate_new_lines: bool = True,
    credit_disconnects: bool = False,
) -> list[ProrationItem]:
    """Items of one line for the cycle just ended, in day order.

    ``invoiced_holder`` is the sub-account charged in advance for the whole cycle
    (the holder at instant S), or None when the line was not active at S; ``runs``
    must cover days ``1..cycle_days`` exactly once (as :func:`day_runs` gives).
    ``price`` is the price that was charged for this cycle, not today's.

    Raises ``ValueError`` when the line would come back after having been active
    this cycle (charged at S or activated since): lines are never reactivated, so
    such history is corrupt rather than something to bill.
    """
    _check_runs(runs, cycle_days)
    if price < 0:
        raise ValueError("price cannot be negative")
    items: list[ProrationItem] = []
    owner = invoiced_holder
    was_active = invoiced_holder is not None
    # What the current owner was charged for the rest of the cycle: the ceiling of
    # any disconnect credit ("never more than was charged").
    charged_for_rest = quantize(price, currency) if was_active else Decimal(0)

    for run in runs:
        holder = run.holder
        if holder == owner:
            continue
        day = run.first_day
        days = cycle_days - day + 1
        share = prorated_amount(price, days, cycle_days, currency)

        if owner is not None and holder is not None:
            items.append(
                ProrationItem(MOVE_CREDIT, owner, holder, line_id, day, days, _negated(share))
            )
            items.append(ProrationItem(MOVE_CHARGE, holder, owner, line_id, day, days, share))
            charged_for_rest = share
        elif holder is not None:
            if was_active:
                raise ValueError(
                    f"line {line_id} is active again on day {day} after it ended: "
                    "lines are never reactivated"
                )
            charge = share if prorate_new_lines else quantize(price, currency)
            items.append(ProrationItem(ACTIVATION, holder, None, line_id, day, days, charge))
            charged_for_rest = charge
        else:
            assert owner is not None
            if credit_disconnects:
                credit = min(share, charged_for_rest)
                items.append(
                    ProrationItem(
                        DISCONNECT_CREDIT, owner, None, line_id, day, days, _negated(credit)
                    )
                )
            charged_for_rest = Decimal(0)
        if holder is not None:
            was_active = True
        owner = holder
    return items


def billed_segments(segments: Sequence[Segment], cycle: Cycle) -> list[Segment]:
    """``segments`` as billing sees them for ``cycle``: a segment that a merge began
    strictly after the cycle's start takes the sub-account billed just before it.

    The source was charged in advance for the whole cycle, so for billing the line
    stays with it until the cycle ends (chains of merges go back to the first
    source); from the next cycle the target holds it at S and is charged normally.
    """
    billed: list[Segment] = []
    for segment in sorted(segments, key=lambda s: (s.start, s.end is None, s.end)):
        if segment.via_merge and segment.start > cycle.start and billed:
            segment = replace(segment, sub_account_id=billed[-1].sub_account_id)
        billed.append(segment)
    return billed


def prorate_line(
    *,
    line_id: int,
    segments: Sequence[Segment],
    cycle: Cycle,
    price: Decimal,
    currency: str,
    prorate_new_lines: bool = True,
    credit_disconnects: bool = False,
) -> list[ProrationItem]:
    """All of the above for one line: its assignment history and the cycle just
    ended in, its proration items out. The engine's result for a line must equal
    this.
    """
    billed = billed_segments(segments, cycle)
    return line_prorations(
        line_id=line_id,
        invoiced_holder=holder_at(billed, cycle.start),
        runs=day_runs(billed, cycle),
        cycle_days=cycle.days,
        price=price,
        currency=currency,
        prorate_new_lines=prorate_new_lines,
        credit_disconnects=credit_disconnects,
    )


def _negated(amount: Decimal) -> Decimal:
    # -Decimal("0.00") is "-0.00", which would print on an invoice.
    return -amount if amount else amount


def _check_no_overlap(segments: Sequence[Segment]) -> None:
    # An active line is in exactly one sub-account at every instant; overlapping
    # periods are corrupt history, and billing them would charge a day twice.
    ordered = sorted(segments, key=lambda s: (s.start, s.end is None, s.end))
    for before, after in pairwise(ordered):
        if before.end is None or before.end > after.start:
            raise ValueError(f"assignment periods overlap: {before} and {after}")


def _check_runs(runs: Sequence[Run], cycle_days: int) -> None:
    if cycle_days < 1:
        raise ValueError("a cycle has at least one day")
    expected = 1
    for run in runs:
        if run.first_day != expected:
            raise ValueError(f"runs must cover days 1..{cycle_days} in order: {list(runs)}")
        expected = run.last_day + 1
    if expected != cycle_days + 1:
        raise ValueError(f"runs must cover days 1..{cycle_days} in order: {list(runs)}")
