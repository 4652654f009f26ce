"""Billing cycles: calendar months in the partner's timezone, as UTC instants.

Pure functions: no database, no clock. A cycle is ``[start, end)`` from 00:00 on
the 1st to 00:00 on the 1st of the next month, local time; its days are numbered
1..n. "The end of day d" is the local midnight that closes it, so a DST change
inside the month moves the UTC instants but never the day numbers.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Cycle:
    """One billing month of one timezone."""

    year: int
    month: int
    tz: str

    @cached_property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.tz)

    @property
    def first_day(self) -> dt.date:
        return dt.date(self.year, self.month, 1)

    @property
    def days(self) -> int:
        """``n``, the number of days in the cycle (28 to 31)."""
        return (self.next().first_day - self.first_day).days

    def _midnight(self, day: dt.date) -> dt.datetime:
        # Local midnight as an aware UTC instant. Where a zone skips midnight (a DST
        # change at 00:00), fold=0 gives the instant just after the gap.
        local = dt.datetime.combine(day, dt.time(0), tzinfo=self.zone)
        return local.astimezone(dt.UTC)

    @property
    def start(self) -> dt.datetime:
        return self._midnight(self.first_day)

    @property
    def end(self) -> dt.datetime:
        return self._midnight(self.next().first_day)

    def date_of(self, day: int) -> dt.date:
        """The calendar date of day ``day`` (1-based)."""
        if not 1 <= day <= self.days:
            raise ValueError(f"day {day} is outside 1..{self.days}")
        return self.first_day + dt.timedelta(days=day - 1)

    def day_end(self, day: int) -> dt.datetime:
        """The UTC instant that closes day ``day``: local midnight after it."""
        return self._midnight(self.date_of(day) + dt.timedelta(days=1))

    def day_ends(self) -> list[dt.datetime]:
        """``day_end(1) … day_end(n)``."""
        return [self.day_end(d) for d in range(1, self.days + 1)]

    def day_of(self, instant: dt.datetime) -> int:
        """The day number (1..n) whose local date contains ``instant``."""
        if instant.tzinfo is None:
            raise ValueError("day_of needs an aware datetime")
        if not self.start <= instant < self.end:
            raise ValueError(f"{instant.isoformat()} is outside the cycle {self}")
        return (instant.astimezone(self.zone).date() - self.first_day).days + 1

    def next(self) -> Cycle:
        year, month = (self.year + 1, 1) if self.month == 12 else (self.year, self.month + 1)
        return Cycle(year, month, self.tz)

    def previous(self) -> Cycle:
        year, month = (self.year - 1, 12) if self.month == 1 else (self.year, self.month - 1)
        return Cycle(year, month, self.tz)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d} ({self.tz})"


def cycle_containing(instant: dt.datetime, tz: str) -> Cycle:
    """The cycle of timezone ``tz`` that contains ``instant``."""
    if instant.tzinfo is None:
        raise ValueError("cycle_containing needs an aware datetime")
    local = instant.astimezone(zoneinfo.ZoneInfo(tz))
    return Cycle(local.year, local.month, tz)


def cycles_from(first: Cycle, last: Cycle) -> list[Cycle]:
    """``first``, its next, … up to ``last`` included, oldest first (empty when ``last``
    comes before ``first``). Both in the same timezone."""
    if first.tz != last.tz:
        raise ValueError(f"cycles_from needs one timezone, not {first.tz} and {last.tz}")
    cycles: list[Cycle] = []
    cycle = first
    while (cycle.year, cycle.month) <= (last.year, last.month):
        cycles.append(cycle)
        cycle = cycle.next()
    return cycles
