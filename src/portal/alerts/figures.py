"""The figures alert rules compare: one value per sub-account (or for the partner), read
from the analytics rollups the Analytics pages read, rounded as the pages round them.

A rule's window is the last ``window_days`` partner-local days up to today, the period
the Analytics page calls "Last N days": its value for a sub-account is the figure the
comparison shows for that period (merged sub-accounts counted under the one they were
merged into, the day in progress as counted so far). Every sub-account's figure comes
from one statement (``analytics.selectors.sub_account_sums``), whatever their number.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

from portal.alerts.models import Comparator, Metric
from portal.analytics.periods import Metrics, Period
from portal.analytics.selectors import sub_account_sums
from portal.core import clock
from portal.partners.models import Partner, SubAccount, SubAccountKind, SubAccountStatus

# The rollup columns each per-sub-account metric needs.
_COLUMNS: dict[str, tuple[str, ...]] = {
    Metric.VOLUME_LIMIT_USAGE: ("new_conversations", "limit_line_days"),
    Metric.RESPONSE_RATE: ("new_conversations", "responded_conversations"),
    Metric.OVER_PRESSURED_LINE_DAYS: ("over_pressured_line_days",),
}


def window(partner: Partner, window_days: int) -> Period:
    """The last ``window_days`` partner-local days, today included."""
    zone = zoneinfo.ZoneInfo(partner.timezone)
    today = clock.now().astimezone(zone).date()
    return Period(start=today - dt.timedelta(days=window_days - 1), end=today, zone=zone)


def _value(metric: str, sums: dict[str, int]) -> Decimal | None:
    """The figure as the pages show it (rates rounded to 4 places); None when undefined."""
    if metric == Metric.OVER_PRESSURED_LINE_DAYS:
        return Decimal(sums["over_pressured_line_days"])
    m = Metrics(**sums)
    rate = m.volume_limit_usage if metric == Metric.VOLUME_LIMIT_USAGE else m.response_rate
    return None if rate is None else Decimal(str(rate))


def watched_sub_accounts(partner_id: int, sub_account_id: int | None) -> list[int]:
    """The sub-accounts a rule watches now: the active sub-accounts but Available (each
    separately), or the one it names while that one is active."""
    listed = SubAccount.objects.filter(
        partner_id=partner_id, status=SubAccountStatus.ACTIVE, kind=SubAccountKind.STANDARD
    )
    if sub_account_id is not None:
        listed = listed.filter(pk=sub_account_id)
    return list(listed.values_list("pk", flat=True))


def figures(
    *, partner: Partner, metric: str, window_days: int, sub_account_id: int | None
) -> dict[int | None, Decimal | None]:
    """``{sub_account_id: value}`` for every sub-account the rule watches (``None`` keys
    the partner's own figure, for partner-wide metrics); a value of None is undefined (a
    rate without conversations, usage without line-days)."""
    if metric == Metric.AVAILABLE_LINES:
        count = (
            SubAccount.objects.filter(partner_id=partner.pk, kind=SubAccountKind.AVAILABLE)
            .values_list("line_count", flat=True)
            .first()
        )
        return {None: Decimal(count or 0)}
    columns = _COLUMNS[metric]
    watched = watched_sub_accounts(partner.pk, sub_account_id)
    if not watched:
        return {}
    sums = sub_account_sums(
        partner_id=partner.pk,
        period=window(partner, window_days),
        columns=columns,
        sub_account_ids=None if sub_account_id is None else watched,
    )
    zeros = [0] * len(columns)
    return {
        sa: _value(metric, dict(zip(columns, sums.get(sa, zeros), strict=True))) for sa in watched
    }


def holds(comparator: str, value: Decimal | None, threshold: Decimal) -> bool:
    """Whether ``value`` is strictly above / below ``threshold`` (never when undefined)."""
    if value is None:
        return False
    return value > threshold if comparator == Comparator.ABOVE else value < threshold
