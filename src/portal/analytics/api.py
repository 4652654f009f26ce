"""REST endpoints for message events (the platform) and analytics (partners)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router

from portal.analytics import advice, ingestion, selectors
from portal.analytics.periods import MAX_DAYS
from portal.analytics.schemas import (
    CapacityAdviceListOut,
    MessageEventBatchIn,
    MessageEventBatchOut,
    SubAccountAnalyticsDetailOut,
    SubAccountAnalyticsListOut,
)
from portal.core.api import MAX_LIMIT, MAX_OFFSET, principal_of

router = Router(tags=["analytics"])


@router.post("/message-events", response=MessageEventBatchOut)
def post_message_events(request: HttpRequest, payload: MessageEventBatchIn) -> Any:
    return ingestion.message_events_ingest(principal=principal_of(request), events=payload.events)


@router.get("/analytics/sub-accounts", response=SubAccountAnalyticsListOut)
def list_sub_account_analytics(
    request: HttpRequest,
    start: dt.date | None = None,
    end: dt.date | None = None,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    listing = selectors.sub_account_analytics_list(
        principal=principal_of(request), start=start, end=end, offset=offset, limit=limit
    )
    return {
        "start": listing.period.start,
        "end": listing.period.end,
        "median_response_rate": listing.median,
        "items": listing.rows,
        "count": listing.count,
    }


@router.get("/sub-accounts/{sub_account_id}/analytics", response=SubAccountAnalyticsDetailOut)
def get_sub_account_analytics(
    request: HttpRequest,
    sub_account_id: int,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> dict[str, Any]:
    return selectors.sub_account_analytics(
        principal=principal_of(request), sub_account_id=sub_account_id, start=start, end=end
    )


@router.get("/analytics/capacity", response=CapacityAdviceListOut)
def list_capacity_advice(
    request: HttpRequest,
    target: str = Query("0.8", description="Target usage, a fraction above 0 and at most 1."),
    days: int = Query(advice.DEFAULT_WINDOW_DAYS, ge=1, le=MAX_DAYS),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    """Per active sub-account but Available, by name: the lines to add so the busiest day
    of the last ``days`` days would have stayed at or under ``target`` usage, or the
    lines that could go back to Available without passing it, and the idle lines."""
    listing = advice.capacity_advice_list(
        principal=principal_of(request), days=days, target=target, offset=offset, limit=limit
    )
    return {
        "start": listing.period.start,
        "end": listing.period.end,
        "target": float(listing.target),
        "items": [
            {
                "sub_account_id": a.sub_account_id,
                "name": a.name,
                "lines": a.lines,
                "busiest_day": a.busiest_day,
                "busiest_day_usage": a.busiest_day_usage,
                "suggested_change": a.suggested_change,
                "idle_lines": a.idle_lines,
            }
            for a in listing.items
        ],
        "count": listing.count,
    }
