"""Helpers of the webhook tests."""

from __future__ import annotations

import json
from typing import Any

from portal.webhooks import services
from portal.webhooks.dispatcher import Dispatcher
from portal.webhooks.models import WebhookDelivery, WebhookEvent
from tests.factories import Tenant


def endpoint_for(tenant: Tenant, url: str, events: list[str] | None = None, **extra: Any):
    """An endpoint of ``tenant`` (through the service, as its admin) and its secret."""
    issued = services.webhook_endpoint_create(
        principal=tenant.principal("admin"), url=url, events=events or ["*"], **extra
    )
    return issued.endpoint, issued.secret


def deliver(**options: Any) -> int:
    """Send every delivery due now, in this process (the worker's dispatcher)."""
    return Dispatcher(worker_id="tests", **options).drain()


def payloads(partner_id: int, type_: str | None = None) -> list[dict[str, Any]]:
    """The bodies of the partner's webhook events, oldest first."""
    qs = WebhookEvent.objects.filter(partner_id=partner_id).order_by("pk")
    if type_:
        qs = qs.filter(type=type_)
    return [json.loads(body) for body in qs.values_list("body", flat=True)]


def deliveries(endpoint_id: int) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.filter(endpoint_id=endpoint_id).order_by("pk"))
