"""Capacity advice (domain §8.4, "decide where to add/remove lines"): per sub-account, the
lines to add so that the window's busiest day would have stayed at or under a target
usage, or how many could go back to Available without passing it, and the lines that
were idle for the whole window.

The rule, worked out once here for the API (``GET /analytics/capacity``), the column
beside the Analytics comparison and the Move dialog the column links to:

- the **busiest day** of the window is the day with the most new conversations (the
  later one on a tie), counted as the comparison counts them (merged sub-accounts under
  the one they were merged into); its usage is those conversations ÷ the Σ daily limits
  of that day's line-days;
- the advice measures that day's new conversations ``N`` against the lines the
  sub-account holds **now** (Σ of their daily limits ``C``) at the target ``t``:
  when ``N > t × C`` it adds the fewest lines at the partner's default daily limit ``d``
  (what a line from Available comes with) that bring ``N ≤ t × (C + k·d)``; otherwise it
  takes back lines while ``N ≤ t × (what stays)`` holds, idle lines first, then the
  smallest limits (by id on a tie), skipping any whose removal would pass the target;
- a line is **idle** when it is active in the sub-account now, was activated before the
  window began, and sent and received no message in the window (in any sub-account).

The functions taking a bare partner (``_advice_for`` and below) are internal: the public
ones find the sub-accounts through ``visible_to(principal)`` first.

Reads: the window's days of :class:`DailySubAccountRollup` (and live capacity for days
not closed, as the comparison adds it), and the sub-accounts' active lines with one
indexed look-up each into :class:`DailyLineRollup`; a fixed number of queries for a page
of sub-accounts, whatever its size.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, Q

from portal.accounts.policies import require
from portal.analytics.capacity import held_sql, live_capacity
from portal.analytics.models import DailyLineRollup, DailySubAccountRollup
from portal.analytics.periods import MAX_DAYS, Metrics, Period, id_filter
from portal.analytics.policies import can_read_capacity_advice
from portal.analytics.selectors import merged_owners
from portal.core import clock
from portal.core.errors import Invalid
from portal.core.principal import Principal
from portal.lines.models import Line, LineStatus
from portal.partners.models import Partner, SubAccount, SubAccountKind, SubAccountStatus
from portal.partners.selectors import available_pool, partner_for

ADVICE_REFUSAL = "Capacity advice is for the reseller: your role may not read it."
DEFAULT_TARGET = Decimal("0.8")
DEFAULT_WINDOW_DAYS = 30
TARGET_PLACES = 4


def clean_target(value: Any) -> Decimal:
    """A target usage: a fraction above 0 and at most 1, at most 4 decimals (0.8 = 80 %)."""
    if isinstance(value, bool) or value is None:
        raise Invalid("target must be a fraction such as 0.8.", field="target")
    try:
        target = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise Invalid(f"target {value!r} is not a number.", field="target") from None
    if not target.is_finite() or not 0 < target <= 1:
        raise Invalid("target is a fraction above 0 and at most 1 (0.8 = 80 %).", field="target")
    step = Decimal(1).scaleb(-TARGET_PLACES)
    if target != target.quantize(step):
        raise Invalid(f"target has at most {TARGET_PLACES} decimals.", field="target")
    return target.quantize(step)


def window(partner: Partner, days: int) -> Period:
    """The last ``days`` partner-local days up to today (1 to :data:`MAX_DAYS`)."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise Invalid(f"days must be 1 to {MAX_DAYS}.", field="days")
    zone = zoneinfo.ZoneInfo(partner.timezone)
    today = clock.now().astimezone(zone).date()
    return Period(start=today - dt.timedelta(days=days - 1), end=today, zone=zone)


@dataclass
class HeldLine:
    line_id: int
    daily_limit: int
    idle: bool


@dataclass
class CapacityAdvice:
    """One sub-account's advice; ``suggested_change`` > 0 adds lines, < 0 returns them."""

    sub_account_id: int
    name: str
    lines: int
    busiest_day: dt.date | None
    busiest_day_new: int
    busiest_day_usage: float | None
    suggested_change: int
    idle_lines: int
    # The lines it would return to Available (idle first), for the Move dialog.
    returnable: list[int] = field(default_factory=list)


