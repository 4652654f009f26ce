"""Scoped reads of analytics, for people (the API and the pages). They read rollups
(and, for what is not stored yet, assignment periods), never events.

The comparison and the sub-account series read :class:`DailySubAccountRollup` (one row
per sub-account and day) and its week and month sums :class:`SubAccountRollupBucket`,
so a 90-day comparison of ten thousand sub-accounts sums about a dozen rows each,
in the database, and only the page comes back. Activity columns are current as soon
as an ingestion commits. Capacity columns (active line-days, Σ daily limits) are
written by the periodic job ``rollups.analytics_days_close``; reads add only what is
not stored (``capacity.live_capacity``).

Here: the comparison of sub-accounts (ranked in SQL, with the partner's median response
rate and the flags), the comparison's figures of chosen sub-accounts (the Sub-accounts
list), one sub-account's totals and daily series, and how a merged sub-account's
history maps to its target. Periods and :class:`~portal.analytics.periods.Metrics` are
in :mod:`~portal.analytics.periods`, live line-days in :mod:`~portal.analytics.capacity`.

Helpers that take a bare ``partner_id`` (``merged_owners``, ``analytics_members``, and
``periods.period_rows_sql``) are internal (``core.tenancy``): they are called with the
partner of ``partner_for(principal)`` or of a sub-account read through ``visible_to``.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection

from portal.accounts.policies import require
from portal.analytics.capacity import Live, held_sql, line_days, live_capacity
from portal.analytics.models import DailySubAccountRollup
from portal.analytics.periods import (
    ROLLUP_SUMS,
    Metrics,
    Period,
    analytics_period,
    period_rows_sql,
    rollup_sums,
)
from portal.analytics.policies import can_read_analytics
from portal.core.principal import Principal
from portal.partners.models import Partner, SubAccount, SubAccountKind, SubAccountStatus
from portal.partners.selectors import partner_for

# Underperforming: a response rate below this share of the partner's median.
UNDERPERFORMING_SHARE = 0.5


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
    activity, params = period_rows_sql(partner.pk, period.start, period.end, columns)
    if "limit_line_days" in columns:
        held = held_sql(partner_id=partner.pk, zone=period.zone, days=live.days, since=live.since)
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
    activity, params = period_rows_sql(
        partner.pk, period.start, period.end, ROLLUP_SUMS, sub_account_ids=members
    )
    held = held_sql(
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


_CAPACITY = ("active_line_days", "limit_line_days")


def sub_account_sums(
    *,
    partner_id: int,
    period: Period,
    columns: Sequence[str],
    sub_account_ids: Collection[int] | None = None,
) -> dict[int, list[int]]:
    """``columns`` (names of :data:`ROLLUP_SUMS`) summed over ``period`` per sub-account,
    the comparison's own sums: each merged sub-account under the one it was merged into,
    live capacity added when a capacity column is asked for. For every sub-account of
    the partner with any row (``sub_account_ids``: those and the ones merged into them).

    One statement besides the period's look-ups. No principal: for the worker's jobs
    (alert rules), which are given their partner; people read through the selectors
    above."""
    if not columns or not set(columns) <= set(ROLLUP_SUMS):
        raise ValueError(f"Columns must be names of ROLLUP_SUMS, not {columns!r}.")
    owners = merged_owners(partner_id)
    members = None
    if sub_account_ids is not None:
        wanted = set(sub_account_ids)
        members = wanted | {sa for sa, owner in owners.items() if owner in wanted}
    activity, params = period_rows_sql(
        partner_id, period.start, period.end, columns, sub_account_ids=members
    )
    if any(name in _CAPACITY for name in columns):
        live = live_capacity(period, partner_id)
        held = held_sql(
            partner_id=partner_id,
            zone=period.zone,
            days=live.days,
            sub_account_ids=members,
            since=live.since,
        )
        activity, params = _with_capacity(activity, params, columns, held)
    ctes, owner_params = _owner_sums_sql(activity, columns, owners)
    # Identifiers come from model metadata; values are parameters.
    sql = f"WITH {', '.join(ctes)} SELECT owner_id, {', '.join(columns)} FROM sums"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, owner_params + params)
        rows = cursor.fetchall()
    return {owner_id: [int(v or 0) for v in values] for owner_id, *values in rows}


def _flag(m: Metrics, median: float | None) -> None:
    """The comparison's flags (domain §4): a response rate below half the partner's median,
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
    sums of the sub-accounts asked for; for every sub-account, their sums and the active
    ones' ids, the median taken from those sums. A merged sub-account has no figures of
    its own: its history counts under the one it was merged into."""
    require(can_read_analytics(principal), "Your role may not read analytics.")
    partner = partner_for(principal)
    period = analytics_period(partner=partner, start=start, end=end)
    owners = merged_owners(partner.pk)
    live = live_capacity(period, partner.pk)
    if principal.sub_account_ids is not None:
        _listed, own, median = _narrowed_figures(principal, partner, period, owners, live)
        wanted = own.keys() if sub_account_ids is None else set(sub_account_ids)
        own = {pk: m for pk, m in own.items() if pk in wanted}
        for m in own.values():
            _flag(m, median)
        return ComparisonFigures(period=period, median=median, figures=own)
    ids = None if sub_account_ids is None else list(sub_account_ids)
    figures = _page_figures(partner, period, owners, live, ids)
    if ids is None:
        # Every sub-account's figures are here: the median is taken from them (the
        # listed ones: active), not from a second sum over the partner.
        listed = SubAccount.objects.filter(partner_id=partner.pk, status=SubAccountStatus.ACTIVE)
        active = set(listed.values_list("pk", flat=True))
        rates = [
            m.response_rate
            for pk, m in figures.items()
            if pk in active and m.response_rate is not None
        ]
        median = statistics.median(rates) if rates else None
    else:
        _count, median, _page = _ranking(partner, period, owners, live, "", 0, 0)
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
    if principal.sub_account_ids is not None:
        return _narrowed_list(principal, partner, period, owners, live, sort, offset, limit)
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


def _narrowed_figures(
    principal: Principal, partner: Partner, period: Period, owners: dict[int, int], live: Live
) -> tuple[list[tuple[int, str, str]], dict[int, Metrics], float | None]:
    """The narrowed principal's active sub-accounts ``(id, name, kind)`` in listed order,
    their figures (one statement) and the median of their own response rates."""
    listed = list(
        SubAccount.objects.visible_to(principal)
        .filter(status=SubAccountStatus.ACTIVE)
        .listed_order()
        .values_list("id", "name", "kind")
    )
    ids = [pk for pk, _, _ in listed]
    figures = _page_figures(partner, period, owners, live, ids) if ids else {}
    metrics = {pk: figures.get(pk) or Metrics() for pk, _, _ in listed}
    rates = [m.response_rate for m in metrics.values() if m.response_rate is not None]
    return listed, metrics, statistics.median(rates) if rates else None


def _narrowed_list(
    principal: Principal,
    partner: Partner,
    period: Period,
    owners: dict[int, int],
    live: Live,
    sort: str,
    offset: int,
    limit: int | None,
) -> AnalyticsList:
    """The comparison for a principal narrowed to some sub-accounts (a partner's client,
    domain §8.2): only its own active ones, ranked among themselves, and a median of their
    rates alone, so no figure of another sub-account reaches it. A client holds a handful
    of sub-accounts, so they are summed in one statement and ordered here."""
    listed, metrics, median = _narrowed_figures(principal, partner, period, owners, live)
    key = sort.removeprefix("-")
    if key in COMPARISON_SORTS and key != "flags":

        def value(row: tuple[int, str, str]) -> Any:
            return row[1].lower() if key == "name" else getattr(metrics[row[0]], key)

        present = [row for row in listed if value(row) is not None]
        present.sort(key=value, reverse=sort.startswith("-"))
        listed = present + [row for row in listed if value(row) is None]
    page = listed[offset:] if limit is None else listed[offset : offset + limit]
    rows = []
    for sa_id, name, _kind in page:
        m = metrics[sa_id]
        _flag(m, median)
        rows.append({"sub_account_id": sa_id, "name": name, **m.as_dict(), "flags": m.flags})
    return AnalyticsList(period=period, rows=rows, count=len(listed), median=median)


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

    return {
        "sub_account_id": sub_account.pk,
        "name": sub_account.display_name,
        "start": period.start,
        "end": period.end,
        **daily_answer(members_daily(partner.pk, period, members)),
    }


def members_daily(
    partner_id: int, period: Period, members: Collection[int]
) -> dict[dt.date, Metrics]:
    """Every day of ``period`` (zeros included) summed over the sub-accounts ``members``:
    their rollups and the line-days of the days not yet counted into them."""
    daily = {day: Metrics() for day in period.days}
    if not members:
        return daily
    rollups = DailySubAccountRollup.objects.filter(
        partner_id=partner_id,
        sub_account_id__in=sorted(members),
        day__gte=period.start,
        day__lte=period.end,
    )
    for row in rollup_sums(rollups, "day"):
        daily[row["day"]].add_counts(row)
    live = live_capacity(period, partner_id)
    added = line_days(
        partner_id=partner_id,
        zone=period.zone,
        days=live.days,
        sub_account_ids=members,
        since=live.since,
    )
    for (_, day), (count, limits) in added.items():
        daily[day].add_line_days(count, limits)
    return daily


def daily_answer(daily: dict[dt.date, Metrics]) -> dict[str, Any]:
    """``totals`` and ``days`` of a daily series, as the analytics answers give them."""
    totals = Metrics()
    for m in daily.values():
        totals.add(m)
    return {
        "totals": totals.as_dict(),
        "days": [{"day": day, **m.as_dict()} for day, m in daily.items()],
    }
