"""Reads the Analytics pages need beyond the API's selectors: the partner's daily
series and each line's usage inside a sub-account.

They follow the selectors' rules (``selectors`` module docstring): the partner's
figures come from :class:`DailyPartnerRollup` (capacity of days not closed yet from
:func:`~portal.analytics.capacity.partner_line_days`), a merged sub-account's history
shows under its target, and a line counts an active line-day for every sub-account
that held it at any moment of a partner-local day. Per-line figures come from
:class:`DailyLineRollup`, whose rows carry the limit they were counted against.
A fixed number of queries whatever the number of sub-accounts or lines.

The partner is ``partner_for(principal)``'s; helpers taking a bare ``partner_id`` are
internal (``core.tenancy``).
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import F, Max, Q, Sum

from portal.accounts.policies import require
from portal.analytics.capacity import live_capacity, partner_line_days
from portal.analytics.models import DailyLineRollup, DailyPartnerRollup, DailySubAccountRollup
from portal.analytics.periods import ROLLUP_SUMS, Metrics, Period
from portal.analytics.policies import can_read_analytics
from portal.analytics.selectors import (
    analytics_members,
    analytics_owner_map,
    daily_answer,
    members_daily,
    merged_owners,
)
from portal.core import clock
from portal.core.principal import Principal
from portal.lines.models import AssignmentPeriod
from portal.partners.models import SubAccount, SubAccountStatus
from portal.partners.selectors import partner_for

# --- The partner's days ------------------------------------------------------------------


def _left_out(partner_id: int) -> set[int]:
    """The sub-accounts whose history the comparison leaves out.

    The comparison lists active sub-accounts; a merged one counts under the
    sub-account its chain ends at, so history is left out only when that end is not
    active (pending deletion, deleted). Only merged and inactive sub-accounts are read
    (usually a handful): any other one is active and its own end.
    """
    others = list(
        SubAccount.objects.filter(partner_id=partner_id)
        .filter(Q(merged_into__isnull=False) | ~Q(status=SubAccountStatus.ACTIVE))
        .values("id", "status", "merged_into_id")
    )
    status = {sa["id"]: sa["status"] for sa in others}
    return {
        sa_id
        for sa_id, owner in analytics_owner_map(others).items()
        if status.get(owner, SubAccountStatus.ACTIVE) != SubAccountStatus.ACTIVE
    }


def partner_analytics_daily(*, principal: Principal, period: Period) -> dict[str, Any]:
    """The partner's totals and daily series over what the comparison table lists.

    ``period`` is the one :func:`~portal.analytics.selectors.sub_account_analytics_list`
    returned. The totals equal the sums of the comparison rows; volume limit usage is
    Σ new ÷ Σ (limit × active line-days) over all of them. Reads the partner's days
    (:class:`DailyPartnerRollup`, one row a day) less the days of the sub-accounts left
    out, and the partner's live capacity for the days not closed yet.
    """
    require(can_read_analytics(principal), "Your role may not read analytics.")
    partner_id = partner_for(principal).pk
    if principal.sub_account_ids is not None:
        return _narrowed_daily(principal, partner_id, period)
    excluded = _left_out(partner_id)
    daily = {day: Metrics() for day in period.days}
    in_period = {"partner_id": partner_id, "day__gte": period.start, "day__lte": period.end}
    for row in DailyPartnerRollup.objects.filter(**in_period).values("day", *ROLLUP_SUMS):
        daily[row["day"]].add_counts(row)
    if excluded:
        left_out = DailySubAccountRollup.objects.filter(
            **in_period, sub_account_id__in=sorted(excluded)
        )
        sums = left_out.values("day").annotate(**{f"total_{n}": Sum(n) for n in ROLLUP_SUMS})
        for row in sums.order_by():
            daily[row["day"]].add_values([-(row[f"total_{n}"] or 0) for n in ROLLUP_SUMS])
    live = partner_line_days(
        partner_id=partner_id,
        zone=period.zone,
        live=live_capacity(period, partner_id),
        exclude=excluded,
    )
    for day, (count, limits) in live.items():
        daily[day].add_line_days(count, limits)
    return daily_answer(daily)


def _narrowed_daily(principal: Principal, partner_id: int, period: Period) -> dict[str, Any]:
    """:func:`partner_analytics_daily` for a principal narrowed to some sub-accounts (a
    partner's client, domain §8.2): the days of its own active sub-accounts (what its
    comparison lists), with the history merged into them, from their own rollups and
    line-days, never the partner's days, which count every other sub-account too."""
    own = set(
        SubAccount.objects.visible_to(principal)
        .filter(status=SubAccountStatus.ACTIVE)
        .values_list("pk", flat=True)
    )
    members = own | {sa for sa, owner in merged_owners(partner_id).items() if owner in own}
    return daily_answer(members_daily(partner_id, period, members))


# --- Lines inside a sub-account ------------------------------------------------------------


