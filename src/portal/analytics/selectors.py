"""Scoped reads of analytics. They read rollups (and, for what is not stored yet,
assignment periods), never events.

The comparison and the sub-account series read :class:`DailySubAccountRollup` (one row
per sub-account and day) and its week and month sums :class:`SubAccountRollupBucket`,
so a 90-day comparison of ten thousand sub-accounts sums about a dozen rows each,
in the database, and only the page comes back. Activity columns are current as soon
as an ingestion commits. Capacity columns (active line-days, Σ daily limits) are
written by the periodic job ``analytics_days_close``: when a partner-local day has
ended, and for the day in progress every time it runs (as counted then). Reads add
only what is not stored (:func:`live_capacity`): the line-days a sub-account gained
since the day in progress was counted (periods started since, indexed and few), and
whole days the job has not reached yet (normally none; before the job's first run,
today). A day read before and after it is closed gives the same line-days.

Active line-days: a line counts on a partner-local day for every sub-account that
held it at any moment of that day (a line moved mid-day counts for both holders; one
disconnected mid-day still counts that day), but not for a sub-account it left by a
merge that day (SPEC §4: the line is one line-day of the target). Days after today
have no line-days. Σ limits use each line's limit at the end of the day (its
``LineLimitChange`` history; for today, its limit now), so a day counts the same
whenever it is counted; a limit changed after the day in progress was counted is
added to the count by the change itself (``services.line_days_rejudge``).
"""

from __future__ import annotations

import datetime as dt
import statistics
import zoneinfo
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Sum

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
from portal.lines.models import AssignmentPeriod, Line, LineLimitChange, LineStatus
from portal.partners.models import Partner, SubAccount, SubAccountKind, SubAccountStatus
from portal.partners.selectors import partner_for

DEFAULT_DAYS = 30
MAX_DAYS = 366
# Underperforming: a response rate below this share of the partner's median.
UNDERPERFORMING_SHARE = 0.5

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


def _id_filter(column: str, ids: Iterable[int] | None, *, negate: bool = False) -> tuple[str, list]:
    if ids is None:
        return "", []
    ids = sorted(set(ids))
    if not ids:
        return ("", []) if negate else (" AND 1 = 0", [])
    placeholders = ", ".join(["%s"] * len(ids))
    return f" AND {column} {'NOT IN' if negate else 'IN'} ({placeholders})", ids


