"""Billing cycles: calendar months in the partner's timezone, as UTC instants.

Expected instants are written out by hand from each zone's offsets (EST −5 / EDT −4,
CET +1 / CEST +2, JST +9, LINT +14): a cycle or a day boundary computed in UTC, or
with a fixed offset across a DST change, would miss them by hours.
"""

from __future__ import annotations

import datetime as dt

import pytest

from portal.billing.periods import Cycle, cycle_containing

NY = "America/New_York"
PARIS = "Europe/Paris"
TOKYO = "Asia/Tokyo"
KIRITIMATI = "Pacific/Kiritimati"


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("year", "month", "days"),
    [
        (2026, 2, 28),
        (2028, 2, 29),  # leap year
        (2100, 2, 28),  # divisible by 100, not by 400
        (2000, 2, 29),  # divisible by 400
        (2026, 4, 30),
        (2026, 6, 30),
        (2026, 7, 31),
        (2026, 12, 31),
        (2027, 1, 31),
    ],
)
def test_days_in_cycle(year: int, month: int, days: int) -> None:
    cycle = Cycle(year, month, "UTC")
    assert cycle.days == days
    assert len(cycle.day_ends()) == days


@pytest.mark.parametrize(
    ("tz", "year", "month", "start", "end"),
    [
        ("UTC", 2026, 6, utc(2026, 6, 1), utc(2026, 7, 1)),
        (NY, 2026, 6, utc(2026, 6, 1, 4), utc(2026, 7, 1, 4)),  # EDT −4
        (NY, 2026, 1, utc(2026, 1, 1, 5), utc(2026, 2, 1, 5)),  # EST −5
        (NY, 2026, 3, utc(2026, 3, 1, 5), utc(2026, 4, 1, 4)),  # EST → EDT inside
        (NY, 2026, 11, utc(2026, 11, 1, 4), utc(2026, 12, 1, 5)),  # EDT → EST inside
        (PARIS, 2026, 6, utc(2026, 5, 31, 22), utc(2026, 6, 30, 22)),  # CEST +2
        (PARIS, 2026, 10, utc(2026, 9, 30, 22), utc(2026, 10, 31, 23)),  # CEST → CET
        (PARIS, 2026, 1, utc(2025, 12, 31, 23), utc(2026, 1, 31, 23)),  # CET +1
        (TOKYO, 2026, 6, utc(2026, 5, 31, 15), utc(2026, 6, 30, 15)),  # JST +9
        (KIRITIMATI, 2026, 6, utc(2026, 5, 31, 10), utc(2026, 6, 30, 10)),  # +14
        (KIRITIMATI, 2027, 1, utc(2026, 12, 31, 10), utc(2027, 1, 31, 10)),
    ],
)
def test_cycle_start_and_end_in_utc(
    tz: str, year: int, month: int, start: dt.datetime, end: dt.datetime
) -> None:
    cycle = Cycle(year, month, tz)
    assert cycle.start == start
    assert cycle.end == end
    assert cycle.day_end(cycle.days) == end
    assert cycle.next().start == end  # cycles tile: no gap, no overlap


@pytest.mark.parametrize(
    ("tz", "year", "month", "day", "end"),
    [
        # New York, March 2026: clocks go 02:00 EST → 03:00 EDT on Sunday March 8.
        (NY, 2026, 3, 7, utc(2026, 3, 8, 5)),  # March 8 00:00 EST
        (NY, 2026, 3, 8, utc(2026, 3, 9, 4)),  # March 9 00:00 EDT: day 8 has 23 h
        (NY, 2026, 3, 9, utc(2026, 3, 10, 4)),
        # New York, November 2026: 02:00 EDT → 01:00 EST on Sunday November 1.
        (NY, 2026, 11, 1, utc(2026, 11, 2, 5)),  # November 2 00:00 EST: day 1 has 25 h
        (NY, 2026, 11, 2, utc(2026, 11, 3, 5)),
        # Paris, October 2026: 03:00 CEST → 02:00 CET on Sunday October 25.
        (PARIS, 2026, 10, 24, utc(2026, 10, 24, 22)),  # October 25 00:00 CEST
        (PARIS, 2026, 10, 25, utc(2026, 10, 25, 23)),  # October 26 00:00 CET: 25 h
        (PARIS, 2026, 10, 31, utc(2026, 10, 31, 23)),
        # Tokyo has no DST: every day ends at 15:00 UTC.
        (TOKYO, 2026, 6, 15, utc(2026, 6, 15, 15)),
        # Kiritimati, a day ahead of UTC: June 1 ends at 10:00 UTC on June 1.
        (KIRITIMATI, 2026, 6, 1, utc(2026, 6, 1, 10)),
    ],
)
def test_day_end(tz: str, year: int, month: int, day: int, end: dt.datetime) -> None:
    assert Cycle(year, month, tz).day_end(day) == end


