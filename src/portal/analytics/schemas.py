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


class CapacityAdviceOut(Schema):
    """One sub-account's capacity advice: ``suggested_change`` lines to add (> 0) so the
    window's busiest day would have stayed at or under the target usage, or to return to
    Available (< 0) without passing it; ``idle_lines`` sent and received nothing in the
    window. ``busiest_day_usage`` is a fraction (``null`` without line-days)."""

    sub_account_id: int
    name: str
    lines: int
    busiest_day: dt.date | None
    busiest_day_usage: float | None
    suggested_change: int
    idle_lines: int


class CapacityAdviceListOut(Schema):
    start: dt.date
    end: dt.date
    target: float
    items: list[CapacityAdviceOut]
    count: int
