"""Volume pressure of line-days (domain §4): pure, no database, no clock.

A line-day is judged once, against the limit the line had at the end of that day
(whenever its events arrive), by the new conversations it started that day. Rollups
are kept per (line, holder, day), so a line moved mid-day has a row per holder and
each row is its own line-day; except that a merge moves a line's history with it: on
the day of a merge the rows of the source(s) and of the target are one line-day of
the target, their new conversations judged together (never two halves that each stay
under the limit). This module groups rows into those units and says which row carries
each unit's flags (the row of the sub-account that held the line at the unit's end).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from typing import NamedTuple

NEAR_LIMIT_TENTHS = 9  # "near the limit" is >= 90 % of it


def pressure(new_conversations: int, daily_limit: int) -> tuple[int, int]:
    """A line-day's near-limit and over-limit flags, as counts of line-days."""
    return (
        int(new_conversations * 10 >= daily_limit * NEAR_LIMIT_TENTHS),
        int(new_conversations >= daily_limit),
    )


class Span(NamedTuple):
    """An assignment period of one line: ``[start, end)`` in ``sub_account_id``."""

    sub_account_id: int
    start: dt.datetime
    end: dt.datetime | None
    via_merge: bool


def merge_heads(
    spans: Iterable[Span], day_start: dt.datetime, day_end: dt.datetime
) -> dict[int, int]:
    """For one line and day: each sub-account the line left *by a merge* that day -> the
    sub-account whose line-day it joins (the end of the chain of merges that day).
    Empty when no merge moved the line that day (the usual case)."""
    ordered = sorted(spans, key=lambda s: s.start)
    heads: dict[int, int] = {}
    # Latest first, so a chain S -> T -> U (all merges that day) ends at U.
    for before, after in reversed(list(itertools.pairwise(ordered))):
        if (
            after.via_merge
            and before.end == after.start
            and day_start < after.start < day_end
            and before.sub_account_id != after.sub_account_id
        ):
            heads[before.sub_account_id] = heads.get(after.sub_account_id, after.sub_account_id)
    return heads


class Judged(NamedTuple):
    """What a line rollup row must hold: the day's limit and its pressure flags."""

    daily_limit: int
    near: int
    over: int


def judge(rows: dict[int, int], daily_limit: int, heads: dict[int, int]) -> dict[int, Judged]:
    """One line-day's rows (sub-account -> new conversations) -> what each row holds.

    Rows joined by a merge are summed and the unit's flags go on its head's row (which
    may have no conversations of its own: it is returned all the same); every other row
    of the unit carries none.
    """
    units: dict[int, int] = {}
    for sub_account_id, new in rows.items():
        head = heads.get(sub_account_id, sub_account_id)
        units[head] = units.get(head, 0) + new
    result = {sa: Judged(daily_limit, 0, 0) for sa in rows}
    for head, new in units.items():
        result[head] = Judged(daily_limit, *pressure(new, daily_limit))
    return result


def limit_at_day_end(
    changes: Sequence[tuple[dt.datetime, int]], current: int, day_end: dt.datetime
) -> int:
    """The limit in force at the end of a day: the ``old_limit`` of the line's first change
    at or after the day's end (``changes``: ``(at, old_limit)`` in order), else ``current``."""
    for at, old_limit in changes:
        if at >= day_end:
            return old_limit
    return current
