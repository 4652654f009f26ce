"""Prorations (domain §3): the pure oracle the SQL invoice engine is checked against.

Table-driven: each case gives a line's assignment history and the items expected,
with the arithmetic written out beside it (x = price·(n−d+1)/n, rounded half-up
once per item). The Hypothesis tests at the end check the invariants on random
histories: days are owned exactly once, move pairs net to zero, and what every
sub-account ends up paying is its share of the days it held the line.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.billing.money import quantum
from portal.billing.periods import Cycle
from portal.billing.proration import (
    ACTIVATION,
    DISCONNECT_CREDIT,
    MOVE_CHARGE,
    MOVE_CREDIT,
    ProrationItem,
    Run,
    Segment,
    day_runs,
    holder_at,
    line_prorations,
    owned_days,
    prorate_line,
    prorated_amount,
    recurring_amount,
)

D = Decimal
A, B, C, AVAILABLE = 1, 2, 3, 9
LINE = 7
NY = "America/New_York"
PARIS = "Europe/Paris"
TOKYO = "Asia/Tokyo"
KIRITIMATI = "Pacific/Kiritimati"
LONG_AGO = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def history(first: int, *changes: tuple[dt.datetime, int | None]) -> list[Segment]:
    """Segments of a line held by ``first`` since long ago, then by each holder from
    each instant (None = disconnected from then on)."""
    return timeline(LONG_AGO, first, *changes)


def timeline(
    start: dt.datetime, first: int, *changes: tuple[dt.datetime, int | None]
) -> list[Segment]:
    """Segments of a line activated at ``start`` into ``first``, then changed."""
    segments: list[Segment] = []
    holder: int | None = first
    since = start
    for at, new_holder in changes:
        if holder is not None:
            segments.append(Segment(holder, since, at))
        holder, since = new_holder, at
    if holder is not None:
        segments.append(Segment(holder, since, None))
    return segments


def item(kind: str, sub: int, other: int | None, day: int, days: int, amount: str):
    return ProrationItem(kind, sub, other, LINE, day, days, D(amount))


def move(source: int, target: int, day: int, days: int, amount: str) -> list[ProrationItem]:
    credit = f"-{amount}" if D(amount) else amount  # a zero credit is "0.00", not "-0.00"
    return [
        item(MOVE_CREDIT, source, target, day, days, credit),
        item(MOVE_CHARGE, target, source, day, days, amount),
    ]


JUNE = Cycle(2026, 6, "UTC")  # 30 days


# --- prorated_amount ------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "days", "n", "currency", "expected"),
    [
        ("50.00", 15, 30, "USD", "25.00"),  # domain §3's worked example
        ("50.00", 30, 30, "USD", "50.00"),
        ("50.00", 1, 30, "USD", "1.67"),  # 1.666…
        ("50.00", 0, 30, "USD", "0.00"),
        ("50.00", 1, 28, "USD", "1.79"),  # 1.7857…
        ("50.00", 1, 29, "USD", "1.72"),  # 1.7241…
        ("50.00", 16, 31, "USD", "25.81"),  # 25.806…
        ("0.70", 1, 28, "USD", "0.03"),  # exactly 0.025: half-up, not half-even
        ("0.15", 1, 30, "USD", "0.01"),  # exactly 0.005
        ("5000", 22, 31, "JPY", "3548"),  # 3548.387…
        ("100", 1, 8, "JPY", "13"),  # exactly 12.5
        ("15.250", 10, 30, "KWD", "5.083"),  # 5.08333…
        ("2.000", 1, 16, "KWD", "0.125"),  # exact, three digits kept
    ],
)
def test_prorated_amount(price: str, days: int, n: int, currency: str, expected: str) -> None:
    assert str(prorated_amount(D(price), days, n, currency)) == expected


@pytest.mark.parametrize(
    ("quantity", "price", "currency", "expected"),
    [
        (2, "50.00", "USD", "100.00"),  # domain §3's worked example, section A on June 1
        (0, "50.00", "USD", "0.00"),
        (3, "0.335", "USD", "1.01"),  # 1.005, rounded once for the section, half-up
        (7, "5000", "JPY", "35000"),
        (3, "15.250", "KWD", "45.750"),
    ],
)
def test_recurring_amount(quantity: int, price: str, currency: str, expected: str) -> None:
    assert str(recurring_amount(quantity, D(price), currency)) == expected


# --- day_runs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segments", "cycle", "runs"),
    [
        pytest.param([], JUNE, [Run(None, 1, 30)], id="never active"),
        pytest.param(history(A), JUNE, [Run(A, 1, 30)], id="held all month"),
        pytest.param(
            history(A, (utc(2026, 6, 16, 10), B)),
            JUNE,
            [Run(A, 1, 15), Run(B, 16, 30)],
            id="move: the day of the move is the target's",
        ),
        pytest.param(
            history(A, (utc(2026, 6, 16, 9), C), (utc(2026, 6, 16, 15), B)),
            JUNE,
            [Run(A, 1, 15), Run(B, 16, 30)],
            id="A to C to B in one day is A to B",
        ),
        pytest.param(
            history(A, (utc(2026, 6, 16, 9), B), (utc(2026, 6, 16, 15), A)),
            JUNE,
            [Run(A, 1, 30)],
            id="A to B to A in one day is nothing",
        ),
        pytest.param(
            history(A, (utc(2026, 6, 21, 10), None)),
            JUNE,
            [Run(A, 1, 20), Run(None, 21, 30)],
            id="disconnected on day 21",
        ),
        pytest.param(
            timeline(utc(2026, 6, 11, 10), A),
            JUNE,
            [Run(None, 1, 10), Run(A, 11, 30)],
            id="activated on day 11",
        ),
        pytest.param(
            history(A, (utc(2026, 6, 16), B)),
            JUNE,
            [Run(A, 1, 15), Run(B, 16, 30)],
            id="move at exactly midnight counts on the day it starts",
        ),
        pytest.param(
            history(A, (utc(2026, 7, 1), B)),
            JUNE,
            [Run(A, 1, 30)],
            id="move at exactly the next cycle's start is not in this cycle",
        ),
        pytest.param(
            history(A, (utc(2026, 5, 20), B)),
            JUNE,
            [Run(B, 1, 30)],
            id="history before the cycle only decides who holds it at the start",
        ),
        pytest.param(
            history(A, (utc(2026, 6, 30, 23, 59, 59), B)),
            JUNE,
            [Run(A, 1, 29), Run(B, 30, 30)],
            id="last second of the last day",
        ),
        pytest.param(
            # Tokyo (+9): 14:59:59 UTC on June 15 is June 15 23:59:59 local, and
            # 15:00:01 UTC the same UTC day is already June 16.
            history(A, (utc(2026, 6, 15, 14, 59, 59), B), (utc(2026, 6, 15, 15, 0, 1), C)),
            Cycle(2026, 6, TOKYO),
            [Run(A, 1, 14), Run(B, 15, 15), Run(C, 16, 30)],
            id="Tokyo: either side of local midnight on one UTC date",
        ),
    ],
)
def test_day_runs(segments: list[Segment], cycle: Cycle, runs: list[Run]) -> None:
    assert day_runs(segments, cycle) == runs
    assert sum(owned_days(runs).values()) == cycle.days


def test_owned_days() -> None:
    runs = [Run(A, 1, 10), Run(B, 11, 20), Run(A, 21, 25), Run(None, 26, 30)]
    assert owned_days(runs) == {A: 15, B: 10, None: 5}


def test_overlapping_segments_are_refused() -> None:
    overlapping = [Segment(A, LONG_AGO, utc(2026, 6, 16)), Segment(B, utc(2026, 6, 10), None)]
    with pytest.raises(ValueError, match="overlap"):
        day_runs(overlapping, JUNE)
    with pytest.raises(ValueError, match="overlap"):
        holder_at(overlapping, JUNE.start)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (dt.datetime(2026, 6, 1), None),  # naive on purpose
        (utc(2026, 6, 10), utc(2026, 6, 9)),
    ],
)
def test_bad_segments_are_refused(start: dt.datetime, end: dt.datetime | None) -> None:
    with pytest.raises(ValueError):
        Segment(A, start, end)


@pytest.mark.parametrize(
    ("segments", "instant", "holder"),
    [
        (history(A, (utc(2026, 6, 1), B)), utc(2026, 6, 1), B),  # half-open: B from S on
        (history(A, (utc(2026, 6, 1), None)), utc(2026, 6, 1), None),
        (timeline(utc(2026, 6, 1), A), utc(2026, 6, 1), A),
        (history(A), utc(2026, 6, 1), A),
        ([], utc(2026, 6, 1), None),
    ],
)
def test_holder_at(segments: list[Segment], instant: dt.datetime, holder: int | None) -> None:
    assert holder_at(segments, instant) == holder


# --- the whole line: history in, items out --------------------------------------

USD50 = ("50.00", "USD")


@pytest.mark.parametrize(
    ("cycle", "segments", "money", "flags", "expected"),
    [
        pytest.param(
            # n = 30, d = 16: 50.00 × 15/30 = 25.00.
            JUNE,
            history(A, (utc(2026, 6, 16, 10), B)),
            USD50,
            {},
            move(A, B, 16, 15, "25.00"),
            id="domain §3 worked example",
        ),
        pytest.param(
            JUNE,
            history(A, (utc(2026, 6, 1, 10), B)),
            USD50,
            {},
            move(A, B, 1, 30, "50.00"),
            id="move on day 1 is the full price",
        ),
        pytest.param(
            JUNE,
            history(A, (utc(2026, 6, 30, 10), B)),
            USD50,
            {},
            move(A, B, 30, 1, "1.67"),  # 50/30 = 1.666…
            id="move on day n is 1/n",
        ),
        pytest.param(
            JUNE,
            history(A, (utc(2026, 6, 16, 9), C), (utc(2026, 6, 16, 15), B)),
            USD50,
            {},
            move(A, B, 16, 15, "25.00"),
            id="A to C to B on one day collapses to A to B",
        ),
        pytest.param(
            JUNE,
            history(A, (utc(2026, 6, 16, 9), B), (utc(2026, 6, 16, 15), A)),
            USD50,
            {},
            [],
            id="A to B to A on one day is nothing",
        ),
        pytest.param(
            # d = 16: 15 days = 25.00; d = 17: 14 days = 23.333… → 23.33.
            JUNE,
            history(A, (utc(2026, 6, 16, 10), B), (utc(2026, 6, 17, 10), C)),
            USD50,
            {},
            move(A, B, 16, 15, "25.00") + move(B, C, 17, 14, "23.33"),
            id="moves on consecutive days",
        ),
        pytest.param(
            # d = 11: 20 days = 33.333… → 33.33; back on d = 21: 10 days = 16.67.
            # A pays 50 − 33.33 + 16.67 = 33.34, B 33.33 − 16.67 = 16.66: rounded
            # per item, the two still add up to exactly 50.00.
            JUNE,
            history(A, (utc(2026, 6, 11, 10), B), (utc(2026, 6, 21, 10), A)),
            USD50,
            {},
            move(A, B, 11, 20, "33.33") + move(B, A, 21, 10, "16.67"),
            id="there and back on different days",
        ),
        pytest.param(
            # 2026-06-15T14:59:59Z is June 15 23:59:59 in Tokyo: d = 15, 16 days,
            # 50 × 16/30 = 26.666… → 26.67.
            Cycle(2026, 6, TOKYO),
            history(A, (utc(2026, 6, 15, 14, 59, 59), B)),
            USD50,
            {},
            move(A, B, 15, 16, "26.67"),
            id="Tokyo: one second before local midnight",
        ),
        pytest.param(
            # Two seconds later, still June 15 in UTC, but June 16 00:00:01 in Tokyo.
            Cycle(2026, 6, TOKYO),
            history(A, (utc(2026, 6, 15, 15, 0, 1), B)),
            USD50,
            {},
            move(A, B, 16, 15, "25.00"),
            id="Tokyo: one second after local midnight",
        ),
        pytest.param(
            Cycle(2026, 6, TOKYO),
            history(A, (utc(2026, 6, 15, 15), B)),
            USD50,
            {},
            move(A, B, 16, 15, "25.00"),
            id="Tokyo: at exactly local midnight the new day starts",
        ),
        pytest.param(
            # 2026-06-16T03:30Z is June 15 23:30 EDT: d = 15 though UTC says the 16th.
            Cycle(2026, 6, NY),
            history(A, (utc(2026, 6, 16, 3, 30), B)),
            USD50,
            {},
            move(A, B, 15, 16, "26.67"),
            id="New York: UTC date ahead of the local date",
        ),
        pytest.param(
            # Kiritimati (+14): 2026-06-15T10:30Z is June 16 00:30 local.
            Cycle(2026, 6, KIRITIMATI),
            history(A, (utc(2026, 6, 15, 10, 30), B)),
            USD50,
            {},
            move(A, B, 16, 15, "25.00"),
            id="Kiritimati: local date ahead of the UTC date",
        ),
        pytest.param(
            # March 2026 (n = 31), New York springs forward on the 8th. 03:30Z on
            # the 9th is March 8 23:30 EDT: d = 8, 24 days, 50 × 24/31 = 38.709… → 38.71.
            Cycle(2026, 3, NY),
            history(A, (utc(2026, 3, 9, 3, 30), B)),
            USD50,
            {},
            move(A, B, 8, 24, "38.71"),
            id="New York DST day, late evening",
        ),
        pytest.param(
            # 04:30Z on the 9th is March 9 00:30 EDT (a fixed EST offset would still
            # say March 8): d = 9, 23 days, 37.096… → 37.10.
            Cycle(2026, 3, NY),
            history(A, (utc(2026, 3, 9, 4, 30), B)),
            USD50,
            {},
            move(A, B, 9, 23, "37.10"),
            id="New York just after the DST day",
        ),
        pytest.param(
            # Paris falls back on October 25, 2026. 22:30Z that day is 23:30 CET
            # (CEST would say the 26th): d = 25, 7 days, 50 × 7/31 = 11.290… → 11.29.
            Cycle(2026, 10, PARIS),
            history(A, (utc(2026, 10, 25, 22, 30), B)),
            USD50,
            {},
            move(A, B, 25, 7, "11.29"),
            id="Paris DST day",
        ),
        pytest.param(
            JUNE,
            timeline(utc(2026, 6, 16, 10), B),
            USD50,
            {},
            [item(ACTIVATION, B, None, 16, 15, "25.00")],
            id="activation on day 16, prorated",
        ),
        pytest.param(
            JUNE,
            timeline(utc(2026, 6, 16, 10), B),
            USD50,
            {"prorate_new_lines": False},
            [item(ACTIVATION, B, None, 16, 15, "50.00")],
            id="activation on day 16, full price",
        ),
        pytest.param(
            # Fulfilled into Available, assigned to A the same day: A holds it at the
            # end of the day, so A's section carries the charge.
            JUNE,
            timeline(utc(2026, 6, 16, 10), AVAILABLE, (utc(2026, 6, 16, 11), A)),
            USD50,
            {},
            [item(ACTIVATION, A, None, 16, 15, "25.00")],
            id="activation then assignment on the same day",
        ),
        pytest.param(
            # Activated d = 11 (20 days, 33.33), moved d = 21 (10 days, 16.67).
            JUNE,
            timeline(utc(2026, 6, 11, 10), A, (utc(2026, 6, 21, 10), B)),
            USD50,
            {},
            [item(ACTIVATION, A, None, 11, 20, "33.33"), *move(A, B, 21, 10, "16.67")],
            id="activation then move in the same month",
        ),
        pytest.param(
            JUNE,
            timeline(utc(2026, 6, 11, 10), A, (utc(2026, 6, 21, 10), B)),
            USD50,
            {"prorate_new_lines": False},
            [item(ACTIVATION, A, None, 11, 20, "50.00"), *move(A, B, 21, 10, "16.67")],
            id="activation at full price then move",
        ),
        pytest.param(
            JUNE,
            timeline(utc(2026, 6, 1), A),
            USD50,
            {},
            [],
            id="activated at exactly S: charged in advance, nothing to prorate",
        ),
        pytest.param(
            JUNE,
            timeline(utc(2026, 7, 1), A),
            USD50,
            {},
            [],
            id="activated at exactly E: belongs to the next cycle",
        ),
        pytest.param(
            JUNE,
            history(A, (utc(2026, 7, 1), B)),
            USD50,
            {},
            [],
            id="moved at exactly E (e.g. a merge at the next cycle start): no proration",
        ),
        pytest.param(
            JUNE,
            history(A, (utc(2026, 6, 21, 10), None)),
            USD50,
            {},
            [],
            id="disconnect, no refund by default",
        ),
        pytest.param(
            # d = 21: 10 unused days, 16.666… → 16.67.
            JUNE,
            history(A, (utc(2026, 6, 21, 10), None)),
            USD50,
            {"credit_disconnects": True},
            [item(DISCONNECT_CREDIT, A, None, 21, 10, "-16.67")],
            id="disconnect credited",
        ),
        pytest.param(
            JUNE,
            history(A, (utc(2026, 6, 1, 10), None)),
            USD50,
            {"credit_disconnects": True},
            [item(DISCONNECT_CREDIT, A, None, 1, 30, "-50.00")],
            id="disconnect on day 1 credits the full price",
        ),
        pytest.param(
            JUNE,
            history(A, (utc(2026, 7, 1), None)),
            USD50,
            {"credit_disconnects": True},
            [],
            id="disconnected at exactly E: every June day was used",
        ),
        pytest.param(
            # The credit goes to B, the section charged for days 21..30.
            JUNE,
            history(A, (utc(2026, 6, 11, 10), B), (utc(2026, 6, 21, 10), None)),
            USD50,
            {"credit_disconnects": True},
            [*move(A, B, 11, 20, "33.33"), item(DISCONNECT_CREDIT, B, None, 21, 10, "-16.67")],
            id="move then disconnect, credited to the target",
        ),
        pytest.param(
            # +33.33 − 16.67 = 16.66 for 10 days: each item rounded on its own.
            JUNE,
            timeline(utc(2026, 6, 11, 10), A, (utc(2026, 6, 21, 10), None)),
            USD50,
            {"credit_disconnects": True},
            [
                item(ACTIVATION, A, None, 11, 20, "33.33"),
                item(DISCONNECT_CREDIT, A, None, 21, 10, "-16.67"),
            ],
            id="activated and disconnected in the same month",
        ),
        pytest.param(
            JUNE,
            timeline(utc(2026, 6, 11, 10), A, (utc(2026, 6, 11, 18), None)),
            USD50,
            {"credit_disconnects": True},
            [],
            id="activated and disconnected on the same day",
        ),
        pytest.param(
            # July 2026, n = 31, d = 10: 22 days, 5000 × 22/31 = 3548.387… → 3548.
            Cycle(2026, 7, "UTC"),
            history(A, (utc(2026, 7, 10, 10), B)),
            ("5000", "JPY"),
            {},
            move(A, B, 10, 22, "3548"),
            id="JPY has no minor unit",
        ),
        pytest.param(
            # d = 21: 10 days, 15.250/3 = 5.08333… → 5.083.
            JUNE,
            history(A, (utc(2026, 6, 21, 10), B)),
            ("15.250", "KWD"),
            {},
            move(A, B, 21, 10, "5.083"),
            id="KWD has three digits",
        ),
        pytest.param(
            # February 2026, n = 28, d = 15: 14 days, exactly half.
            Cycle(2026, 2, "UTC"),
            history(A, (utc(2026, 2, 15, 10), B)),
            USD50,
            {},
            move(A, B, 15, 14, "25.00"),
            id="28-day month",
        ),
        pytest.param(
            # February 2028, n = 29, d = 29: 1 day, 1.7241… → 1.72.
            Cycle(2028, 2, "UTC"),
            history(A, (utc(2028, 2, 29, 10), B)),
            USD50,
            {},
            move(A, B, 29, 1, "1.72"),
            id="29-day month, leap day",
        ),
        pytest.param(
            # July, n = 31, d = 16: 16 days, 25.806… → 25.81.
            Cycle(2026, 7, "UTC"),
            history(A, (utc(2026, 7, 16, 10), B)),
            USD50,
            {},
            move(A, B, 16, 16, "25.81"),
            id="31-day month",
        ),
        pytest.param(
            # 0.70 × 1/28 = 0.025 exactly: half-up gives 0.03 (half-even 0.02).
            Cycle(2026, 2, "UTC"),
            history(A, (utc(2026, 2, 28, 10), B)),
            ("0.70", "USD"),
            {},
            move(A, B, 28, 1, "0.03"),
            id="exact half rounds up",
        ),
        pytest.param(
            JUNE,
            history(A, (utc(2026, 6, 16, 10), B)),
            ("0.00", "USD"),
            {},
            move(A, B, 16, 15, "0.00"),
            id="free lines still explain their moves, with no minus zero",
        ),
    ],
)
def test_prorate_line(
    cycle: Cycle,
    segments: list[Segment],
    money: tuple[str, str],
    flags: dict[str, bool],
    expected: list[ProrationItem],
) -> None:
    price, currency = money
    items = prorate_line(
        line_id=LINE, segments=segments, cycle=cycle, price=D(price), currency=currency, **flags
    )
    assert items == expected
    assert [str(i.amount) for i in items] == [str(i.amount) for i in expected]


def test_worked_example_invoice() -> None:
    """domain §3: June 1, A holds 2 lines (A = 100.00 on the June invoice); on June 16 one
    moves to B. July invoice: A = 1 × 50.00 − 25.00, B = 1 × 50.00 + 25.00."""
    price = D("50.00")
    moved = history(A, (utc(2026, 6, 16, 10), B))
    stayed = history(A)
    june = recurring_amount(2, price, "USD")
    assert june == D("100.00")

    july_start = JUNE.end
    sections: dict[int, Decimal] = {}
    for segments in (moved, stayed):
        holder = holder_at(segments, july_start)
        assert holder is not None
        sections[holder] = sections.get(holder, D(0)) + price
    for line_id, segments in enumerate((moved, stayed)):
        for it in prorate_line(
            line_id=line_id, segments=segments, cycle=JUNE, price=price, currency="USD"
        ):
            sections[it.sub_account_id] += it.amount
    assert sections == {A: D("25.00"), B: D("75.00")}


@pytest.mark.parametrize(
    ("invoiced", "runs"),
    [
        pytest.param(A, [Run(None, 1, 10), Run(B, 11, 30)], id="disconnected at S, back later"),
        pytest.param(
            None, [Run(None, 1, 4), Run(A, 5, 9), Run(None, 10, 19), Run(A, 20, 30)], id="twice"
        ),
    ],
)
def test_a_line_never_comes_back(invoiced: int | None, runs: list[Run]) -> None:
    with pytest.raises(ValueError, match="never reactivated"):
        line_prorations(
            line_id=LINE,
            invoiced_holder=invoiced,
            runs=runs,
            cycle_days=30,
            price=D("50.00"),
            currency="USD",
        )


@pytest.mark.parametrize(
    "runs",
    [
        pytest.param([], id="empty"),
        pytest.param([Run(A, 1, 29)], id="short"),
        pytest.param([Run(A, 1, 31)], id="long"),
        pytest.param([Run(A, 1, 10), Run(B, 12, 30)], id="gap"),
        pytest.param([Run(A, 1, 10), Run(B, 10, 30)], id="overlap"),
        pytest.param([Run(B, 11, 30), Run(A, 1, 10)], id="out of order"),
    ],
)
def test_runs_must_cover_the_cycle_once(runs: list[Run]) -> None:
    with pytest.raises(ValueError, match="cover"):
        line_prorations(
            line_id=LINE,
            invoiced_holder=A,
            runs=runs,
            cycle_days=30,
            price=D("50.00"),
            currency="USD",
        )


def test_negative_price_is_refused() -> None:
    with pytest.raises(ValueError):
        line_prorations(
            line_id=LINE,
            invoiced_holder=A,
            runs=[Run(B, 1, 30)],
            cycle_days=30,
            price=D("-1.00"),
            currency="USD",
        )


# --- properties -----------------------------------------------------------------

ZONES = ["UTC", NY, PARIS, TOKYO, KIRITIMATI, "America/Santiago", "Australia/Lord_Howe"]
MONTHS = [(2026, 2), (2028, 2), (2026, 3), (2026, 4), (2026, 6), (2026, 9), (2026, 10), (2026, 11)]
SUB_ACCOUNTS = st.sampled_from([A, B, C, AVAILABLE])


@st.composite
def cycles(draw: st.DrawFn) -> Cycle:
    year, month = draw(st.sampled_from(MONTHS))
    return Cycle(year, month, draw(st.sampled_from(ZONES)))


@st.composite
def prices(draw: st.DrawFn) -> tuple[Decimal, str]:
    currency = draw(st.sampled_from(["USD", "JPY", "KWD"]))
    units = draw(st.integers(min_value=0, max_value=10**7))
    return D(units) * quantum(currency), currency


def instants(cycle: Cycle) -> st.SearchStrategy[dt.datetime]:
    """Instants near what matters: local midnights, a microsecond either side,
    anywhere in a day, and a little before or after the cycle."""
    bounds = [cycle.start, *cycle.day_ends()]
    one = dt.timedelta(microseconds=1)

    @st.composite
    def instant(draw: st.DrawFn) -> dt.datetime:
        day = draw(st.integers(min_value=1, max_value=cycle.days))
        begin, end = bounds[day - 1], bounds[day]
        kind = draw(st.sampled_from(["midnight", "before", "after", "inside", "outside"]))
        if kind == "midnight":
            return begin
        if kind == "before":
            return end - one
        if kind == "after":
            return begin + one
        if kind == "inside":
            seconds = draw(st.integers(min_value=0, max_value=int((end - begin).total_seconds())))
            return min(begin + dt.timedelta(seconds=seconds), end - one)
        hours = draw(st.integers(min_value=1, max_value=72))
        side = draw(st.sampled_from([cycle.start, cycle.end]))
        return side + dt.timedelta(hours=hours if side == cycle.end else -hours)

    return instant()


@st.composite
def moves_only(draw: st.DrawFn, cycle: Cycle) -> list[Segment]:
    """A line held since long ago and moved a few times, never disconnected."""
    at = sorted(draw(st.lists(instants(cycle), max_size=6)))
    holders = draw(st.lists(SUB_ACCOUNTS, min_size=len(at) + 1, max_size=len(at) + 1))
    return history(holders[0], *zip(at, holders[1:], strict=True))


@st.composite
def any_history(draw: st.DrawFn, cycle: Cycle) -> list[Segment]:
    """Moves, optionally after an activation and before a disconnect."""
    at = sorted(draw(st.lists(instants(cycle), min_size=2, max_size=7)))
    holders: list[int | None] = list(
        draw(st.lists(SUB_ACCOUNTS, min_size=len(at), max_size=len(at)))
    )
    if draw(st.booleans()):
        holders[-1] = None  # the last change is a disconnect
    start = at[0] if draw(st.booleans()) else LONG_AGO
    return timeline(start, holders[0], *zip(at[1:], holders[1:], strict=True))


def expected_holders(segments: list[Segment], cycle: Cycle) -> list[int | None]:
    """Day holders worked out independently, with day_of: a segment [start, end)
    holds days day_of(start) .. day_of(end) − 1 (a change counts on its own day)."""
    holders: list[int | None] = [None] * cycle.days
    for segment in segments:
        if segment.start >= cycle.end or (segment.end is not None and segment.end < cycle.start):
            continue
        first = cycle.day_of(segment.start) if segment.start >= cycle.start else 1
        if segment.end is None or segment.end >= cycle.end:
            last = cycle.days
        else:
            last = cycle.day_of(segment.end) - 1 if segment.end >= cycle.start else 0
        for day in range(first, last + 1):
            assert holders[day - 1] is None  # segments never overlap, so no day is shared
            holders[day - 1] = segment.sub_account_id
    return holders


def expand(runs: list[Run]) -> list[int | None]:
    return [run.holder for run in runs for _ in range(run.days)]


def charges(invoiced: int | None, items: list[ProrationItem], price: Decimal) -> dict[int, Decimal]:
    """What each sub-account pays for the line: its in-advance share plus its items."""
    paid: dict[int, Decimal] = {}
    if invoiced is not None:
        paid[invoiced] = price
    for it in items:
        paid[it.sub_account_id] = paid.get(it.sub_account_id, D(0)) + it.amount
    return paid


def assert_pairs_are_exact(items: list[ProrationItem]) -> None:
    for index, it in enumerate(items):
        if it.kind == MOVE_CREDIT:
            charge = items[index + 1]
            assert charge.kind == MOVE_CHARGE
            assert charge.amount == -it.amount
            assert charge.amount >= 0
            assert (charge.sub_account_id, charge.other_sub_account_id) == (
                it.other_sub_account_id,
                it.sub_account_id,
            )
            assert (charge.line_id, charge.day, charge.days) == (it.line_id, it.day, it.days)
        if it.kind == MOVE_CHARGE:
            assert items[index - 1].kind == MOVE_CREDIT


@settings(max_examples=200, deadline=None)
@given(data=st.data(), cycle=cycles(), money=prices())
def test_moves_net_to_zero_and_share_the_price_by_days(
    data: st.DataObject, cycle: Cycle, money: tuple[Decimal, str]
) -> None:
    price, currency = money
    q = quantum(currency)
    n = cycle.days
    lines = data.draw(st.lists(moves_only(cycle), min_size=1, max_size=4))
    partner_total = D(0)
    for line_id, segments in enumerate(lines):
        runs = day_runs(segments, cycle)
        # (1) every day of the cycle is owned exactly once, by the holder at its end
        assert runs[0].first_day == 1 and runs[-1].last_day == n
        assert all(r.first_day == p.last_day + 1 for p, r in pairwise(runs))
        assert expand(runs) == expected_holders(segments, cycle)
        assert None not in owned_days(runs)
        assert sum(owned_days(runs).values()) == n

        invoiced = holder_at(segments, cycle.start)
        items = line_prorations(
            line_id=line_id,
            invoiced_holder=invoiced,
            runs=runs,
            cycle_days=n,
            price=price,
            currency=currency,
        )
        assert items == prorate_line(
            line_id=line_id, segments=segments, cycle=cycle, price=price, currency=currency
        )
        assert {it.kind for it in items} <= {MOVE_CREDIT, MOVE_CHARGE}
        assert all(it.days == n - it.day + 1 and it.amount == it.amount.quantize(q) for it in items)
        # (2) the line's items net to exactly zero
        assert sum((it.amount for it in items), D(0)) == 0
        partner_total += sum((it.amount for it in items), D(0))
        # (3) every move is one credit and one charge, exactly opposite
        assert_pairs_are_exact(items)
        # (4) each sub-account pays its share of its days, give or take the rounding
        # of its own items; together they pay exactly the price charged in advance
        paid = charges(invoiced, items, price)
        assert sum(paid.values(), D(0)) == price
        days = owned_days(runs)
        for holder in set(paid) | set(days):
            rounding = sum(1 for it in items if it.sub_account_id == holder) * q / 2
            exact = price * days.get(holder, 0) / n
            assert abs(paid.get(holder, D(0)) - exact) <= rounding + D("1e-20")
    assert partner_total == 0


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    cycle=cycles(),
    money=prices(),
    prorate_new_lines=st.booleans(),
    credit_disconnects=st.booleans(),
)
def test_activations_and_disconnects_never_overcharge_or_overcredit(
    data: st.DataObject,
    cycle: Cycle,
    money: tuple[Decimal, str],
    prorate_new_lines: bool,
    credit_disconnects: bool,
) -> None:
    price, currency = money
    q = quantum(currency)
    n = cycle.days
    segments = data.draw(any_history(cycle))
    runs = day_runs(segments, cycle)
    assert expand(runs) == expected_holders(segments, cycle)
    invoiced = holder_at(segments, cycle.start)
    items = line_prorations(
        line_id=LINE,
        invoiced_holder=invoiced,
        runs=runs,
        cycle_days=n,
        price=price,
        currency=currency,
        prorate_new_lines=prorate_new_lines,
        credit_disconnects=credit_disconnects,
    )
    assert_pairs_are_exact(items)
    kinds = [it.kind for it in items]
    assert kinds.count(ACTIVATION) <= 1 and kinds.count(DISCONNECT_CREDIT) <= 1
    if invoiced is not None:
        assert ACTIVATION not in kinds
    if not credit_disconnects:
        assert DISCONNECT_CREDIT not in kinds
    # a credit goes to the section that held the line until the disconnect
    for it in items:
        if it.kind == DISCONNECT_CREDIT:
            before = expand(runs)[it.day - 2] if it.day > 1 else invoiced
            assert before == it.sub_account_id
            assert expand(runs)[it.day - 1 :] == [None] * it.days

    paid = charges(invoiced, items, price)
    line_total = sum(paid.values(), D(0))
    assert line_total >= 0  # never credited more than was charged
    assert line_total <= price  # a line never costs more than a month
    active_days = n - owned_days(runs).get(None, 0)
    if invoiced is None and active_days == 0:
        assert items == []
    if prorate_new_lines and credit_disconnects:
        # then every section pays for exactly its days, up to its items' rounding
        days = owned_days(runs)
        for holder in set(paid) | {h for h in days if h is not None}:
            rounding = sum(1 for it in items if it.sub_account_id == holder) * q / 2
            exact = price * days.get(holder, 0) / n
            assert abs(paid.get(holder, D(0)) - exact) <= rounding + D("1e-20")
