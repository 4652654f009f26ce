"""REST endpoints for the inbox (domain §8.4). An API key has no person behind it: it
reads its partner's shared inbox (``notifications.policies``)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router

from portal.core.api import MAX_LIMIT, MAX_OFFSET, principal_of
from portal.core.api import page as paginate
from portal.notifications import selectors, services
from portal.notifications.models import Notification
from portal.notifications.schemas import (
    NotificationListOut,
    NotificationOut,
    NotificationsReadOut,
)

router = Router(tags=["notifications"])


@router.get("/notifications", response=NotificationListOut)
def list_notifications(
    request: HttpRequest,
    unread: bool = False,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    """The inbox, newest first; `unread=true` for the unread ones only."""
    qs = selectors.notification_list(principal=principal_of(request), unread=unread)
    return paginate(qs, limit=limit, offset=offset)


@router.post("/notifications/read-all", response=NotificationsReadOut)
def read_all_notifications(request: HttpRequest) -> dict[str, int]:
    """Mark every unread notification of the inbox read; `marked` says how many."""
    return {"marked": services.notifications_read_all(principal=principal_of(request))}


@router.post("/notifications/{notification_id}/read", response=NotificationOut)
def read_notification(request: HttpRequest, notification_id: int) -> Notification:
    """Mark one notification read (already read: unchanged)."""
    return services.notification_read(
        principal=principal_of(request), notification_id=notification_id
    )