def _as_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def _busiest_days(
    partner_id: int, period: Period, members: set[int], owners: dict[int, int]
) -> dict[int, tuple[dt.date | None, int, int, bool]]:
    """``{owner: (busiest day, its new conversations, its Σ limits, any line-days)}`` over
    the window, for the owners of ``members``: one statement."""
    only, only_ids = id_filter("sub_account_id", members)
    ops = connection.ops
    activity = (
        "SELECT sub_account_id, day, new_conversations, limit_line_days "  # noqa: S608
        f"FROM {DailySubAccountRollup._meta.db_table} WHERE partner_id = %s{only} "
        "AND day >= %s AND day <= %s"
    )
    params: list[Any] = [
        partner_id,
        *only_ids,
        ops.adapt_datefield_value(period.start),
        ops.adapt_datefield_value(period.end),
    ]
    live = live_capacity(period, partner_id)
    held = held_sql(
        partner_id=partner_id,
        zone=period.zone,
        days=live.days,
        sub_account_ids=members,
        since=live.since,
    )
    if held is not None:
        activity += f" UNION ALL SELECT sub_account_id, day, 0, daily_limit FROM ({held[0]}) h"  # noqa: S608
        params += held[1]
    # Identifiers come from model metadata; values are parameters.
    sql = (
        "SELECT sub_account_id, day, SUM(new_conversations), SUM(limit_line_days) "  # noqa: S608
        f"FROM ({activity}) a GROUP BY sub_account_id, day"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    days: dict[int, dict[dt.date, list[int]]] = {}
    for sub_account_id, day, new, limits in rows:
        owner = owners.get(sub_account_id, sub_account_id)
        sums = days.setdefault(owner, {}).setdefault(_as_date(day), [0, 0])
        sums[0] += int(new or 0)
        sums[1] += int(limits or 0)
    busiest: dict[int, tuple[dt.date | None, int, int, bool]] = {}
    for owner, by_day in days.items():
        any_capacity = any(limits > 0 for _, limits in by_day.values())
        busy = [(new, day) for day, (new, _) in by_day.items() if new > 0]
        if busy:
            new, day = max(busy)
            busiest[owner] = (day, new, by_day[day][1], any_capacity)
        else:
            busiest[owner] = (None, 0, 0, any_capacity)
    return busiest


def _held_lines(partner_id: int, period: Period, ids: Collection[int]) -> dict[int, list[HeldLine]]:
    """Each sub-account's active lines, in the order the advice returns them: idle ones
    first, then the smallest limits, then by id."""
    traffic = DailyLineRollup.objects.filter(
        partner_id=partner_id,
        line_id=OuterRef("pk"),
        day__gte=period.start,
        day__lte=period.end,
    ).filter(Q(messages_sent__gt=0) | Q(messages_received__gt=0))
    lines = (
        Line.objects.filter(
            partner_id=partner_id, status=LineStatus.ACTIVE, sub_account_id__in=sorted(ids)
        )
        .annotate(busy=Exists(traffic))
        .values_list("pk", "sub_account_id", "daily_limit", "activated_at", "busy")
    )
    start = period.midnight(period.start)
    held: dict[int, list[HeldLine]] = {pk: [] for pk in ids}
    for pk, sub_account_id, limit, activated_at, busy in lines:
        held[sub_account_id].append(HeldLine(pk, limit, not busy and activated_at <= start))
    for rows in held.values():
        rows.sort(key=lambda h: (not h.idle, h.daily_limit, h.line_id))
    return held


def _advise(
    sub_account_id: int,
    name: str,
    held: list[HeldLine],
    busiest: tuple[dt.date | None, int, int, bool],
    target: Decimal,
    default_limit: int,
) -> CapacityAdvice:
    day, new, day_limits, any_capacity = busiest
    capacity = sum(h.daily_limit for h in held)
    usage = Metrics(new_conversations=new, limit_line_days=day_limits).volume_limit_usage
    if usage is None and any_capacity:
        usage = 0.0
    need = Fraction(new) / Fraction(target)  # the Σ limits that keep the day at the target
    change = 0
    returnable: list[int] = []
    if need > capacity:
        change = math.ceil((need - capacity) / default_limit)
    else:
        staying = capacity
        for h in held:
            if need <= staying - h.daily_limit:
                staying -= h.daily_limit
                returnable.append(h.line_id)
        change = -len(returnable)
    return CapacityAdvice(
        sub_account_id=sub_account_id,
        name=name,
        lines=len(held),
        busiest_day=day,
        busiest_day_new=new,
        busiest_day_usage=usage,
        suggested_change=change,
        idle_lines=sum(1 for h in held if h.idle),
        returnable=returnable,
    )


def _advice_for(
    partner: Partner, period: Period, target: Decimal, subs: list[tuple[int, str]]
) -> list[CapacityAdvice]:
    if not subs:
        return []
    ids = {pk for pk, _ in subs}
    owners = merged_owners(partner.pk)
    members = ids | {sa for sa, owner in owners.items() if owner in ids}
    busiest = _busiest_days(partner.pk, period, members, owners)
    held = _held_lines(partner.pk, period, ids)
    none: tuple[dt.date | None, int, int, bool] = (None, 0, 0, False)
    return [
        _advise(pk, name, held[pk], busiest.get(pk, none), target, partner.default_daily_limit)
        for pk, name in subs
    ]


def _standard(principal: Principal) -> Any:
    """The sub-accounts advice is for: the principal's active ones but Available (read
    through ``visible_to``, so a principal narrowed to some sub-accounts gets only those)."""
    return SubAccount.objects.visible_to(principal).filter(
        status=SubAccountStatus.ACTIVE, kind=SubAccountKind.STANDARD
    )


def capacity_advice(
    *, principal: Principal, period: Period, target: Decimal, sub_account_ids: Collection[int]
) -> dict[int, CapacityAdvice]:
    """The advice for those of ``sub_account_ids`` that are the principal's active
    sub-accounts other than Available (the comparison page's rows)."""
    require(can_read_capacity_advice(principal), ADVICE_REFUSAL)
    partner = partner_for(principal)
    subs = list(
        _standard(principal).filter(pk__in=sorted(set(sub_account_ids))).values_list("pk", "name")
    )
    return {a.sub_account_id: a for a in _advice_for(partner, period, target, subs)}


@dataclass
class AdviceList:
    period: Period
    target: Decimal
    items: list[CapacityAdvice]
    count: int


def capacity_advice_list(
    *, principal: Principal, days: int, target: Any, offset: int = 0, limit: int = 50
) -> AdviceList:
    """A page of the partner's active sub-accounts but Available, by name, each with its
    advice over the last ``days`` days at ``target`` usage."""
    require(can_read_capacity_advice(principal), ADVICE_REFUSAL)
    partner = partner_for(principal)
    goal = clean_target(target)
    period = window(partner, days)
    listed = _standard(principal).listed_order()
    subs = list(listed.values_list("pk", "name")[offset : offset + limit])
    return AdviceList(
        period=period,
        target=goal,
        items=_advice_for(partner, period, goal, subs),
        count=listed.count(),
    )


@dataclass
class AdvisedMove:
    """What the advice would move: ``line_ids`` into ``destination_id``, each line seen
    where it is now (``seen``: line id -> sub-account id)."""

    advice: CapacityAdvice
    line_ids: list[int]
    seen: dict[int, int]
    destination_id: int
    short_by: int = 0  # lines to add that Available does not have


def capacity_advice_move(
    *, principal: Principal, sub_account_id: Any, period: Period, target: Decimal
) -> AdvisedMove:
    """The lines the advice for one sub-account would move: the ones it would return to
    Available, or as many of Available's lines as it would add (the oldest first)."""
    require(can_read_capacity_advice(principal), ADVICE_REFUSAL)
    sub = SubAccount.objects.get_visible(principal, sub_account_id, what="Sub-account")
    if sub.kind != SubAccountKind.STANDARD or sub.status != SubAccountStatus.ACTIVE:
        raise Invalid(
            f"{sub.display_name} gets no capacity advice: only active sub-accounts do.",
            field="sub_account_id",
        )
    partner = Partner.objects.get(pk=sub.partner_id)
    (advice,) = _advice_for(partner, period, target, [(sub.pk, sub.name)])
    pool = available_pool(partner.pk)
    if advice.suggested_change >= 0:
        wanted = advice.suggested_change
        line_ids = list(
            Line.objects.filter(
                partner_id=partner.pk, status=LineStatus.ACTIVE, sub_account_id=pool.pk
            )
            .order_by("pk")
            .values_list("pk", flat=True)[:wanted]
        )
        return AdvisedMove(
            advice=advice,
            line_ids=line_ids,
            seen=dict.fromkeys(line_ids, pool.pk),
            destination_id=sub.pk,
            short_by=wanted - len(line_ids),
        )
    return AdvisedMove(
        advice=advice,
        line_ids=advice.returnable,
        seen=dict.fromkeys(advice.returnable, sub.pk),
        destination_id=pool.pk,
    )
