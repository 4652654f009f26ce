"""Building dated line histories and message events for the analytics tests."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from typing import Any

from portal.analytics.ingestion import IngestReport, message_events_ingest
from portal.analytics.models import (
    Conversation,
    DailyLineRollup,
    DailySubAccountRollup,
    SubAccountRollupBucket,
)
from portal.analytics.periods import ROLLUP_SUMS
from portal.analytics.rollups import bucket_starts
from portal.core import clock
from portal.core.principal import Principal
from portal.lines.models import AssignmentPeriod, Line, LineLimitChange
from portal.lines.services import line_assign, line_move, line_update
from portal.partners.models import Partner, SubAccount
from portal.workflows.services.merges import (
    merge_request_approve,
    merge_request_create,
    merge_request_run,
)
from tests.factories import SYSTEM, make_lines

T0 = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def utc(text: str) -> dt.datetime:
    """``"2025-03-01 09:00"`` (or with seconds) as an aware UTC instant."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def lines_at(partner: Partner, count: int, when: dt.datetime = T0) -> list[Line]:
    """Lines activated (into Available) at ``when``."""
    with clock.frozen_at(when):
        return make_lines(partner, count)


def assign_at(line: Line, sub_account: SubAccount, when: dt.datetime, daily_limit: int = 50):
    with clock.frozen_at(when):
        line_assign(
            principal=SYSTEM,
            line_id=line.pk,
            sub_account_id=sub_account.pk,
            label="Desk",
            daily_limit=daily_limit,
        )


def move_at(line: Line, sub_account: SubAccount, when: dt.datetime) -> None:
    with clock.frozen_at(when):
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=sub_account.pk)


def event(
    event_id: str, line: Line | str, direction: str, contact: str, occurred_at: dt.datetime | str
) -> dict[str, Any]:
    return {
        "id": event_id,
        "line": line if isinstance(line, str) else line.number,
        "direction": direction,
        "contact": contact,
        "occurred_at": occurred_at if isinstance(occurred_at, str) else occurred_at.isoformat(),
    }


def ingest(*events: dict[str, Any]) -> IngestReport:
    return message_events_ingest(principal=SYSTEM, events=list(events))


def rollups(partner: Partner) -> list[tuple]:
    """``(line, sub_account, day, sent, received, new, responded, inbound)`` rows, sorted."""
    return sorted(
        DailyLineRollup.objects.filter(partner=partner).values_list(
            "line_id",
            "sub_account_id",
            "day",
            "messages_sent",
            "messages_received",
            "new_conversations",
            "responded_conversations",
            "inbound_conversations",
            "daily_limit",
            "near_limit_line_days",
            "over_pressured_line_days",
        )
    )


def pressure_recounted(partner: Partner) -> list[tuple]:
    """What the line rollups' ``(line, sub_account, day, daily_limit, near, over)`` must be,
    worked out from scratch (domain §4): each line-day judged by the limit the line had at
    the end of the day, the rows of the day of a merge summed and flagged in the target.
    """
    zone = zoneinfo.ZoneInfo(partner.timezone)
    rows = DailyLineRollup.objects.filter(partner=partner).values_list(
        "line_id", "sub_account_id", "day", "new_conversations"
    )
    result = []
    by_line_day: dict[tuple, dict[int, int]] = {}
    for line_id, sub_account_id, day, new in rows:
        by_line_day.setdefault((line_id, day), {})[sub_account_id] = new
    for (line_id, day), news in by_line_day.items():
        day_start = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
        day_end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
        later = LineLimitChange.objects.filter(line_id=line_id, at__gte=day_end).order_by("at")
        first = later.first()
        limit = first.old_limit if first else Line.objects.get(pk=line_id).daily_limit
        joins = {}  # sub-account left by a merge that day -> the one that took the line
        periods = list(AssignmentPeriod.objects.filter(line_id=line_id).order_by("start"))
        for before, after in itertools.pairwise(periods):
            if after.via_merge and day_start < after.start < day_end:
                joins[before.sub_account_id] = after.sub_account_id
        unit_of = {}
        for sub_account_id in news:
            head = sub_account_id
            while head in joins:
                head = joins[head]
            unit_of[sub_account_id] = head
        totals: dict[int, int] = {}
        for sub_account_id, new in news.items():
            totals[unit_of[sub_account_id]] = totals.get(unit_of[sub_account_id], 0) + new
        for sub_account_id in set(news) | set(totals):
            total = totals.get(sub_account_id)
            near = int(total is not None and total * 10 >= limit * 9)
            over = int(total is not None and total >= limit)
            result.append((line_id, sub_account_id, day, limit, near, over))
    return sorted(result)


