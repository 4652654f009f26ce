"""Webhook endpoints, the events written for them (the outbox) and their deliveries.

Deleting an endpoint or pruning an event deletes its deliveries and their attempts in
the database (``DB_CASCADE``: one statement, no rows read into Python). Django allows
that only where no model of the chain protects in Python, so the partner keys say
``DO_NOTHING``: the database's own foreign key still refuses to delete a partner that
has rows here (partners are never deleted).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from portal.core.tenancy import TenantQuerySet


class WebhookEndpoint(models.Model):
    """A URL of a partner's own system that receives the partner's events (domain §8.3).

    Invariants:
    - ``url`` passed :func:`portal.webhooks.addresses.url_check` when it was set (https in
      production; every address it resolved to public unless private addresses are
      allowed), and is checked again at every attempt;
    - ``events`` is a non-empty list of subscribable event types, or ``["*"]`` for all;
    - ``secret`` is ``whsec_`` + base64 of 32 random bytes: it signs every delivery and is
      shown once, when made; after a rotation ``previous_secret`` signs too until
      ``previous_secret_until`` (24 hours), then never again;
    - ``failing_since`` is the first failed attempt since the last success (None while
      the endpoint answers); an endpoint failing for five days is disabled
      (``enabled`` False, ``disabled_reason`` set) and its partner's admins are emailed;
    - only an enabled endpoint gets new deliveries, and only for the types it lists.
    """

    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.DO_NOTHING, related_name="+", db_index=False
    )
    url = models.CharField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list)
    enabled = models.BooleanField(default=True)
    secret = models.CharField(max_length=100)
    previous_secret = models.CharField(max_length=100, blank=True)
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["partner", "id"], name="webhook_endpoint_partner")]

    def __str__(self) -> str:
        return self.url


class WebhookEvent(models.Model):
    """One message of the outbox: what happened, as every subscribed endpoint receives it.

    Invariants:
    - written in the transaction of the change it reports (by the audit log's
      subscriber, ``portal.webhooks.outbox``): a rolled-back change leaves none, a
      committed one always has it;
    - never changed: ``body`` is the exact JSON ``{type, timestamp, data}`` sent on every
      attempt to every endpoint, and ``msg_id`` its ``webhook-id`` header each time;
    - ``data`` carries only this partner's objects (never the provider's price on a
      statement);
    - kept ``WEBHOOK_RETENTION_DAYS`` (30) days with its deliveries and attempts.
    """

    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.DO_NOTHING, related_name="+", db_index=False
    )
    msg_id = models.CharField(max_length=40)
    type = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    body = models.TextField()

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["partner", "msg_id"], name="webhook_event_msg_id")
        ]
        # The retention job reads across partners, like the worker's task queue.
        indexes = [models.Index(fields=["created_at"], name="webhook_event_created")]

    def __str__(self) -> str:
        return f"{self.type} {self.msg_id}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RETRYING = "retrying", "Retrying"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    """One event on its way to one endpoint.

    Invariants:
    - ``pending`` (no attempt yet) and ``retrying`` (attempted, more to come) have a
      ``next_attempt_at``; ``succeeded`` (a 2xx answer) and ``failed`` (the last
      scheduled attempt failed) have none until someone retries them;
    - ``attempts`` counts the recorded attempts, each a :class:`WebhookAttempt`;
    - ``claimed_by`` names the worker sending it right now (empty otherwise); a claim of
      a worker whose heartbeat went stale is void, so a delivery whose worker died is
      sent again, with the same ``webhook-id`` (at least once).
    """

    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.DO_NOTHING, related_name="+", db_index=False
    )
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.DB_CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(WebhookEvent, on_delete=models.DB_CASCADE, related_name="deliveries")
    event_type = models.CharField(max_length=64)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField()
    claimed_by = models.CharField(max_length=64, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["partner", "endpoint", "-id"], name="webhook_delivery_log"),
            # The worker's queue: what is due, across partners, soonest first.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "retrying"]),
                name="webhook_delivery_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One POST of a delivery: when, the answer's status code (None when there was no
    answer: refused address, connection error, timeout), how long it took, and the first
    characters of the answer or the error. Appended, never changed."""

    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.DO_NOTHING, related_name="+", db_index=False
    )
    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.DB_CASCADE, related_name="attempt_log"
    )
    at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)
    response = models.CharField(max_length=1000, blank=True)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error}"
