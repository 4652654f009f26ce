"""API shapes for message events and analytics."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Schema
from pydantic import ConfigDict


class MessageEventBatchIn(Schema):
    """Events stay untyped here: each is checked on its own and reported by index."""

    model_config = ConfigDict(extra="forbid")

    events: list[Any]


class RejectedEventOut(Schema):
    index: int
    detail: str


class MessageEventBatchOut(Schema):
    accepted: int
    duplicates: int
    rejected: list[RejectedEventOut]


class MetricsOut(Schema):
    messages_sent: int
    messages_received: int
    new_conversations: int
    responded_conversations: int
    inbound_conversations: int
    response_rate: float | None
    volume_limit_usage: float | None
    active_line_days: int
    near_limit_line_days: int
    over_pressured_line_days: int


class SubAccountAnalyticsOut(MetricsOut):
    sub_account_id: int
    name: str
    flags: list[str]


class SubAccountAnalyticsListOut(Schema):
    start: dt.date
    end: dt.date
    median_response_rate: float | None
    items: list[SubAccountAnalyticsOut]
    count: int


class DayMetricsOut(MetricsOut):
    day: dt.date


class SubAccountAnalyticsDetailOut(Schema):
    sub_account_id: int
    name: str
    start: dt.date
    end: dt.date
    totals: MetricsOut
    days: list[DayMetricsOut]
