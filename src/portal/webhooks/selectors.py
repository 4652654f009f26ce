"""Reads of webhook endpoints and the delivery log, for the partner's admins."""

from __future__ import annotations

import json
from typing import Any

from django.db.models import QuerySet

from portal.accounts.policies import require
from portal.core.errors import BadRequest
from portal.core.principal import Principal
from portal.webhooks import catalogue
from portal.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from portal.webhooks.policies import can_manage_webhooks

_REFUSED = "Only a partner admin sees webhooks."


def webhook_endpoint_list(*, principal: Principal) -> QuerySet[WebhookEndpoint]:
    require(can_manage_webhooks(principal), _REFUSED)
    return WebhookEndpoint.objects.visible_to(principal).order_by("pk")


def webhook_endpoint_get(*, principal: Principal, endpoint_id: Any) -> WebhookEndpoint:
    require(can_manage_webhooks(principal), _REFUSED)
    return WebhookEndpoint.objects.get_visible(principal, endpoint_id, what="Webhook endpoint")


def delivery_filters(status: str | None, event_type: str | None) -> dict[str, str]:
    """The delivery log's filters, checked (400 for a value that names nothing)."""
    filters: dict[str, str] = {}
    if status:
        if status not in DeliveryStatus.values:
            raise BadRequest(
                f"Unknown status {status[:40]!r}; use one of {', '.join(DeliveryStatus.values)}."
            )
        filters["status"] = status
    if event_type:
        if event_type != catalogue.PING and event_type not in catalogue.EVENT_TYPES:
            raise BadRequest(
                f"Unknown event type {event_type[:64]!r}; use a type such as 'line.moved'."
            )
        filters["event_type"] = event_type
    return filters


def webhook_delivery_list(
    *,
    principal: Principal,
    endpoint_id: Any,
    status: str | None = None,
    event_type: str | None = None,
) -> QuerySet[WebhookDelivery]:
    """An endpoint's deliveries, newest first, optionally by status and event type; by
    the ``(partner, endpoint, -id)`` index."""
    endpoint = webhook_endpoint_get(principal=principal, endpoint_id=endpoint_id)
    filters = delivery_filters(status, event_type)
    return (
        WebhookDelivery.objects.visible_to(principal)
        .filter(endpoint_id=endpoint.pk, **filters)
        .select_related("event")
        .only(
            "pk",
            "endpoint_id",
            "event_type",
            "status",
            "attempts",
            "last_status_code",
            "last_error",
            "last_attempt_at",
            "next_attempt_at",
            "created_at",
            "event__msg_id",
        )
        .order_by("-pk")
    )


def webhook_delivery_get(*, principal: Principal, delivery_id: Any) -> WebhookDelivery:
    """One delivery with its event (payload) and endpoint."""
    require(can_manage_webhooks(principal), _REFUSED)
    return WebhookDelivery.objects.select_related("event", "endpoint").get_visible(
        principal, delivery_id, what="Webhook delivery"
    )


def webhook_attempt_list(*, delivery: WebhookDelivery) -> list[WebhookAttempt]:
    """A delivery's attempts, oldest first (the delivery was read through the wall)."""
    return list(
        WebhookAttempt.objects.filter(
            partner_id=delivery.partner_id, delivery_id=delivery.pk
        ).order_by("at", "pk")
    )


def payload_of(delivery: WebhookDelivery) -> dict[str, Any]:
    """The delivery's JSON body as sent, decoded."""
    return json.loads(delivery.event.body)
