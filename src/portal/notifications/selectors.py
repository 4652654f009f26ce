"""Scoped reads of inboxes (domain §8.4): a person's own rows, or for an API key (and
staff acting for a partner) the partner's shared inbox, narrowed to the kinds its role
reads (``policies``)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from portal.core.principal import Principal
from portal.notifications.models import Notification
from portal.notifications.policies import require_inbox, shared_kinds


def inbox(*, principal: Principal) -> QuerySet[Notification]:
    """The principal's inbox, newest first (403 for a client; nothing for staff users,
    who have no partner inbox)."""
    require_inbox(principal)
    rows = Notification.objects.visible_to(principal)
    if principal.kind == "user":
        if principal.is_staff:
            return rows.none()
        rows = rows.filter(recipient_id=principal.id)
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
