"""Building dated line histories and message events for the analytics tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from portal.analytics.models import Conversation, DailyLineRollup
from portal.analytics.services import IngestReport, message_events_ingest
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
