"""Capacity counted from assignment periods: active line-days and Σ daily limits
per (sub-account, day), for what the rollups do not hold yet.

The periodic job stores closed days (and the day in progress as counted then) with
:func:`line_days`; reads add only what is not stored (:func:`live_capacity`): the
line-days a sub-account gained since the day in progress was counted, and whole days
the job has not reached yet. A day read before and after it is closed gives the same
line-days.

Active line-days: a line counts on a partner-local day for every sub-account that
held it at any moment of that day (a line moved mid-day counts for both holders; one
disconnected mid-day still counts that day), but not for a sub-account it left by a
merge that day (domain §4: the line is one line-day of the target). Days after today
have no line-days. Σ limits use each line's limit at the end of the day (its
``LineLimitChange`` history; for today, its limit now), so a day counts the same
whenever it is counted; a limit changed after the day in progress was counted is
added to the count by the change itself (``rollups.line_days_rejudge``).

Internal (``core.tenancy``): functions take a bare ``partner_id``; the selectors and
jobs that call them took it from the principal or iterate every partner.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection

from portal.analytics.models import PartnerAnalyticsState
from portal.analytics.periods import Period, id_filter, local_midnight
from portal.core import clock
from portal.lines.models import AssignmentPeriod, Line, LineLimitChange, LineStatus


def _days_sql(days: list[dt.date], zone: zoneinfo.ZoneInfo) -> tuple[str, list[Any]]:
    """A derived table ``(day, day_start, day_end)`` of ``days`` with their UTC bounds."""
    ops = connection.ops
    cast = connection.vendor == "postgresql"
    rows_sql, params = [], []
    for day in days:
        bounds = (local_midnight(day, zone), local_midnight(day + dt.timedelta(days=1), zone))
        if cast and not rows_sql:
            rows_sql.append(
                "SELECT %s::date AS day, %s::timestamptz AS day_start, %s::timestamptz AS day_end"
            )
        elif not rows_sql:
            rows_sql.append("SELECT %s AS day, %s AS day_start, %s AS day_end")
        else:
            rows_sql.append("SELECT %s, %s, %s")
        params += [
            ops.adapt_datefield_value(day),
            *(ops.adapt_datetimefield_value(b) for b in bounds),
        ]
    return " UNION ALL ".join(rows_sql), params


def held_sql(
    *,
    partner_id: int,
    zone: zoneinfo.ZoneInfo,
    days: Iterable[dt.date],
    sub_account_ids: Iterable[int] | None = None,
    exclude: Iterable[int] = (),
    since: Stored | None = None,
) -> tuple[str, list[Any]] | None:
    """SQL selecting ``(sub_account_id, day, line_id, daily_limit)`` once for every line a
    sub-account held at any moment of each of ``days`` (up to today), and, for the day
    whose count is ``since`` stored, once for every line that arrived in a sub-account
    after it was counted; ``None`` when there is nothing to select.

    Today is the usual case, on every read: the lines held now (every active line is
    in exactly one sub-account, its open period's) plus those a sub-account held earlier
    today (periods that ended since midnight), indexed and small, not a scan of all
    periods. Other days join a derived table of the days (with their UTC bounds) to
    the periods that overlap them. A zero-length period (a line moved the instant it
    arrived) held nothing.
    """
    today = clock.now().astimezone(zone).date()
    days = sorted(d for d in set(days) if d <= today)
    if not days and since is None:
        return None
    ops = connection.ops
    postgres = connection.vendor == "postgresql"
    cast = "::date" if postgres else ""
    period = AssignmentPeriod._meta.db_table
    line = Line._meta.db_table
    changes = LineLimitChange._meta.db_table
    end, start = ops.quote_name("end"), ops.quote_name("start")
    true = "TRUE" if postgres else "1"
    parts: list[str] = []
    params: list[Any] = []

    def left_by_merge(day_end: str) -> str:
        # The period p ended that day by a merge (its line's next period, in the target,
        # is marked via_merge): the line-day is the target's (domain §4), not p's as well.
        return (
            f" AND NOT EXISTS (SELECT 1 FROM {period} m WHERE m.line_id = p.line_id "  # noqa: S608
            f"AND m.via_merge = {true} AND m.{start} = p.{end} AND p.{end} < {day_end})"
        )

    def limit_at(day_end: str) -> str:
        # The limit at the day's end: the old limit of the line's first change at or after
        # it (domain §4), or the line's limit now when none.
        return (
            f"COALESCE((SELECT c.old_limit FROM {changes} c WHERE c.partner_id = l.partner_id "  # noqa: S608
            f"AND c.line_id = l.id AND c.at >= {day_end} ORDER BY c.at, c.id LIMIT 1), "
            "l.daily_limit)"
        )

    def scoped(column: str) -> str:
        only, only_ids = id_filter(column, sub_account_ids)
        not_these, excluded = id_filter(column, exclude, negate=True)
        params.extend([*only_ids, *excluded])
        return only + not_these

    # Identifiers come from model metadata; every value is a parameter.
    if days and days[-1] == today:
        days.pop()
        day = ops.adapt_datefield_value(today)
        midnight = ops.adapt_datetimefield_value(local_midnight(today, zone))
        params += [day, partner_id, LineStatus.ACTIVE]
        parts.append(
            f"SELECT l.sub_account_id, %s{cast} AS day, l.id AS line_id, l.daily_limit "  # noqa: S608
            f"FROM {line} l WHERE l.partner_id = %s AND l.status = %s" + scoped("l.sub_account_id")
        )
        tomorrow = ops.adapt_datetimefield_value(local_midnight(today + dt.timedelta(days=1), zone))
        params += [day, partner_id, midnight, LineStatus.ACTIVE, tomorrow]
        # Today's limits are the lines' limits now (no change can follow the day's end yet).
        parts.append(
            f"SELECT DISTINCT p.sub_account_id, %s{cast} AS day, p.line_id, l.daily_limit "  # noqa: S608
            f"FROM {period} p JOIN {line} l ON l.id = p.line_id "
            f"WHERE p.partner_id = %s AND p.{end} > %s AND p.{end} > p.{start} "
            "AND NOT (l.status = %s AND l.sub_account_id = p.sub_account_id)"
            + left_by_merge("%s")
            + scoped("p.sub_account_id")
        )
    if days:
        days_sql, days_params = _days_sql(days, zone)
        params += [*days_params, partner_id]
        parts.append(
            "SELECT DISTINCT p.sub_account_id, d.day AS day, p.line_id, "  # noqa: S608
            f"{limit_at('d.day_end')} AS daily_limit "
            f"FROM ({days_sql}) d JOIN {period} p ON p.{start} < d.day_end "
            f"AND (p.{end} IS NULL OR (p.{end} > d.day_start AND p.{end} > p.{start})) "
            f"JOIN {line} l ON l.id = p.line_id WHERE p.partner_id = %s"
            + left_by_merge("d.day_end")
            + scoped("p.sub_account_id")
        )
    if since is not None:
        # A period that started after the count, in a sub-account that had not held the
        # line earlier that day (before the count): the day's new line-days since.
        day_start = local_midnight(since.day, zone)
        day_end = local_midnight(since.day + dt.timedelta(days=1), zone)
        at, low, high = (ops.adapt_datetimefield_value(v) for v in (since.at, day_start, day_end))
        params += [ops.adapt_datefield_value(since.day), high, partner_id, at, high, at, low]
        params += [high, at, low]
        # A line a merge brought after the count, held by its source before it, is in the
        # count already as the source's line-day (reads sum the two); the next count
        # gives it to the target alone.
        parts.append(
            f"SELECT DISTINCT p.sub_account_id, %s{cast} AS day, p.line_id, "  # noqa: S608
            f"{limit_at('%s')} AS daily_limit "
            f"FROM {period} p JOIN {line} l ON l.id = p.line_id "
            f"WHERE p.partner_id = %s AND p.{start} > %s AND p.{start} < %s "
            f"AND (p.{end} IS NULL OR p.{end} > p.{start}) "
            f"AND NOT EXISTS (SELECT 1 FROM {period} q WHERE q.line_id = p.line_id "
            f"AND q.sub_account_id = p.sub_account_id AND q.{start} <= %s "
            f"AND (q.{end} IS NULL OR (q.{end} > %s AND q.{end} > q.{start})))"
            + left_by_merge("%s")
            + f" AND NOT (p.via_merge = {true} AND EXISTS (SELECT 1 FROM {period} r "  # noqa: S608
            f"WHERE r.line_id = p.line_id AND r.{start} <= %s "
            f"AND (r.{end} IS NULL OR (r.{end} > %s AND r.{end} > r.{start}))))"
            + scoped("p.sub_account_id")
        )
    return " UNION ALL ".join(parts), params


def _as_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def line_days(
    *,
    partner_id: int,
    zone: zoneinfo.ZoneInfo,
    days: Iterable[dt.date],
    sub_account_ids: Iterable[int] | None = None,
    since: Stored | None = None,
) -> dict[tuple[int, dt.date], tuple[int, int]]:
    """Active line-days from assignment periods: ``{(sub_account_id, day): (lines, Σ limits)}``.

    One query for any number of days (see :func:`held_sql`); with ``since``, the day
    counted then gets the line-days added after. Used by ``rollups.analytics_days_close``
    to store days, and by reads for what is not stored.
    """
    held = held_sql(
        partner_id=partner_id,
        zone=zone,
        days=days,
        sub_account_ids=sub_account_ids,
        since=since,
    )
    if held is None:
        return {}
    sql, params = held
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sub_account_id, day, COUNT(*), SUM(daily_limit) "  # noqa: S608
            f"FROM ({sql}) held GROUP BY sub_account_id, day",
            params,
        )
        rows = cursor.fetchall()
    return {(sa, _as_date(day)): (count, int(limits)) for sa, day, count, limits in rows}


def partner_line_days(
    *, partner_id: int, zone: zoneinfo.ZoneInfo, live: Live, exclude: Iterable[int]
) -> dict[dt.date, tuple[int, int]]:
    """The ``live`` line-days summed over the partner's sub-accounts but ``exclude``, per day."""
    held = held_sql(
        partner_id=partner_id, zone=zone, days=live.days, exclude=exclude, since=live.since
    )
    if held is None:
        return {}
    sql, params = held
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT day, COUNT(*), SUM(daily_limit) FROM ({sql}) held GROUP BY day",  # noqa: S608
            params,
        )
        rows = cursor.fetchall()
    return {_as_date(day): (count, int(limits or 0)) for day, count, limits in rows}


@dataclass(frozen=True)
class Stored:
    """A day in progress whose capacity the job stored as counted at ``at``."""

    day: dt.date
    at: dt.datetime


@dataclass(frozen=True)
class Live:
    """What of a period's capacity reads count from assignment periods: ``days`` whole
    (not closed, none stored), and the line-days that the day counted ``since`` gained
    after it was counted."""

    days: list[dt.date]
    since: Stored | None

    @property
    def empty(self) -> bool:
        return not self.days and self.since is None


def live_capacity(period: Period, partner_id: int) -> Live:
    """The period's days up to today whose capacity is not (wholly) stored."""
    today = clock.now().astimezone(period.zone).date()
    state = (
        PartnerAnalyticsState.objects.filter(partner_id=partner_id)
        .values_list("days_closed_through", "capacity_day", "capacity_at")
        .first()
    )
    closed, counted_day, counted_at = state or (None, None, None)
    days = [d for d in period.days if d <= today and (closed is None or d > closed)]
    if counted_day in days and counted_at is not None:
        days.remove(counted_day)
        return Live(days, Stored(counted_day, counted_at))
    return Live(days, None)
