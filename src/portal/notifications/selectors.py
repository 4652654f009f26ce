"""Scoped reads of inboxes (domain §8.4): a person's own rows, or for an API key (and
staff acting for a partner) the partner's shared inbox, narrowed to the kinds its role
reads (``policies``). A partner's client reads its own rows about its statements only."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from portal.core.principal import Principal
from portal.notifications.models import CLIENT_OBJECT_TYPE, Kind, Notification
from portal.notifications.policies import require_inbox, shared_kinds


def inbox(*, principal: Principal) -> QuerySet[Notification]:
    """The principal's inbox, newest first (403 for a client key; nothing for staff users,
    who have no partner inbox).

    A client's user reads its own statement rows only (``visible_to`` narrows it to the
    rows addressed to it): rows it got before it became a client (an alert, an invoice)
    stay out of its sight."""
    require_inbox(principal)
    rows = Notification.objects.visible_to(principal)
    if principal.kind == "user":
        if principal.is_staff:
            return rows.none()
        rows = rows.filter(recipient_id=principal.id)
        if principal.is_client:
            rows = rows.filter(kind=Kind.STATEMENT_ISSUED, object_type=CLIENT_OBJECT_TYPE)
    else:
        rows = rows.filter(recipient__isnull=True, kind__in=shared_kinds(principal))
    return rows.order_by("-created_at", "-pk")


def notification_list(*, principal: Principal, unread: bool = False) -> QuerySet[Notification]:
    rows = inbox(principal=principal)
    return rows.filter(read_at__isnull=True) if unread else rows


def notification_get(*, principal: Principal, notification_id: Any) -> Notification:
    """One notification of the principal's inbox; another person's answers 404."""
    return inbox(principal=principal).get_visible(principal, notification_id, what="Notification")


def unread_count(*, principal: Principal) -> int:
    """The bell's figure: one indexed COUNT (the partial index of unread rows)."""
    return notification_list(principal=principal, unread=True).count()
