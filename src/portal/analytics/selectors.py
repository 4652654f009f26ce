"""Scoped reads of analytics. They read rollups (and, for days not closed yet, assignment
periods), never events.

Pages and the API read :class:`~portal.analytics.models.DailySubAccountRollup` only:
one row per (sub-account, day), so a period costs one indexed range read whatever
the number of lines. Its activity columns are current as soon as an ingestion
commits; its capacity columns (active line-days, Σ daily limits) are written when
the periodic job closes a partner-local day. Days after the last closed one
(normally just today) get their capacity live from assignment periods by
:func:`line_days`, the same query the job stores, so a day reads the same before and
after it is closed (up to later limit changes).

Active line-days: a line counts on a partner-local day for every sub-account that
held it at any moment of that day (a line moved mid-day counts for both holders; one
disconnected mid-day still counts that day). Days after today have no line-days.
Σ limits use each line's daily limit at the time the day is closed (live: now).
"""

from __future__ import annotations

import datetime as dt
import statistics
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Count, F, Sum

from portal.accounts.policies import require
from portal.accounts.principal import Principal
from portal.analytics.models import (
    DailySubAccountRollup,
    Grain,
    PartnerAnalyticsState,
    SubAccountRollupBucket,
)
from portal.analytics.policies import can_read_analytics
from portal.core import clock
from portal.core.errors import Invalid
from portal.lines.models import AssignmentPeriod, Line, LineStatus
from portal.partners.models import Partner, SubAccount, SubAccountKind, SubAccountStatus
from portal.partners.selectors import partner_for

DEFAULT_DAYS = 30
MAX_DAYS = 366
# Underperforming: a response rate below this share of the partner's median.
UNDERPERFORMING_SHARE = 0.5
NEAR_LIMIT_TENTHS = 9  # "near the limit" is >= 90 % of it

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


def line_days(
    *,
    partner_id: int,
    zone: zoneinfo.ZoneInfo,
    days: Iterable[dt.date],
    sub_account_ids: Iterable[int] | None = None,
) -> dict[tuple[int, dt.date], tuple[int, int]]:
    """Active line-days from assignment periods: ``{(sub_account_id, day): (lines, Σ limits)}``.

    One query for any number of days: the days (with their UTC bounds) are a
    ``VALUES`` list joined to the periods that overlap them. A zero-length period
    (a line moved the instant it arrived) held nothing. Used live for the days not
    closed yet and by ``services.analytics_days_close`` to store closed ones.
    """
    days = sorted(set(days))
    today = clock.now().astimezone(zone).date()
    result: dict[tuple[int, dt.date], tuple[int, int]] = {}
    if days and days[-1] == today:
        # The usual case, on every read: indexed and small, not a scan of all periods.
        days.pop()
        result.update(_held_today(partner_id, zone, today, sub_account_ids))
    if not days:
        return result
    ops = connection.ops
    cast = connection.vendor == "postgresql"
    rows_sql, params = [], []
    for day in days:
        bounds = (local_midnight(day, zone), local_midnight(day + dt.timedelta(days=1), zone))
        if cast and not rows_sql:
            rows_sql.append("(%s::date, %s::timestamptz, %s::timestamptz)")
        else:
            rows_sql.append("(%s, %s, %s)")
        params += [
            ops.adapt_datefield_value(day),
            *(ops.adapt_datetimefield_value(b) for b in bounds),
        ]
    period = AssignmentPeriod._meta.db_table
    line = Line._meta.db_table
    end, start = ops.quote_name("end"), ops.quote_name("start")
    subs = ""
    params.append(partner_id)
    if sub_account_ids is not None:
        ids = sorted(set(sub_account_ids))
        if not ids:
            return result
        subs = f" AND p.sub_account_id IN ({', '.join(['%s'] * len(ids))})"
        params += ids
    # Identifiers come from model metadata; every value is a parameter.
    sql = f"""
        WITH days (day, day_start, day_end) AS (VALUES {", ".join(rows_sql)})
        SELECT held.sub_account_id, held.day, COUNT(*), SUM(held.daily_limit)
        FROM (
            SELECT DISTINCT p.sub_account_id, p.line_id, d.day, l.daily_limit
            FROM days d
            JOIN {period} p ON p.{start} < d.day_end
                AND (p.{end} IS NULL OR (p.{end} > d.day_start AND p.{end} > p.{start}))
            JOIN {line} l ON l.id = p.line_id
            WHERE p.partner_id = %s{subs}
        ) held
        GROUP BY held.sub_account_id, held.day
    """  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    for sub_account_id, day, count, limits in rows:
        day = day if isinstance(day, dt.date) else dt.date.fromisoformat(day)
        result[(sub_account_id, day)] = (count, int(limits))
    return result


