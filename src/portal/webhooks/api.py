"""REST endpoints for webhooks: endpoints, their secrets, tests and the delivery log."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Status

from portal.core.api import MAX_LIMIT, MAX_OFFSET, principal_of
from portal.core.api import page as paginate
from portal.core.errors import Invalid
from portal.webhooks import selectors, services
from portal.webhooks.models import WebhookDelivery, WebhookEndpoint
from portal.webhooks.schemas import (
    WebhookDeliveryDetailOut,
    WebhookDeliveryListOut,
    WebhookDeliveryOut,
    WebhookEndpointCreatedOut,
    WebhookEndpointIn,
    WebhookEndpointListOut,
    WebhookEndpointOut,
    WebhookEndpointPatchIn,
    WebhookSecretOut,
)

router = Router(tags=["webhooks"])


def _delivery_out(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.pk,
        "endpoint_id": delivery.endpoint_id,
        "event_id": delivery.event.msg_id,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "last_attempt_at": delivery.last_attempt_at,
        "next_attempt_at": delivery.next_attempt_at,
        "created_at": delivery.created_at,
    }


@router.get("/webhook-endpoints", response=WebhookEndpointListOut)
def list_webhook_endpoints(
    request: HttpRequest,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    qs = selectors.webhook_endpoint_list(principal=principal_of(request))
    return paginate(qs, limit=limit, offset=offset)


@router.post("/webhook-endpoints", response={201: WebhookEndpointCreatedOut})
def create_webhook_endpoint(request: HttpRequest, payload: WebhookEndpointIn) -> Status:
    """Admin: register an endpoint. The answer carries its `secret`, shown this once."""
    issued = services.webhook_endpoint_create(
        principal=principal_of(request), **payload.model_dump()
    )
    shown = {name: getattr(issued.endpoint, name) for name in WebhookEndpointOut.model_fields}
    return Status(201, {**shown, "secret": issued.secret})


@router.get("/webhook-endpoints/{webhook_endpoint_id}", response=WebhookEndpointOut)
def get_webhook_endpoint(request: HttpRequest, webhook_endpoint_id: int) -> WebhookEndpoint:
    return selectors.webhook_endpoint_get(
        principal=principal_of(request), endpoint_id=webhook_endpoint_id
    )


@router.patch("/webhook-endpoints/{webhook_endpoint_id}", response=WebhookEndpointOut)
def update_webhook_endpoint(
    request: HttpRequest, webhook_endpoint_id: int, payload: WebhookEndpointPatchIn
) -> WebhookEndpoint:
    """Admin: change `url`, `events`, `description` or `enabled` (enabling clears the
    failing streak)."""
    changes = payload.model_dump(exclude_unset=True)
    for name, value in changes.items():
        if value is None:
            raise Invalid(f"{name} cannot be null; omit it to keep it.", field=name)
    return services.webhook_endpoint_update(
        principal=principal_of(request), endpoint_id=webhook_endpoint_id, **changes
    )


@router.delete("/webhook-endpoints/{webhook_endpoint_id}", response={204: None})
def delete_webhook_endpoint(request: HttpRequest, webhook_endpoint_id: int) -> Status:
    """Admin: delete the endpoint, its deliveries and their log."""
    services.webhook_endpoint_delete(
        principal=principal_of(request), endpoint_id=webhook_endpoint_id
    )
    return Status(204, None)


@router.post("/webhook-endpoints/{webhook_endpoint_id}/rotate-secret", response=WebhookSecretOut)
def rotate_webhook_secret(request: HttpRequest, webhook_endpoint_id: int) -> dict[str, Any]:
    """Admin: a new secret, shown this once; the old one keeps signing for 24 hours."""
    issued = services.webhook_endpoint_rotate_secret(
        principal=principal_of(request), endpoint_id=webhook_endpoint_id
    )
    return {
        "id": issued.endpoint.pk,
        "secret": issued.secret,
        "previous_secret_until": issued.endpoint.previous_secret_until,
    }


@router.post("/webhook-endpoints/{webhook_endpoint_id}/test", response={202: WebhookDeliveryOut})
def test_webhook_endpoint(request: HttpRequest, webhook_endpoint_id: int) -> Status:
    """Admin: send a `ping` event to this endpoint (queued: the answer is its delivery)."""
    delivery = services.webhook_endpoint_test(
        principal=principal_of(request), endpoint_id=webhook_endpoint_id
    )
    return Status(202, _delivery_out(delivery))


@router.get("/webhook-endpoints/{webhook_endpoint_id}/deliveries", response=WebhookDeliveryListOut)
def list_webhook_deliveries(
    request: HttpRequest,
    webhook_endpoint_id: int,
    status: str | None = None,
    event_type: str | None = None,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    """The endpoint's deliveries, newest first; `status` and `event_type` filter."""
    qs = selectors.webhook_delivery_list(
        principal=principal_of(request),
        endpoint_id=webhook_endpoint_id,
        status=status,
        event_type=event_type,
    )
    return paginate(
        qs, limit=limit, offset=offset, shape=lambda rows: [_delivery_out(d) for d in rows]
    )


@router.get("/webhook-deliveries/{webhook_delivery_id}", response=WebhookDeliveryDetailOut)
def get_webhook_delivery(request: HttpRequest, webhook_delivery_id: int) -> dict[str, Any]:
    """One delivery with its payload and every attempt (time, status code, duration)."""
    delivery = selectors.webhook_delivery_get(
        principal=principal_of(request), delivery_id=webhook_delivery_id
    )
    return {
        **_delivery_out(delivery),
        "payload": selectors.payload_of(delivery),
        "history": selectors.webhook_attempt_list(delivery=delivery),
    }


@router.post("/webhook-deliveries/{webhook_delivery_id}/retry", response=WebhookDeliveryOut)
def retry_webhook_delivery(request: HttpRequest, webhook_delivery_id: int) -> dict[str, Any]:
    """Admin: send the delivery again now, with the same `webhook-id`."""
    delivery = services.webhook_delivery_retry(
        principal=principal_of(request), delivery_id=webhook_delivery_id
    )
    return _delivery_out(delivery)