@dataclass
class LineUsage:
    """One line's traffic and volume limit usage for a sub-account over a period."""

    line_id: int
    number: str
    label: str
    daily_limit: int
    messages_sent: int = 0
    messages_received: int = 0
    new_conversations: int = 0
    active_line_days: int = 0
    peak_usage: float | None = None  # the busiest day's new conversations ÷ that day's limit
    near_limit_line_days: int = 0
    over_pressured_line_days: int = 0

    @property
    def average_usage(self) -> float | None:
        """Σ new conversations ÷ (limit × active line-days), as the sub-account's usage."""
        if not self.active_line_days or not self.daily_limit:
            return None
        return round(self.new_conversations / (self.daily_limit * self.active_line_days), 4)


def _held_days(spans: list[tuple[int, int]]) -> int:
    """How many day indexes the ``[first, last)`` spans cover together."""
    if len(spans) == 1:
        return spans[0][1] - spans[0][0]
    total, reached = 0, 0
    for first, last in sorted(spans):
        first = max(first, reached)
        if last > first:
            total += last - first
            reached = last
    return total


def _line_day_counts(
    partner_id: int, members: list[int], period: Period
) -> dict[int, tuple[str, str, int, int]]:
    """``{line_id: (number, label, daily limit, active line-days)}`` for the members.

    A line counts a day for each member that held it at any moment of the day (as
    :func:`~portal.analytics.capacity.line_days` counts, here per line).
    """
    today = clock.now().astimezone(period.zone).date()
    days = [d for d in period.days if d <= today]
    if not days:
        return {}
    starts = [period.midnight(d) for d in days]
    ends = [period.midnight(d + dt.timedelta(days=1)) for d in days]
    periods = AssignmentPeriod.objects.filter(
        partner_id=partner_id, sub_account_id__in=members, start__lt=ends[-1]
    ).filter(Q(end__isnull=True) | Q(end__gt=starts[0]))
    spans: dict[tuple[int, int], list[tuple[int, int]]] = {}
    info: dict[int, tuple[str, str, int]] = {}
    for line_id, sub_account_id, number, label, limit, start, end in periods.values_list(
        "line_id",
        "sub_account_id",
        "line__number",
        "line__label",
        "line__daily_limit",
        "start",
        "end",
    ):
        info[line_id] = (number, label, limit)
        if end is not None and end <= start:
            continue  # moved on the instant it arrived: held nothing
        first = bisect.bisect_right(ends, start)  # the first day ending after it started
        last = len(days) if end is None else bisect.bisect_left(starts, end)
        if last > first:
            spans.setdefault((line_id, sub_account_id), []).append((first, last))
    counts = dict.fromkeys(info, 0)
    for (line_id, _), line_spans in spans.items():
        counts[line_id] += _held_days(line_spans)
    return {line_id: (*info[line_id], counts[line_id]) for line_id in info}


def line_usage(*, principal: Principal, sub_account_id: Any, period: Period) -> list[LineUsage]:
    """Every line that worked for the sub-account (or one merged into it) in the period.

    A line appears when it had an active line-day there or traffic attributed there.
    Rows come back by number; the page sorts them.
    """
    require(can_read_analytics(principal), "Your role may not read analytics.")
    sub_account = SubAccount.objects.get_visible(principal, sub_account_id, what="Sub-account")
    partner_id = sub_account.partner_id
    members = sorted(analytics_members(partner_id, sub_account.pk))
    usage = {
        line_id: LineUsage(line_id, number, label, limit, active_line_days=held)
        for line_id, (number, label, limit, held) in _line_day_counts(
            partner_id, members, period
        ).items()
    }
    rollups = (
        DailyLineRollup.objects.filter(
            partner_id=partner_id,
            sub_account_id__in=members,
            day__gte=period.start,
            day__lte=period.end,
        )
        .values("line_id", "line__number", "line__label", "line__daily_limit")
        .annotate(
            sent=Sum("messages_sent"),
            received=Sum("messages_received"),
            new=Sum("new_conversations"),
            # Per mille, so the busiest day compares across limit changes without floats in SQL.
            peak=Max(F("new_conversations") * 1000 / F("daily_limit")),
            # Each row's share of its line-day's pressure (a merge day's rows are one).
            near_days=Sum("near_limit_line_days"),
            over_days=Sum("over_pressured_line_days"),
        )
        .order_by()
    )
    for r in rollups:
        row = usage.get(r["line_id"])
        if row is None:
            row = usage[r["line_id"]] = LineUsage(
                r["line_id"], r["line__number"], r["line__label"], r["line__daily_limit"]
            )
        row.messages_sent = r["sent"] or 0
        row.messages_received = r["received"] or 0
        row.new_conversations = r["new"] or 0
        row.peak_usage = round((r["peak"] or 0) / 1000, 4)
        row.near_limit_line_days = r["near_days"] or 0
        row.over_pressured_line_days = r["over_days"] or 0
    for row in usage.values():
        if row.peak_usage is None and row.active_line_days:
            row.peak_usage = 0.0  # worked, sent nothing new
    return sorted(usage.values(), key=lambda u: (u.number, u.line_id))
