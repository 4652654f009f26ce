"""Writes for webhook endpoints and their deliveries, by a partner admin (domain §8.3).

Each is one transaction with one audit event; the secret never enters an audit event.
A URL is checked (``addresses.url_check``: resolving its host) before the transaction
starts, so no lock is held while the resolver answers. Locks: the endpoint, then its
deliveries (deleting an endpoint deletes them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from portal.accounts.policies import require
from portal.audit.services import audit_record
from portal.core import clock
from portal.core.errors import Conflict, Invalid
from portal.core.principal import Principal
from portal.core.retry import retry_on_lost_race
from portal.core.text import clean_text
from portal.partners.selectors import partner_for
from portal.webhooks import catalogue
from portal.webhooks.addresses import url_check
from portal.webhooks.catalogue import Event
from portal.webhooks.deliveries import claim_is_live
from portal.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from portal.webhooks.outbox import events_write, forget_targets
from portal.webhooks.policies import can_manage_webhooks, ensure_enabled
from portal.webhooks.signing import ROTATION_OVERLAP, new_secret

MAX_ENDPOINTS = 20  # per partner
DESCRIPTION_MAX = 200
ENDPOINT_FIELDS = ("url", "events", "description", "enabled")
_REFUSED = "Only a partner admin manages webhooks."


def clean_events(value: Any, *, field: str = "events") -> list[str]:
    """A non-empty list of known event types (in the catalogue's order), or ``["*"]``."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise Invalid('Events must be a list of event types, or ["*"] for all.', field=field)
    wanted = list(value)
    if not wanted:
        raise Invalid("Choose at least one event type.", field=field)
    if any(not isinstance(v, str) for v in wanted):
        raise Invalid("Event types are strings such as 'line.moved'.", field=field)
    if catalogue.ALL in wanted:
        return [catalogue.ALL]
    unknown = sorted({v for v in wanted if v not in catalogue.EVENT_TYPES})
    if unknown:
        shown = ", ".join(repr(v[:64]) for v in unknown[:5])
        raise Invalid(
            f"Unknown event types: {shown}. Use types such as 'line.moved', or '*' for all.",
            field=field,
        )
    return [t for t in catalogue.EVENT_TYPES if t in wanted]


def _clean_description(value: Any) -> str:
    return clean_text(value, field="description", label="Description", max_length=DESCRIPTION_MAX)


def _clean_enabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid("Enabled is true or false.", field="enabled")
    return value


def _view(endpoint: WebhookEndpoint, fields: Iterable[str]) -> dict[str, Any]:
    return {f: getattr(endpoint, f) for f in fields}


def _lock(principal: Principal, endpoint_id: Any) -> WebhookEndpoint:
    return WebhookEndpoint.objects.select_for_update(no_key=True).get_visible(
        principal, endpoint_id, what="Webhook endpoint"
    )


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    """An endpoint and its new secret: shown once, in the answer that made it."""

    endpoint: WebhookEndpoint
    secret: str


@retry_on_lost_race
def webhook_endpoint_create(
    *,
    principal: Principal,
    url: Any,
    events: Any,
    description: Any = "",
    enabled: Any = True,
) -> IssuedSecret:
    """Register an endpoint for the acting partner, with a new ``whsec_`` secret.

    Every refused field is reported at once (422); more than :data:`MAX_ENDPOINTS`
    per partner is refused (409).
    """
    require(can_manage_webhooks(principal), _REFUSED)
    errors: dict[str, str] = {}
    cleaned: dict[str, Any] = {}
    for name, clean, value in (
        ("url", url_check, url),
        ("events", clean_events, events),
        ("description", _clean_description, description),
        ("enabled", _clean_enabled, enabled),
    ):
        try:
            cleaned[name] = clean(value)
        except Invalid as exc:
            errors[name] = str(exc.detail)
    if errors:
        raise Invalid.of_fields(errors)
    with transaction.atomic():
        partner = partner_for(principal)
        if WebhookEndpoint.objects.filter(partner_id=partner.pk).count() >= MAX_ENDPOINTS:
            raise Conflict(f"A partner has at most {MAX_ENDPOINTS} webhook endpoints.")
        now = clock.now()
        secret = new_secret()
        endpoint = WebhookEndpoint.objects.create(
            partner=partner, secret=secret, created_at=now, updated_at=now, **cleaned
        )
        forget_targets()
        audit_record(
            principal=principal,
            partner_id=partner.pk,
            action="webhook_endpoint.create",
            object_type="webhook_endpoint",
            object_id=endpoint.pk,
            at=now,
            data={"after": _view(endpoint, ENDPOINT_FIELDS)},
        )
    return IssuedSecret(endpoint=endpoint, secret=secret)


@retry_on_lost_race
def webhook_endpoint_update(
    *, principal: Principal, endpoint_id: Any, **changes: Any
) -> WebhookEndpoint:
    """Change an endpoint's ``url``, ``events``, ``description`` or ``enabled``.

    Enabling it again clears why it was disabled and its failing streak; its pending
    deliveries go out. A change that changes nothing records nothing.
    """
    require(can_manage_webhooks(principal), _REFUSED)
    unknown = set(changes) - set(ENDPOINT_FIELDS)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}.")
    WebhookEndpoint.objects.get_visible(principal, endpoint_id, what="Webhook endpoint")
    cleaners = {
        "url": url_check,
        "events": clean_events,
        "description": _clean_description,
        "enabled": _clean_enabled,
    }
    cleaned: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, value in changes.items():
        try:
            cleaned[name] = cleaners[name](value)
        except Invalid as exc:
            errors[name] = str(exc.detail)
    if errors:
        raise Invalid.of_fields(errors)
    with transaction.atomic():
        endpoint = _lock(principal, endpoint_id)
        before = _view(endpoint, cleaned)
        after = {k: v for k, v in cleaned.items() if before[k] != v}
        if not after:
            return endpoint
        for key, value in after.items():
            setattr(endpoint, key, value)
        fields = [*after, "updated_at"]
        if after.get("enabled") is True:
            endpoint.disabled_reason, endpoint.failing_since = "", None
            fields += ["disabled_reason", "failing_since"]
        endpoint.updated_at = clock.now()
        endpoint.save(update_fields=fields)
        forget_targets()
        audit_record(
            principal=principal,
            partner_id=endpoint.partner_id,
            action="webhook_endpoint.update",
            object_type="webhook_endpoint",
            object_id=endpoint.pk,
            data={"before": {k: before[k] for k in after}, "after": after},
        )
    return endpoint


