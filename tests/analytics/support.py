"""Building dated line histories and message events for the analytics tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from portal.analytics.models import (
    Conversation,
    DailyLineRollup,
    DailySubAccountRollup,
    SubAccountRollupBucket,
)
from portal.analytics.selectors import ROLLUP_SUMS
from portal.analytics.services import IngestReport, bucket_starts, message_events_ingest
from portal.core import clock
from portal.lines.models import Line
from portal.lines.services import line_assign, line_move
from portal.partners.models import Partner, SubAccount
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
        new, limit = row["new_conversations"], row["daily_limit"]
        values = [row[name] for name in ACTIVITY[:5]]
        values += [int(new * 10 >= limit * 9), int(new >= limit)]
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