def _held_today(
    partner_id: int,
    zone: zoneinfo.ZoneInfo,
    today: dt.date,
    sub_account_ids: Iterable[int] | None,
) -> dict[tuple[int, dt.date], tuple[int, int]]:
    """:func:`line_days` for today: the lines held now (every active line is in exactly
    one sub-account, its open period's) plus those a sub-account held earlier today
    (periods that ended since midnight), each (sub-account, line) once."""
    lines = Line.objects.filter(partner_id=partner_id, status=LineStatus.ACTIVE)
    periods = AssignmentPeriod.objects.filter(
        partner_id=partner_id, end__gt=local_midnight(today, zone)
    ).filter(end__gt=F("start"))
    if sub_account_ids is not None:
        ids = sorted(set(sub_account_ids))
        lines = lines.filter(sub_account_id__in=ids)
        periods = periods.filter(sub_account_id__in=ids)
    totals: dict[int, list[int]] = {}
    for sub_account_id, count, limits in (
        lines.values("sub_account_id")
        .annotate(count=Count("pk"), limits=Sum("daily_limit"))
        .order_by()
        .values_list("sub_account_id", "count", "limits")
    ):
        totals[sub_account_id] = [count, int(limits)]
    earlier = periods.values_list(
        "sub_account_id", "line_id", "line__daily_limit", "line__status", "line__sub_account_id"
    )
    for sub_account_id, _line, limit, status, holder in set(earlier):
        if status == LineStatus.ACTIVE and holder == sub_account_id:
            continue  # holds it now: counted above
        total = totals.setdefault(sub_account_id, [0, 0])
        total[0] += 1
        total[1] += limit
    return {(sub_account_id, today): (n, limits) for sub_account_id, (n, limits) in totals.items()}


def open_days(period: Period, partner_id: int) -> list[dt.date]:
    """The period's days up to today whose capacity is not stored yet (computed live)."""
    today = clock.now().astimezone(period.zone).date()
    closed = (
        PartnerAnalyticsState.objects.filter(partner_id=partner_id)
        .values_list("days_closed_through", flat=True)
        .first()
    )
    return [d for d in period.days if d <= today and (closed is None or d > closed)]


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