def _held_sql(
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
        # is marked via_merge): the line-day is the target's (SPEC §4), not p's as well.
        return (
            f" AND NOT EXISTS (SELECT 1 FROM {period} m WHERE m.line_id = p.line_id "  # noqa: S608
            f"AND m.via_merge = {true} AND m.{start} = p.{end} AND p.{end} < {day_end})"
        )

    def limit_at(day_end: str) -> str:
        # The limit at the day's end: the old limit of the line's first change at or after
        # it (SPEC §4), or the line's limit now when none.
        return (
            f"COALESCE((SELECT c.old_limit FROM {changes} c WHERE c.partner_id = l.partner_id "  # noqa: S608
            f"AND c.line_id = l.id AND c.at >= {day_end} ORDER BY c.at, c.id LIMIT 1), "
            "l.daily_limit)"
        )

    def scoped(column: str) -> str:
        only, only_ids = _id_filter(column, sub_account_ids)
        not_these, excluded = _id_filter(column, exclude, negate=True)
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

    One query for any number of days (see :func:`_held_sql`); with ``since``, the day
    counted then gets the line-days added after. Used by ``services.analytics_days_close``
    to store days, and by reads for what is not stored.
    """
    held = _held_sql(
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
    held = _held_sql(
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


def _period_rows_sql(
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
        only, only_ids = _id_filter("sub_account_id", sub_account_ids)
        parts.append(
            f"SELECT sub_account_id, {names} FROM {SubAccountRollupBucket._meta.db_table} "  # noqa: S608
            f"WHERE partner_id = %s{only} AND ({pairs})"
        )
        params += [partner_id, *only_ids]
        for grain, first in zip(grains, starts, strict=True):
            params += [str(grain), first]
    if days:
        only, only_ids = _id_filter("sub_account_id", sub_account_ids)
        parts.append(
            f"SELECT sub_account_id, {names} FROM {DailySubAccountRollup._meta.db_table} "  # noqa: S608
            f"WHERE partner_id = %s{only} AND day IN ({', '.join(['%s'] * len(days))})"
        )
        params += [partner_id, *only_ids, *(ops.adapt_datefield_value(d) for d in days)]
    return " UNION ALL ".join(parts), params


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
    chain), so a merge needs no rewrite of analytics rows. Sub-accounts not given map
    to themselves (callers pass only the merged ones).
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


def merged_owners(partner_id: int) -> dict[int, int]:
    """The partner's merged sub-accounts -> the sub-account each one's history shows under
    (usually a handful: one small query, whatever the number of sub-accounts)."""
    merged = SubAccount.objects.filter(partner_id=partner_id, merged_into__isnull=False)
    owners = analytics_owner_map(list(merged.values("id", "merged_into_id")))
    return {sa_id: owner for sa_id, owner in owners.items() if owner != sa_id}


def _owner_sums_sql(
    activity: str, columns: Sequence[str], owners: dict[int, int]
) -> tuple[list[str], list[Any]]:
    """CTEs summing ``activity`` rows (``sub_account_id, *columns``) per owner as ``sums
    (owner_id, *columns)``: merged sub-accounts count under the end of their chain."""
    ctes: list[str] = []
    params: list[Any] = []
    if owners:
        pairs = ", ".join(["(%s, %s)"] * len(owners))
        ctes.append(f"owners (sub_account_id, owner_id) AS (VALUES {pairs})")
        params += [v for pair in sorted(owners.items()) for v in pair]
        owner = "COALESCE(o.owner_id, a.sub_account_id)"
        join = "LEFT JOIN owners o ON o.sub_account_id = a.sub_account_id"
    else:
        owner, join = "a.sub_account_id", ""
    sums = ", ".join(f"SUM(a.{name}) AS {name}" for name in columns)
    ctes += [
        f"activity (sub_account_id, {', '.join(columns)}) AS ({activity})",
        f"sums AS (SELECT {owner} AS owner_id, {sums} FROM activity a {join} GROUP BY {owner})",  # noqa: S608
    ]
    return ctes, params


def _with_capacity(
    activity: str,
    params: list[Any],
    columns: Sequence[str],
    held: tuple[str, list[Any]] | None,
) -> tuple[str, list[Any]]:
    """``activity`` plus each sub-account's live line-days as rows of ``columns`` (zeros
    but the capacity columns)."""
    if held is None:
        return activity, params
    values = [
        "COUNT(*)"
        if name == "active_line_days"
        else "SUM(daily_limit)"
        if name == "limit_line_days"
        else "0"
        for name in columns
    ]
    activity += (
        f" UNION ALL SELECT sub_account_id, {', '.join(values)} "  # noqa: S608
        f"FROM ({held[0]}) held GROUP BY sub_account_id"
    )
    return activity, params + held[1]


# --- The comparison of sub-accounts ----------------------------------------------------------

_AVAILABLE = SubAccountKind.AVAILABLE.value


def _listed_order(table: str = "") -> str:
    """Available first, then by name: the comparison's own order, and every sort's tie-break
    (the order of the sub-accounts' ``subaccount_partner_listed`` index)."""
    t = f"{table}." if table else ""
    return f"CASE WHEN {t}kind = '{_AVAILABLE}' THEN 0 ELSE 1 END, LOWER({t}name), {t}id"


# Floating point, not exact decimals: ten thousand divisions in NUMERIC cost more than the
# sums. Division is correctly rounded, so equal fractions compare equal and order holds.
_RATE = (
    "CASE WHEN new_conversations > 0 THEN "
    "CAST(responded_conversations AS DOUBLE PRECISION) / new_conversations END"
)
_USAGE = (
    "CASE WHEN limit_line_days > 0 THEN "
    "CAST(new_conversations AS DOUBLE PRECISION) / limit_line_days END"
)
# What each sortable column sorts by (in SQL over the comparison's rows), and the summed
# columns it needs beyond those of the median (new and responded conversations).
COMPARISON_SORTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "name": (f"CASE WHEN kind = '{_AVAILABLE}' THEN 'available' ELSE LOWER(name) END", ()),
    "messages_sent": ("messages_sent", ("messages_sent",)),
    "messages_received": ("messages_received", ("messages_received",)),
    "new_conversations": ("new_conversations", ()),
    "responded_conversations": ("responded_conversations", ()),
    "inbound_conversations": ("inbound_conversations", ("inbound_conversations",)),
    "response_rate": (_RATE, ()),
    "volume_limit_usage": (_USAGE, ("active_line_days", "limit_line_days")),
    "over_pressured_line_days": ("over_pressured_line_days", ("over_pressured_line_days",)),
    "flags": (
        f"(CASE WHEN median_rate > 0 AND {_RATE} < {UNDERPERFORMING_SHARE} * median_rate "
        "THEN 1 ELSE 0 END) + (CASE WHEN over_pressured_line_days > 0 THEN 1 ELSE 0 END)",
        ("over_pressured_line_days",),
    ),
}


