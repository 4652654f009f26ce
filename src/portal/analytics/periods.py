"""Periods of partner-local days and the figures summed over them.

:class:`Period` and :func:`analytics_period` (the dates asked for, checked),
:func:`local_midnight`, :class:`Metrics` (the sums of one sub-account over a period or
a day, with its rates) and :data:`ROLLUP_SUMS`, and the SQL selecting the fewest stored
rollup rows (whole months, whole weeks, single days) that add up to a period. The
floor every analytics read and write stands on; it reads no principal.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import QuerySet, Sum

from portal.analytics.models import DailySubAccountRollup, Grain, SubAccountRollupBucket
from portal.core import clock
from portal.core.errors import Invalid
from portal.partners.models import Partner

DEFAULT_DAYS = 30
MAX_DAYS = 366


_COUNTS = (
    "messages_sent",
    "messages_received",
    "new_conversations",
    "responded_conversations",
    "inbound_conversations",
)
# Every summed column of DailySubAccountRollup.
ROLLUP_SUMS = (
    *_COUNTS,
    "near_limit_line_days",
    "over_pressured_line_days",
    "active_line_days",
    "limit_line_days",
)


@dataclass
class Metrics:
    """Sums over rollups and line-days for one sub-account, over a period or one day."""

    messages_sent: int = 0
    messages_received: int = 0
    new_conversations: int = 0
    responded_conversations: int = 0
    inbound_conversations: int = 0
    active_line_days: int = 0
    limit_line_days: int = 0  # Σ daily limit × active line-days
    near_limit_line_days: int = 0
    over_pressured_line_days: int = 0
    flags: list[str] = field(default_factory=list)

    def add_counts(self, row: dict[str, Any]) -> None:
        """Add one row of summed rollup columns (missing names count as zero)."""
        for name in ROLLUP_SUMS:
            setattr(self, name, getattr(self, name) + (row.get(name) or 0))

    def add_values(self, values: list[int]) -> None:
        """Add sums given in :data:`ROLLUP_SUMS` order."""
        self.messages_sent += values[0]
        self.messages_received += values[1]
        self.new_conversations += values[2]
        self.responded_conversations += values[3]
        self.inbound_conversations += values[4]
        self.near_limit_line_days += values[5]
        self.over_pressured_line_days += values[6]
        self.active_line_days += values[7]
        self.limit_line_days += values[8]

    def add_line_days(self, line_days: int, limit_line_days: int) -> None:
        self.active_line_days += line_days
        self.limit_line_days += limit_line_days

    def add(self, other: Metrics) -> None:
        for name in ROLLUP_SUMS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def response_rate(self) -> float | None:
        if not self.new_conversations:
            return None
        return round(self.responded_conversations / self.new_conversations, 4)

    @property
    def volume_limit_usage(self) -> float | None:
        if not self.limit_line_days:
            return None
        return round(self.new_conversations / self.limit_line_days, 4)

    def as_dict(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in _COUNTS},
            "response_rate": self.response_rate,
            "volume_limit_usage": self.volume_limit_usage,
            "active_line_days": self.active_line_days,
            "near_limit_line_days": self.near_limit_line_days,
            "over_pressured_line_days": self.over_pressured_line_days,
        }


# --- Periods and days ---------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Inclusive partner-local dates and the zone they are read in."""

    start: dt.date
    end: dt.date
    zone: zoneinfo.ZoneInfo

    @property
    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    def midnight(self, day: dt.date) -> dt.datetime:
        """The UTC instant at which local ``day`` begins."""
        return local_midnight(day, self.zone)