def period_sums(partner_id: int, start: dt.date, end: dt.date) -> dict[int, list[int]]:
    """Summed rollup columns (in :data:`ROLLUP_SUMS` order) per sub-account over
    ``[start, end]``: whole months and weeks from :class:`SubAccountRollupBucket`, the
    days at the edges from :class:`DailySubAccountRollup`, summed in one statement.

    Plain SQL returning tuples: at ten thousand sub-accounts the ORM's per-row dicts
    and converters cost more than the database does.
    """
    months, weeks, days = period_segments(start, end)
    columns = ", ".join(ROLLUP_SUMS)
    parts, params = [], []
    ops = connection.ops
    if months or weeks:
        starts = [ops.adapt_datefield_value(d) for d in (*months, *weeks)]
        grains = [Grain.MONTH] * len(months) + [Grain.WEEK] * len(weeks)
        pairs = " OR ".join(["(grain = %s AND start = %s)"] * len(starts))
        parts.append(
            f"SELECT sub_account_id, {columns} FROM {SubAccountRollupBucket._meta.db_table} "  # noqa: S608
            f"WHERE partner_id = %s AND ({pairs})"
        )
        params.append(partner_id)
        for grain, first in zip(grains, starts, strict=True):
            params += [str(grain), first]
    if days:
        parts.append(
            f"SELECT sub_account_id, {columns} FROM {DailySubAccountRollup._meta.db_table} "  # noqa: S608
            f"WHERE partner_id = %s AND day IN ({', '.join(['%s'] * len(days))})"
        )
        params += [partner_id, *(ops.adapt_datefield_value(d) for d in days)]
    sums = ", ".join(f"SUM({name})" for name in ROLLUP_SUMS)
    # Identifiers come from model metadata; every value is a parameter.
    sql = (
        f"SELECT sub_account_id, {sums} FROM ({' UNION ALL '.join(parts)}) AS period "  # noqa: S608
        "GROUP BY sub_account_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0]: [int(v or 0) for v in row[1:]] for row in cursor.fetchall()}


def _rollup_sums(qs, *group_by: str) -> list[dict[str, Any]]:
    """Summed rollup columns per ``group_by``."""
    rows = (
        qs.values(*group_by)
        .annotate(**{f"total_{name}": Sum(name) for name in ROLLUP_SUMS})
        .order_by()
    )
    return [{name.removeprefix("total_"): value for name, value in row.items()} for row in rows]


# --- Merges -----------------------------------------------------------------------------


def analytics_owner_map(sub_accounts: list[dict[str, Any]]) -> dict[int, int]:
    """Sub-account id -> the sub-account its history shows under.

    Rollups stay keyed by the sub-account that held the line; a merged sub-account's
    history shows under the one it was merged into (followed to the end of the
    chain), so a merge needs no rewrite of analytics rows.
    """
    merged_into = {sa["id"]: sa["merged_into_id"] for sa in sub_accounts}
    owners = {}
    for sa_id in merged_into:
        owner, seen = sa_id, {sa_id}
        while merged_into.get(owner) and merged_into[owner] not in seen:
            owner = merged_into[owner]
            seen.add(owner)
        owners[sa_id] = owner
    return owners


def _display_name(sa: dict[str, Any]) -> str:
    return "Available" if sa["kind"] == SubAccountKind.AVAILABLE else sa["name"]


# --- The two reads -------------------------------------------------------------------


def sub_account_analytics_list(
    *, principal: Principal, start: dt.date | None = None, end: dt.date | None = None
) -> tuple[Period, list[dict[str, Any]], float | None]:
    """Every active sub-account's metrics for the period, Available first, then by name.

    Returns the period, the rows and the partner's median response rate (the
    yardstick of the ``underperforming`` flag). A fixed number of queries whatever
    the number of sub-accounts.
    """
    require(can_read_analytics(principal), "Your role may not read analytics.")
    partner = partner_for(principal)
    period = analytics_period(partner=partner, start=start, end=end)
    sub_accounts = list(
        SubAccount.objects.visible_to(principal)
        .filter(partner_id=partner.pk)
        .listed_order()
        .values("id", "name", "kind", "status", "merged_into_id")
    )
    owners = analytics_owner_map(sub_accounts)
    metrics: dict[int, Metrics] = {
        sa["id"]: Metrics() for sa in sub_accounts if sa["status"] == SubAccountStatus.ACTIVE
    }
    for sub_account_id, values in period_sums(partner.pk, period.start, period.end).items():
        owner = metrics.get(owners.get(sub_account_id, -1))
        if owner is not None:
            owner.add_values(values)
    live = line_days(partner_id=partner.pk, zone=period.zone, days=open_days(period, partner.pk))
    for (sub_account_id, _), (count, limits) in live.items():
        owner = metrics.get(owners.get(sub_account_id, -1))
        if owner is not None:
            owner.add_line_days(count, limits)

    rates = [m.response_rate for m in metrics.values() if m.response_rate is not None]
    median = statistics.median(rates) if rates else None
    rows = []
    for sa in sub_accounts:
        m = metrics.get(sa["id"])
        if m is None:
            continue
        rate = m.response_rate
        if median and rate is not None and rate < UNDERPERFORMING_SHARE * median:
            m.flags.append("underperforming")
        if m.over_pressured_line_days:
            m.flags.append("over_pressured")
        rows.append(
            {"sub_account_id": sa["id"], "name": _display_name(sa), **m.as_dict(), "flags": m.flags}
        )
    return period, rows, median


def sub_account_analytics(
    *,
    principal: Principal,
    sub_account_id: Any,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> dict[str, Any]:
    """One sub-account's totals and daily series (every day of the period, zeros included).

    Includes the history of sub-accounts merged into it.
    """
    require(can_read_analytics(principal), "Your role may not read analytics.")
    sub_account = SubAccount.objects.get_visible(principal, sub_account_id, what="Sub-account")
    partner = Partner.objects.get(pk=sub_account.partner_id)
    period = analytics_period(partner=partner, start=start, end=end)
    merged = SubAccount.objects.filter(partner_id=partner.pk, merged_into__isnull=False)
    owners = analytics_owner_map(list(merged.values("id", "merged_into_id")))
    members = {sa_id for sa_id, owner in owners.items() if owner == sub_account.pk}
    members.add(sub_account.pk)

    daily = {day: Metrics() for day in period.days}
    rollups = DailySubAccountRollup.objects.filter(
        partner_id=partner.pk,
        sub_account_id__in=sorted(members),
        day__gte=period.start,
        day__lte=period.end,
    )
    for row in _rollup_sums(rollups, "day"):
        daily[row["day"]].add_counts(row)
    live = line_days(
        partner_id=partner.pk,
        zone=period.zone,
        days=open_days(period, partner.pk),
        sub_account_ids=members,
    )
    for (_, day), (count, limits) in live.items():
        daily[day].add_line_days(count, limits)

    totals = Metrics()
    for m in daily.values():
        totals.add(m)
    return {
        "sub_account_id": sub_account.pk,
        "name": sub_account.display_name,
        "start": period.start,
        "end": period.end,
        "totals": totals.as_dict(),
        "days": [{"day": day, **m.as_dict()} for day, m in daily.items()],
    }