@dataclass
class AnalyticsList:
    """One page of the comparison, and what it is a page of."""

    period: Period
    rows: list[dict[str, Any]]
    count: int  # sub-accounts listed (active), every page
    median: float | None  # the partner's median response rate, every listed sub-account


def _median(r1: int | None, n1: int | None, r2: int | None, n2: int | None) -> float | None:
    """``statistics.median`` of the rounded response rates, from the middle one or two."""
    if not n1 or not n2:
        return None
    low = Metrics(new_conversations=n1, responded_conversations=r1 or 0).response_rate
    high = Metrics(new_conversations=n2, responded_conversations=r2 or 0).response_rate
    return statistics.median([low, high])


def _ranking(
    partner: Partner,
    period: Period,
    owners: dict[int, int],
    live: Live,
    sort: str,
    offset: int,
    limit: int | None,
) -> tuple[int, float | None, list[tuple[int, str, str]]]:
    """The listed count, the median response rate and the page's ``(id, name, kind)`` in
    order: one statement that sums, per sub-account, only the columns the median and
    the sort need.

    The median comes from the middle one or two rates (ordered exactly: rounding a rate
    cannot reorder them). Without a sort the page is read straight from the
    sub-accounts in their listed order (an index walk), not ranked.
    """
    key = sort.removeprefix("-")
    expression, extra = COMPARISON_SORTS.get(key, (None, ()))
    columns = ["new_conversations", "responded_conversations", *extra]
    activity, params = _period_rows_sql(partner.pk, period.start, period.end, columns)
    if "limit_line_days" in columns:
        held = _held_sql(partner_id=partner.pk, zone=period.zone, days=live.days, since=live.since)
        activity, params = _with_capacity(activity, params, columns, held)
    ctes, owner_params = _owner_sums_sql(activity, columns, owners)
    params = owner_params + params
    listed_columns = ", ".join(f"COALESCE(s.{name}, 0) AS {name}" for name in columns)
    ctes += [
        f"listed AS (SELECT sa.id, sa.name, sa.kind, {listed_columns} "  # noqa: S608
        f"FROM {SubAccount._meta.db_table} sa LEFT JOIN sums s ON s.owner_id = sa.id "
        "WHERE sa.partner_id = %s AND sa.status = %s)",
        "ranked AS (SELECT responded_conversations AS r, new_conversations AS n, "  # noqa: S608
        f"ROW_NUMBER() OVER (ORDER BY {_RATE}, id) AS rn, COUNT(*) OVER () AS total "
        "FROM listed WHERE new_conversations > 0)",
        "summary AS (SELECT (SELECT COUNT(*) FROM listed) AS listed_count, "
        "MAX(CASE WHEN rn = (total + 1) / 2 THEN r END) AS r1, "
        "MAX(CASE WHEN rn = (total + 1) / 2 THEN n END) AS n1, "
        "MAX(CASE WHEN rn = (total + 2) / 2 THEN r END) AS r2, "
        "MAX(CASE WHEN rn = (total + 2) / 2 THEN n END) AS n2 FROM ranked)",
    ]
    params += [partner.pk, SubAccountStatus.ACTIVE]
    if expression is None and limit is not None:
        ctes.append(
            f"page AS (SELECT id, name, kind FROM {SubAccount._meta.db_table} "  # noqa: S608
            f"WHERE partner_id = %s AND status = %s ORDER BY {_listed_order()} "
            "LIMIT %s OFFSET %s)"
        )
        params += [partner.pk, SubAccountStatus.ACTIVE, limit, offset]
        join, order = "1 = 1", _listed_order("o")
    else:
        if expression is None:
            order_by = _listed_order()
        else:
            # Empty values last either way; ties keep the listed order.
            direction = "DESC" if sort.startswith("-") else "ASC"
            order_by = (
                f"({expression}) IS NULL, ({expression}) {direction}, {_listed_order('listed')}"
            )
        ranked = "SELECT listed.*, rates.median_rate FROM listed CROSS JOIN rates"
        if limit is not None:
            # The rows up to the page's end are cut first (a bounded sort keeps only those,
            # instead of ordering all ten thousand), then numbered.
            ranked += f" ORDER BY {order_by} LIMIT %s"
            params.append(offset + limit)
        ctes += [
            "rates AS (SELECT summary.*, (CAST(r1 AS DOUBLE PRECISION) / n1 "
            "+ CAST(r2 AS DOUBLE PRECISION) / n2) / 2 AS median_rate FROM summary)",
            f"page AS (SELECT listed.id, listed.name, listed.kind, ROW_NUMBER() OVER "  # noqa: S608
            f"(ORDER BY {order_by}) AS position FROM ({ranked}) listed)",
        ]
        join, order = "o.position > %s", "o.position"
        params.append(offset)
    # Identifiers come from model metadata and the fixed sort table; values are parameters.
    sql = (
        f"WITH {', '.join(ctes)} SELECT summary.listed_count, summary.r1, summary.n1, "  # noqa: S608
        f"summary.r2, summary.n2, o.id, o.name, o.kind "
        f"FROM summary LEFT JOIN page o ON {join} ORDER BY {order}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        result = cursor.fetchall()
    count, *middle = result[0][:5]
    middle = [None if v is None else int(v) for v in middle]  # sums of sums: NUMERIC
    return count, _median(*middle), [row[5:] for row in result if row[5] is not None]


def _page_figures(
    partner: Partner,
    period: Period,
    owners: dict[int, int],
    live: Live,
    page: list[int] | None,
) -> dict[int, Metrics]:
    """Every summed column, live capacity included, for the page's sub-accounts (and those
    merged into them; ``None``: every sub-account) in one statement."""
    members = None
    if page is not None:
        members = set(page) | {sa for sa, owner in owners.items() if owner in set(page)}
    activity, params = _period_rows_sql(
        partner.pk, period.start, period.end, ROLLUP_SUMS, sub_account_ids=members
    )
    held = _held_sql(
        partner_id=partner.pk,
        zone=period.zone,
        days=live.days,
        sub_account_ids=members,
        since=live.since,
    )
    activity, params = _with_capacity(activity, params, ROLLUP_SUMS, held)
    ctes, owner_params = _owner_sums_sql(activity, ROLLUP_SUMS, owners)
    # Identifiers come from model metadata; values are parameters.
    sql = f"WITH {', '.join(ctes)} SELECT owner_id, {', '.join(ROLLUP_SUMS)} FROM sums"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, owner_params + params)
        rows = cursor.fetchall()
    figures: dict[int, Metrics] = {}
    for owner_id, *values in rows:
        figures[owner_id] = m = Metrics()
        m.add_values([int(v or 0) for v in values])
    return figures