@pytest.mark.parametrize(
    ("tz", "year", "month", "instant", "day"),
    [
        # New York, March 2026, around the spring-forward gap and the day ends.
        (NY, 2026, 3, utc(2026, 3, 8, 4, 59, 59), 7),  # March 7 23:59:59 EST
        (NY, 2026, 3, utc(2026, 3, 8, 5), 8),  # March 8 00:00 EST
        (NY, 2026, 3, utc(2026, 3, 8, 6, 59), 8),  # 01:59 EST, just before the gap
        (NY, 2026, 3, utc(2026, 3, 8, 7), 8),  # 03:00 EDT, just after it
        (NY, 2026, 3, utc(2026, 3, 9, 3, 59, 59), 8),  # March 8 23:59:59 EDT
        (NY, 2026, 3, utc(2026, 3, 9, 4), 9),  # March 9 00:00 EDT (EST would say 23:00)
        (NY, 2026, 3, utc(2026, 3, 9, 4, 30), 9),
        # New York, November 2026: 01:00–02:00 happens twice on November 1.
        (NY, 2026, 11, utc(2026, 11, 1, 5, 30), 1),  # 01:30 EDT
        (NY, 2026, 11, utc(2026, 11, 1, 6, 30), 1),  # 01:30 EST, the second time
        (NY, 2026, 11, utc(2026, 11, 2, 4, 30), 1),  # November 1 23:30 EST (EDT: Nov 2)
        (NY, 2026, 11, utc(2026, 11, 2, 5), 2),
        # Paris, October 2026.
        (PARIS, 2026, 10, utc(2026, 10, 24, 21, 59), 24),  # October 24 23:59 CEST
        (PARIS, 2026, 10, utc(2026, 10, 24, 22), 25),  # October 25 00:00 CEST
        (PARIS, 2026, 10, utc(2026, 10, 25, 22, 30), 25),  # Oct 25 23:30 CET (CEST: 26th)
        (PARIS, 2026, 10, utc(2026, 10, 25, 23), 26),
        # The local date differs from the UTC date.
        (NY, 2026, 6, utc(2026, 7, 1, 2), 30),  # June 30 22:00 EDT
        (NY, 2026, 6, utc(2026, 6, 1, 3, 59, 59), None),  # May 31 23:59:59: outside June
        (TOKYO, 2026, 6, utc(2026, 6, 15, 14, 59, 59), 15),  # June 15 23:59:59 JST
        (TOKYO, 2026, 6, utc(2026, 6, 15, 15), 16),  # June 16 00:00 JST, UTC still 15th
        (KIRITIMATI, 2026, 7, utc(2026, 6, 30, 10), 1),  # July 1 00:00 +14
    ],
)
def test_day_of(tz: str, year: int, month: int, instant: dt.datetime, day: int | None) -> None:
    cycle = Cycle(year, month, tz)
    if day is None:
        with pytest.raises(ValueError):
            cycle.day_of(instant)
    else:
        assert cycle.day_of(instant) == day


@pytest.mark.parametrize("tz", ["UTC", NY, PARIS, TOKYO, KIRITIMATI, "America/Santiago"])
@pytest.mark.parametrize(("year", "month"), [(2026, 3), (2026, 4), (2026, 9), (2026, 10)])
def test_day_of_and_day_end_agree(tz: str, year: int, month: int) -> None:
    """Day d is exactly [day_end(d−1), day_end(d)), whatever the DST changes
    (America/Santiago skips local midnight itself in September)."""
    cycle = Cycle(year, month, tz)
    just = dt.timedelta(microseconds=1)
    begin = cycle.start
    for day, end in enumerate(cycle.day_ends(), start=1):
        assert begin < end
        assert cycle.day_of(begin) == day
        assert cycle.day_of(end - just) == day
        begin = end
    assert begin == cycle.end


def test_day_of_needs_an_aware_instant() -> None:
    with pytest.raises(ValueError):
        Cycle(2026, 6, NY).day_of(dt.datetime(2026, 6, 15, 12))  # naive


@pytest.mark.parametrize("day", [0, 31])
def test_day_numbers_outside_the_cycle_are_refused(day: int) -> None:
    with pytest.raises(ValueError):
        Cycle(2026, 6, "UTC").day_end(day)


@pytest.mark.parametrize(
    ("instant", "tz", "expected"),
    [
        (utc(2026, 7, 1, 2), NY, Cycle(2026, 6, NY)),  # June 30 22:00 in New York
        (utc(2026, 7, 1, 2), "UTC", Cycle(2026, 7, "UTC")),
        (utc(2026, 7, 1, 4), NY, Cycle(2026, 7, NY)),  # July 1 00:00 EDT exactly
        (utc(2026, 6, 30, 15), TOKYO, Cycle(2026, 7, TOKYO)),  # July 1 00:00 JST
        (utc(2026, 6, 30, 9, 59), KIRITIMATI, Cycle(2026, 6, KIRITIMATI)),
        (utc(2026, 12, 31, 23), PARIS, Cycle(2027, 1, PARIS)),  # New Year in Paris
        (utc(2027, 1, 1, 3), NY, Cycle(2026, 12, NY)),  # still December 31 in New York
    ],
)
def test_cycle_containing(instant: dt.datetime, tz: str, expected: Cycle) -> None:
    cycle = cycle_containing(instant, tz)
    assert cycle == expected
    assert cycle.start <= instant < cycle.end


@pytest.mark.parametrize(
    ("cycle", "previous", "following"),
    [
        (Cycle(2026, 12, NY), Cycle(2026, 11, NY), Cycle(2027, 1, NY)),
        (Cycle(2027, 1, NY), Cycle(2026, 12, NY), Cycle(2027, 2, NY)),
        (Cycle(2028, 2, "UTC"), Cycle(2028, 1, "UTC"), Cycle(2028, 3, "UTC")),
    ],
)
def test_previous_and_next(cycle: Cycle, previous: Cycle, following: Cycle) -> None:
    assert cycle.previous() == previous
    assert cycle.next() == following
    assert cycle.next().previous() == cycle
    assert cycle.previous().end == cycle.start


def test_new_year_boundary_in_kiritimati() -> None:
    # December 2026 in UTC+14 ends at 10:00 UTC on December 31.
    december = Cycle(2026, 12, KIRITIMATI)
    assert december.end == utc(2026, 12, 31, 10)
    assert december.next() == Cycle(2027, 1, KIRITIMATI)
    assert december.next().start == december.end