@retry_on_lost_race
@transaction.atomic
def webhook_endpoint_delete(*, principal: Principal, endpoint_id: Any) -> None:
    """Delete an endpoint with its deliveries and their log; nothing more is sent to it
    (an attempt under way finishes, and is not recorded)."""
    require(can_manage_webhooks(principal), _REFUSED)
    endpoint = _lock(principal, endpoint_id)
    before = _view(endpoint, ENDPOINT_FIELDS)
    partner_id, pk = endpoint.partner_id, endpoint.pk
    WebhookEndpoint.objects.filter(pk=pk).delete()
    forget_targets()
    audit_record(
        principal=principal,
        partner_id=partner_id,
        action="webhook_endpoint.delete",
        object_type="webhook_endpoint",
        object_id=pk,
        data={"before": before},
    )


@retry_on_lost_race
@transaction.atomic
def webhook_endpoint_rotate_secret(*, principal: Principal, endpoint_id: Any) -> IssuedSecret:
    """Give the endpoint a new secret. The one it replaces keeps signing beside it for
    24 hours (deliveries carry both signatures), so the receiver can switch over."""
    require(can_manage_webhooks(principal), _REFUSED)
    endpoint = _lock(principal, endpoint_id)
    now = clock.now()
    secret = new_secret()
    endpoint.previous_secret, endpoint.previous_secret_until = (
        endpoint.secret,
        now + ROTATION_OVERLAP,
    )
    endpoint.secret, endpoint.updated_at = secret, now
    endpoint.save(
        update_fields=["secret", "previous_secret", "previous_secret_until", "updated_at"]
    )
    audit_record(
        principal=principal,
        partner_id=endpoint.partner_id,
        action="webhook_endpoint.rotate_secret",
        object_type="webhook_endpoint",
        object_id=endpoint.pk,
        at=now,
        data={"previous_secret_until": endpoint.previous_secret_until},
    )
    return IssuedSecret(endpoint=endpoint, secret=secret)


@retry_on_lost_race
@transaction.atomic
def webhook_endpoint_test(*, principal: Principal, endpoint_id: Any) -> WebhookDelivery:
    """Send Test event: a ``ping`` to this endpoint alone, whatever it subscribes to."""
    require(can_manage_webhooks(principal), _REFUSED)
    endpoint = _lock(principal, endpoint_id)
    ensure_enabled(endpoint, "send a test event")
    now = clock.now()
    (delivery,) = events_write(
        partner_id=endpoint.partner_id,
        at=now,
        events=[Event(catalogue.PING, {"endpoint_id": endpoint.pk, "url": endpoint.url})],
        endpoint_ids=[endpoint.pk],
    )
    audit_record(
        principal=principal,
        partner_id=endpoint.partner_id,
        action="webhook_endpoint.test",
        object_type="webhook_endpoint",
        object_id=endpoint.pk,
        at=now,
        data={"delivery_id": delivery.pk, "event_id": delivery.event.msg_id},
    )
    return delivery


@retry_on_lost_race
@transaction.atomic
def webhook_delivery_retry(*, principal: Principal, delivery_id: Any) -> WebhookDelivery:
    """Send a delivery again now, whatever its status, with the same ``webhook-id``.

    A failed delivery gets one more attempt (failed again if it fails); a pending or
    retrying one goes at once. 409 while an attempt is under way, or when its endpoint
    is disabled.
    """
    require(can_manage_webhooks(principal), _REFUSED)
    delivery = (
        WebhookDelivery.objects.select_for_update(no_key=True, of=("self",))
        .select_related("endpoint", "event")
        .get_visible(principal, delivery_id, what="Webhook delivery")
    )
    now = clock.now()
    if claim_is_live(delivery, now):
        raise Conflict("This delivery is being sent right now; look again in a moment.")
    ensure_enabled(delivery.endpoint, "retry its deliveries")
    before = delivery.status
    delivery.status = DeliveryStatus.RETRYING if delivery.attempts else DeliveryStatus.PENDING
    delivery.next_attempt_at = now
    delivery.claimed_by, delivery.claimed_at = "", None
    delivery.save(update_fields=["status", "next_attempt_at", "claimed_by", "claimed_at"])
    audit_record(
        principal=principal,
        partner_id=delivery.partner_id,
        action="webhook_delivery.retry",
        object_type="webhook_delivery",
        object_id=delivery.pk,
        at=now,
        data={
            "endpoint_id": delivery.endpoint_id,
            "event_id": delivery.event.msg_id,
            "event_type": delivery.event_type,
            "before": {"status": before},
            "after": {"status": delivery.status},
        },
    )
    return delivery
