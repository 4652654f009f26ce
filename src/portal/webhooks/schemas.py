"""API shapes for webhooks. ``…In`` for input, ``…Out`` for output; no output but the
ones made at creation and rotation carries a secret."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Schema
from pydantic import ConfigDict, StrictBool


class WebhookEndpointIn(Schema):
    model_config = ConfigDict(extra="forbid")

    url: str
    events: list[str]
    description: str = ""
    enabled: StrictBool = True


class WebhookEndpointPatchIn(Schema):
    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    events: list[str] | None = None
    description: str | None = None
    enabled: StrictBool | None = None


class WebhookEndpointOut(Schema):
    id: int
    url: str
    description: str
    events: list[str]
    enabled: bool
    disabled_reason: str
    failing_since: dt.datetime | None
    previous_secret_until: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class WebhookEndpointCreatedOut(WebhookEndpointOut):
    secret: str  # whsec_…: shown in this answer only


class WebhookEndpointListOut(Schema):
    items: list[WebhookEndpointOut]
    count: int


class WebhookSecretOut(Schema):
    id: int
    secret: str  # whsec_…: shown in this answer only
    previous_secret_until: dt.datetime | None


class WebhookDeliveryOut(Schema):
    id: int
    endpoint_id: int
    event_id: str  # the webhook-id header of every attempt
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str
    last_attempt_at: dt.datetime | None
    next_attempt_at: dt.datetime | None
    created_at: dt.datetime


class WebhookDeliveryListOut(Schema):
    items: list[WebhookDeliveryOut]
    count: int


class WebhookAttemptOut(Schema):
    at: dt.datetime
    status_code: int | None
    duration_ms: int
    error: str
    response: str


class WebhookDeliveryDetailOut(WebhookDeliveryOut):
    payload: dict[str, Any]
    history: list[WebhookAttemptOut]
