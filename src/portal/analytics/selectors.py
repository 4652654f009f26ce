"""Scoped reads of analytics. They read daily rollups and assignment periods, never events.

Active line-days: a line counts on a partner-local day for the sub-account that
held it at the end of that day (the instant before the next local midnight). A
line moved during the day therefore counts once, for where it ended up; one
disconnected during the day does not count that day. Days after today have no
line-days. Volume limit usage uses each line's current daily limit.
"""

from __future__ import annotations

import bisect
import datetime as dt
import statistics
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, F, Q, Sum
from django.db.models.lookups import GreaterThanOrEqual

from portal.accounts.policies import require
from portal.accounts.principal import Principal
from portal.analytics.models import DailyLineRollup
from portal.analytics.policies import can_read_analytics
from portal.core import clock
from portal.core.errors import Invalid
from portal.lines.models import AssignmentPeriod
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
        """Add one :func:`_rollup_sums` row."""
        for name in (*_COUNTS, "near_limit_line_days", "over_pressured_line_days"):
            setattr(self, name, getattr(self, name) + (row.get(name) or 0))

    def add_line_days(self, line_days: int, limit_line_days: int) -> None:
        self.active_line_days += line_days
        self.limit_line_days += limit_line_days

    def add(self, other: Metrics) -> None:
        self.add_counts(other.as_dict())
        self.add_line_days(other.active_line_days, other.limit_line_days)

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
        return dt.datetime.combine(day, dt.time(0), tzinfo=self.zone).astimezone(dt.UTC)


def analytics_period(*, partner: Partner, start: dt.date | None, end: dt.date | None) -> Period:
    """The period asked for; by default the last 30 days up to today (partner-local)."""
    zone = zoneinfo.ZoneInfo(partner.timezone)
    today = clock.now().astimezone(zone).date()
    end = end or (today if start is None else start + dt.timedelta(days=DEFAULT_DAYS - 1))
    start = start or end - dt.timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise Invalid("start must be on or before end.", field="start")
    if (end - start).days + 1 > MAX_DAYS:
        raise Invalid(f"A period spans at most {MAX_DAYS} days.", field="end")
    return Period(start=start, end=end, zone=zone)


def _line_days(
    period: Period, sub_account_ids: set[int] | None, partner_id: int, *, per_day: bool
) -> dict[Any, list[int]]:
    """Active line-days from assignment periods: ``{key: [line_days, limit × line_days]}``.

    ``key`` is the sub-account id, or ``(sub_account_id, day)`` with ``per_day``.
    """
    today = clock.now().astimezone(period.zone).date()
    days = [d for d in period.days if d <= today]
    result: dict[Any, list[int]] = {}
    if not days:
        return result
    # day_ends[i] closes days[i]; a period counts for days[i] when start < end_i <= end.
    day_ends = [period.midnight(d + dt.timedelta(days=1)) for d in days]
    periods = AssignmentPeriod.objects.filter(partner_id=partner_id, start__lt=day_ends[-1]).filter(
        Q(end__isnull=True) | Q(end__gte=day_ends[0])
    )
    if sub_account_ids is not None:
        periods = periods.filter(sub_account_id__in=sorted(sub_account_ids))
    for sub_account_id, start, end, limit in periods.values_list(
        "sub_account_id", "start", "end", "line__daily_limit"
    ):
        first = bisect.bisect_right(day_ends, start)
        last = len(day_ends) if end is None else bisect.bisect_right(day_ends, end)
        if last <= first:
            continue
        if per_day:
            for i in range(first, last):
                totals = result.setdefault((sub_account_id, days[i]), [0, 0])
                totals[0] += 1
                totals[1] += limit
        else:
            totals = result.setdefault(sub_account_id, [0, 0])
            totals[0] += last - first
            totals[1] += limit * (last - first)
    return result


def _rollup_sums(qs, *group_by: str) -> list[dict[str, Any]]:
    """Summed counts per ``group_by``, and the line-days near and over their limit."""
    over = GreaterThanOrEqual(F("new_conversations"), F("line__daily_limit"))
    near = GreaterThanOrEqual(
        F("new_conversations") * 10, F("line__daily_limit") * NEAR_LIMIT_TENTHS
    )
    # Annotations must not shadow the columns: the filters above read the columns.
    rows = (
        qs.values(*group_by)
        .annotate(
            **{f"total_{name}": Sum(name) for name in _COUNTS},
            near_limit_line_days=Count("pk", filter=Q(near)),
            over_pressured_line_days=Count("pk", filter=Q(over)),
        )
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
    rollups = DailyLineRollup.objects.filter(
        partner_id=partner.pk, day__gte=period.start, day__lte=period.end
    )
    for row in _rollup_sums(rollups, "sub_account_id"):
        owner = metrics.get(owners.get(row["sub_account_id"], -1))
        if owner is not None:
            owner.add_counts(row)
    for sub_account_id, (line_days, limit_days) in _line_days(
        period, None, partner.pk, per_day=False
    ).items():
        owner = metrics.get(owners.get(sub_account_id, -1))
        if owner is not None:
            owner.add_line_days(line_days, limit_days)

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
    rollups = DailyLineRollup.objects.filter(
        partner_id=partner.pk,
        sub_account_id__in=sorted(members),
        day__gte=period.start,
        day__lte=period.end,
    )
    for row in _rollup_sums(rollups, "day"):
        daily[row["day"]].add_counts(row)
    for (_, day), (line_days, limit_days) in _line_days(
        period, members, partner.pk, per_day=True
    ).items():
        daily[day].add_line_days(line_days, limit_days)

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