def pressure_stored(partner: Partner) -> list[tuple]:
    return sorted(
        DailyLineRollup.objects.filter(partner=partner).values_list(
            "line_id",
            "sub_account_id",
            "day",
            "daily_limit",
            "near_limit_line_days",
            "over_pressured_line_days",
        )
    )


def rollup(partner: Partner, line: Line, sub_account: SubAccount, day: str) -> dict[str, int]:
    """One rollup's counts by name ({} when there is no row)."""
    row = (
        DailyLineRollup.objects.filter(
            partner=partner, line=line, sub_account=sub_account, day=dt.date.fromisoformat(day)
        )
        .values(
            "messages_sent",
            "messages_received",
            "new_conversations",
            "responded_conversations",
            "inbound_conversations",
        )
        .first()
    )
    return row or {}


def conversations(partner: Partner) -> list[tuple]:
    fields = ("line_id", "contact_hash", "kind", "started_at", "sub_account_id", "local_day")
    return sorted(Conversation.objects.filter(partner=partner).values_list(*fields, "responded"))


ACTIVITY = (
    "messages_sent",
    "messages_received",
    "new_conversations",
    "responded_conversations",
    "inbound_conversations",
    "near_limit_line_days",
    "over_pressured_line_days",
)


def sub_rollups(partner: Partner) -> list[tuple]:
    """``(sub_account, day, *ACTIVITY)`` rows of the read model, all-zero rows left out."""
    rows = DailySubAccountRollup.objects.filter(partner=partner).values_list(
        "sub_account_id", "day", *ACTIVITY
    )
    return sorted(row for row in rows if any(row[2:]))


def sub_rollups_recounted(partner: Partner) -> list[tuple]:
    """What :func:`sub_rollups` must be: the line rollups summed per (sub-account, day)."""
    sums: dict[tuple, list[int]] = {}
    for row in DailyLineRollup.objects.filter(partner=partner).values():
        total = sums.setdefault((row["sub_account_id"], row["day"]), [0] * len(ACTIVITY))
        values = [row[name] for name in ACTIVITY]
        for i, value in enumerate(values):
            total[i] += value
    return sorted((*key, *values) for key, values in sums.items() if any(values))


def buckets(partner: Partner) -> list[tuple]:
    """``(sub_account, grain, start, *ROLLUP_SUMS)`` week and month rows, all-zero left out."""
    rows = SubAccountRollupBucket.objects.filter(partner=partner).values_list(
        "sub_account_id", "grain", "start", *ROLLUP_SUMS
    )
    return sorted(row for row in rows if any(row[3:]))


def buckets_recounted(partner: Partner) -> list[tuple]:
    """What :func:`buckets` must be: the sub-account days summed per week and month."""
    sums: dict[tuple, list[int]] = {}
    for row in DailySubAccountRollup.objects.filter(partner=partner).values():
        for grain, start in bucket_starts(row["day"]).items():
            total = sums.setdefault((row["sub_account_id"], grain, start), [0] * len(ROLLUP_SUMS))
            for i, name in enumerate(ROLLUP_SUMS):
                total[i] += row[name]
    return sorted((*key, *values) for key, values in sums.items() if any(values))


def update_limit_at(line: Line, daily_limit: int, when: dt.datetime) -> None:
    with clock.frozen_at(when):
        line_update(principal=SYSTEM, line_id=line.pk, daily_limit=daily_limit)


def merge_at(sources: list[SubAccount], target: SubAccount, when: dt.datetime) -> None:
    """Merge ``sources`` into ``target`` at ``when`` (requested, approved and run then)."""
    acting = Principal.system("tests:requester").acting_for(target.partner_id)
    approver = Principal.system("tests:approver").acting_for(target.partner_id)
    with clock.frozen_at(when):
        request = merge_request_create(
            principal=acting, source_ids=[s.pk for s in sources], target_id=target.pk
        )
        merge_request_approve(principal=approver, request_id=request.pk)
        merge_request_run(principal=approver, request_id=request.pk)