def _flag(m: Metrics, median: float | None) -> None:
    """The comparison's flags (SPEC §4): a response rate below half the partner's median,
    and at least one over-pressured line-day."""
    rate = m.response_rate
    if median and rate is not None and rate < UNDERPERFORMING_SHARE * median:
        m.flags.append("underperforming")
    if m.over_pressured_line_days:
        m.flags.append("over_pressured")


@dataclass
class ComparisonFigures:
    """The comparison's figures of some sub-accounts, flagged, and what they are of."""

    period: Period
    median: float | None
    figures: dict[int, Metrics]  # sub-accounts with none (merged ones among them) are absent


def sub_account_comparison_figures(
    *,
    principal: Principal,
    sub_account_ids: Collection[int] | None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> ComparisonFigures:
    """The comparison's figures and flags (the same sums, median and words as
    :func:`sub_account_analytics_list`) for ``sub_account_ids`` (``None``: every
    sub-account, for a caller that orders them all itself), whatever their status: the
    Sub-accounts list shows them beside pending-deletion and merged rows.

    Two statements besides the period's look-ups: the median (ranking nothing) and the
    sums of the sub-accounts asked for. A merged sub-account has no figures of its own:
    its history counts under the one it was merged into."""
    require(can_read_analytics(principal), "Your role may not read analytics.")
    partner = partner_for(principal)
    period = analytics_period(partner=partner, start=start, end=end)
    owners = merged_owners(partner.pk)
    live = live_capacity(period, partner.pk)
    _count, median, _page = _ranking(partner, period, owners, live, "", 0, 0)
    ids = None if sub_account_ids is None else list(sub_account_ids)
    figures = _page_figures(partner, period, owners, live, ids)
    if ids is not None:
        wanted = set(ids)
        figures = {pk: m for pk, m in figures.items() if pk in wanted}
    for m in figures.values():
        _flag(m, median)
    return ComparisonFigures(period=period, median=median, figures=figures)


def sub_account_analytics_list(
    *,
    principal: Principal,
    start: dt.date | None = None,
    end: dt.date | None = None,
    sort: str = "",
    offset: int = 0,
    limit: int | None = None,
) -> AnalyticsList:
    """Active sub-accounts' metrics for the period: ``limit`` rows from ``offset`` in the
    ``sort`` order (a key of :data:`COMPARISON_SORTS`, ``-`` for descending; otherwise
    Available first, then by name), with the count and the partner's median response
    rate (the yardstick of the ``underperforming`` flag).

    Two statements, whatever the number of sub-accounts: one ranks (sums what the
    median and the sort need per sub-account, takes the median, cuts the page in the
    database), the other sums every column, live capacity included, for the page's
    sub-accounts only. Merged sub-accounts count under their target.
    """
    require(can_read_analytics(principal), "Your role may not read analytics.")
    partner = partner_for(principal)
    period = analytics_period(partner=partner, start=start, end=end)
    owners = merged_owners(partner.pk)
    live = live_capacity(period, partner.pk)
    count, median, page = _ranking(partner, period, owners, live, sort, offset, limit)
    ids = [sa_id for sa_id, _, _ in page]
    figures = _page_figures(partner, period, owners, live, ids if limit is not None else None)
    rows = []
    for sa_id, name, kind in page:
        m = figures.get(sa_id) or Metrics()
        _flag(m, median)
        display = "Available" if kind == SubAccountKind.AVAILABLE else name
        rows.append({"sub_account_id": sa_id, "name": display, **m.as_dict(), "flags": m.flags})
    return AnalyticsList(period=period, rows=rows, count=count, median=median)


# --- One sub-account -------------------------------------------------------------------


def analytics_members(partner_id: int, sub_account_id: int) -> set[int]:
    """The sub-account and every one merged into it (directly or down a chain)."""
    owners = merged_owners(partner_id)
    return {sa for sa, owner in owners.items() if owner == sub_account_id} | {sub_account_id}


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
    members = analytics_members(partner.pk, sub_account.pk)

    daily = {day: Metrics() for day in period.days}
    rollups = DailySubAccountRollup.objects.filter(
        partner_id=partner.pk,
        sub_account_id__in=sorted(members),
        day__gte=period.start,
        day__lte=period.end,
    )
    for row in _rollup_sums(rollups, "day"):
        daily[row["day"]].add_counts(row)
    live = live_capacity(period, partner.pk)
    added = line_days(
        partner_id=partner.pk,
        zone=period.zone,
        days=live.days,
        sub_account_ids=members,
        since=live.since,
    )
    for (_, day), (count, limits) in added.items():
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