def local_midnight(day: dt.date, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The UTC instant at which ``day`` begins in ``zone``."""
    return dt.datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(dt.UTC)


MIN_YEAR, MAX_YEAR = 2000, 2099


def analytics_period(*, partner: Partner, start: dt.date | None, end: dt.date | None) -> Period:
    """The period asked for; by default the last 30 days up to today (partner-local)."""
    zone = zoneinfo.ZoneInfo(partner.timezone)
    today = clock.now().astimezone(zone).date()
    for name, day in (("start", start), ("end", end)):
        # Far-off years overflow date arithmetic (and mean nothing here): refuse them.
        if day is not None and not MIN_YEAR <= day.year <= MAX_YEAR:
            raise Invalid(f"{name} must be a date between {MIN_YEAR} and {MAX_YEAR}.", field=name)
    end = end or (today if start is None else start + dt.timedelta(days=DEFAULT_DAYS - 1))
    start = start or end - dt.timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise Invalid("start must be on or before end.", field="start")
    if (end - start).days + 1 > MAX_DAYS:
        raise Invalid(f"A period spans at most {MAX_DAYS} days.", field="end")
    return Period(start=start, end=end, zone=zone)


def id_filter(column: str, ids: Iterable[int] | None, *, negate: bool = False) -> tuple[str, list]:
    if ids is None:
        return "", []
    ids = sorted(set(ids))
    if not ids:
        return ("", []) if negate else (" AND 1 = 0", [])
    placeholders = ", ".join(["%s"] * len(ids))
    return f" AND {column} {'NOT IN' if negate else 'IN'} ({placeholders})", ids


def period_segments(
    start: dt.date, end: dt.date
) -> tuple[list[dt.date], list[dt.date], list[dt.date]]:
    """``[start, end]`` cut into whole months, then whole weeks (Monday to Sunday) of
    what is left, then single days: the fewest rollup rows that add up to the period."""
    months: list[dt.date] = []
    first = start if start.day == 1 else _next_month(start)
    while _next_month(first) - dt.timedelta(days=1) <= end:
        months.append(first)
        first = _next_month(first)
    if months:
        edges = [(start, months[0] - dt.timedelta(days=1)), (_next_month(months[-1]), end)]
    else:
        edges = [(start, end)]
    weeks: list[dt.date] = []
    days: list[dt.date] = []
    for low, high in edges:
        day = low
        while day <= high:
            if day.weekday() == 0 and day + dt.timedelta(days=6) <= high:
                weeks.append(day)
                day += dt.timedelta(days=7)
            else:
                days.append(day)
                day += dt.timedelta(days=1)
    return months, weeks, days


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def period_rows_sql(
    partner_id: int,
    start: dt.date,
    end: dt.date,
    columns: Sequence[str] = ROLLUP_SUMS,
    sub_account_ids: Iterable[int] | None = None,
) -> tuple[str, list[Any]]:
    """SQL selecting ``(sub_account_id, *columns)`` rows that add up to ``[start, end]``:
    whole months and weeks from :class:`SubAccountRollupBucket`, the days at the edges
    from :class:`DailySubAccountRollup` (about a dozen rows per sub-account for 90 days),
    for every sub-account of the partner or only ``sub_account_ids``."""
    months, weeks, days = period_segments(start, end)
    names = ", ".join(columns)
    parts, params = [], []
    ops = connection.ops
    # Identifiers come from model metadata; every value is a parameter.
    if months or weeks:
        starts = [ops.adapt_datefield_value(d) for d in (*months, *weeks)]
        grains = [Grain.MONTH] * len(months) + [Grain.WEEK] * len(weeks)
        pairs = " OR ".join(["(grain = %s AND start = %s)"] * len(starts))
        only, only_ids = id_filter("sub_account_id", sub_account_ids)
        parts.append(
            f"SELECT sub_account_id, {names} FROM {SubAccountRollupBucket._meta.db_table} "  # noqa: S608
            f"WHERE partner_id = %s{only} AND ({pairs})"
        )
        params += [partner_id, *only_ids]
        for grain, first in zip(grains, starts, strict=True):
            params += [str(grain), first]
    if days:
        only, only_ids = id_filter("sub_account_id", sub_account_ids)
        parts.append(
            f"SELECT sub_account_id, {names} FROM {DailySubAccountRollup._meta.db_table} "  # noqa: S608
            f"WHERE partner_id = %s{only} AND day IN ({', '.join(['%s'] * len(days))})"
        )
        params += [partner_id, *only_ids, *(ops.adapt_datefield_value(d) for d in days)]
    return " UNION ALL ".join(parts), params


def rollup_sums(qs: QuerySet, *group_by: str) -> list[dict[str, Any]]:
    """Summed rollup columns per ``group_by``."""
    rows = (
        qs.values(*group_by)
        .annotate(**{f"total_{name}": Sum(name) for name in ROLLUP_SUMS})
        .order_by()
    )
    return [{name.removeprefix("total_"): value for name, value in row.items()} for row in rows]
