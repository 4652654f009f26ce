"""The worker's writes: claiming due deliveries, recording attempts, disabling, pruning.

Delivery bookkeeping (claims, attempts, statuses) is the worker's, like its task results:
it records no audit event. Disabling an endpoint that has failed for five days is a
change to the partner's settings, and records one.

Locks: an endpoint, then its deliveries (``deliveries_record`` and deleting an endpoint,
whose deliveries go with it, take them in that order); a claim locks deliveries only,
skipping those another worker holds.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q

from portal.audit.services import audit_record
from portal.core import clock
from portal.core.principal import Principal
from portal.core.retry import retry_on_lost_race
from portal.jobs.models import WorkerHeartbeat
from portal.jobs.services import stale_after
from portal.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from portal.webhooks.outbox import forget_targets
from portal.webhooks.sender import Outcome, Outgoing

logger = logging.getLogger("portal.webhooks")

WORKER = Principal.system("worker:webhooks")
# An endpoint failing this long is disabled (domain §8.3).
DISABLE_AFTER = dt.timedelta(days=5)
# A claim older than this is void whatever its worker's heartbeat says: no attempt
# lasts more than two timeouts, so its thread is gone.
CLAIM_LEASE = dt.timedelta(minutes=5)
DUE = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)
PRUNE_BATCH = 2000


def retry_delays() -> list[dt.timedelta]:
    return [dt.timedelta(seconds=s) for s in settings.WEBHOOK_RETRY_DELAYS]


def next_after_failure(attempts: int, at: dt.datetime) -> tuple[str, dt.datetime | None]:
    """Status and next attempt after the ``attempts``-th attempt failed."""
    delays = retry_delays()
    if attempts <= len(delays):
        return DeliveryStatus.RETRYING, at + delays[attempts - 1]
    return DeliveryStatus.FAILED, None


def _secrets(secret: str, previous: str, until: dt.datetime | None, at: dt.datetime) -> list[str]:
    return [secret, previous] if previous and until is not None and until > at else [secret]


def claim_is_live(delivery: WebhookDelivery, now: dt.datetime) -> bool:
    """Whether a worker is sending ``delivery`` right now (its claim is not void)."""
    if not delivery.claimed_by or delivery.claimed_at is None:
        return False
    if delivery.claimed_at < now - CLAIM_LEASE:
        return False
    return WorkerHeartbeat.objects.filter(
        worker_id=delivery.claimed_by, last_seen__gte=now - stale_after()
    ).exists()


@retry_on_lost_race
def deliveries_claim(
    *,
    worker_id: str,
    limit: int,
    in_flight: Mapping[int, int] | None = None,
    per_endpoint: int | None = None,
) -> list[Outgoing]:
    """Claim up to ``limit`` due deliveries of enabled endpoints for ``worker_id``.

    ``in_flight`` (endpoint id → deliveries this worker is sending now) and
    ``per_endpoint`` keep any one endpoint to its share, so a slow endpoint cannot take
    every slot: its due deliveries wait while others go. A delivery is due when it is
    pending or retrying, its time has come and no live worker holds it (a claim whose
    worker stopped beating, or older than :data:`CLAIM_LEASE`, is void; this worker's
    own claims are its attempts under way). PostgreSQL
    locks the rows ``FOR UPDATE SKIP LOCKED``, so workers claiming at once take
    different ones; SQLite's IMMEDIATE transaction serialises the claims.
    """
    if limit <= 0:
        return []
    per_endpoint = per_endpoint or settings.WEBHOOK_ENDPOINT_CONCURRENCY
    in_flight = dict(in_flight or {})
    full = [pk for pk, count in in_flight.items() if count >= per_endpoint]
    now = clock.now()
    alive = WorkerHeartbeat.objects.filter(last_seen__gte=now - stale_after()).values("worker_id")
    due = WebhookDelivery.objects.filter(status__in=DUE, next_attempt_at__lte=now)
    # A look without a transaction first: an idle worker polling every half second must
    # not take SQLite's write lock (IMMEDIATE) for nothing.
    if not due.exists():
        return []
    with transaction.atomic():
        candidates = list(
            due.filter(endpoint__enabled=True)
            .filter(
                Q(claimed_by="")
                | (~Q(claimed_by=worker_id) & ~Q(claimed_by__in=alive))
                | Q(claimed_at__lt=now - CLAIM_LEASE)
            )
            .exclude(endpoint_id__in=full)
            .order_by("next_attempt_at", "pk")
            .select_for_update(skip_locked=True, no_key=True, of=("self",))
            .values_list(
                "pk",
                "endpoint_id",
                "endpoint__url",
                "endpoint__secret",
                "endpoint__previous_secret",
                "endpoint__previous_secret_until",
                "event__msg_id",
                "event__body",
            )[: limit * 4]
        )
        picked: list[Outgoing] = []
        for pk, endpoint_id, url, secret, previous, until, msg_id, body in candidates:
            if in_flight.get(endpoint_id, 0) >= per_endpoint:
                continue
            in_flight[endpoint_id] = in_flight.get(endpoint_id, 0) + 1
            picked.append(
                Outgoing(
                    delivery_id=pk,
                    endpoint_id=endpoint_id,
                    url=url,
                    secrets=_secrets(secret, previous, until, now),
                    msg_id=msg_id,
                    body=body,
                )
            )
            if len(picked) == limit:
                break
        if picked:
            WebhookDelivery.objects.filter(pk__in=[o.delivery_id for o in picked]).update(
                claimed_by=worker_id, claimed_at=now
            )
    return picked


@retry_on_lost_race
def attempts_record(*, worker_id: str, outcomes: Sequence[Outcome]) -> int:
    """Record what the attempts of ``worker_id`` got, in one transaction; returns how many.

    Each delivery counts the attempt and moves on: a 2xx → ``succeeded``; otherwise
    ``retrying`` after the next of ``WEBHOOK_RETRY_DELAYS`` or, after the last,
    ``failed``. A delivery no longer claimed by this worker (its claim went void and
    another worker took it, or its endpoint was deleted) is left to whoever holds it.
    An endpoint's success clears its ``failing_since``; a failure sets it, and five days
    of failures disable the endpoint and email its partner's admins.
    """
    if not outcomes:
        return 0
    now = clock.now()
    with transaction.atomic():
        endpoint_ids = sorted({o.endpoint_id for o in outcomes})
        endpoints = {
            e.pk: e
            for e in WebhookEndpoint.objects.select_for_update(no_key=True)
            .filter(pk__in=endpoint_ids)
            .order_by("pk")
        }
        deliveries = {
            d.pk: d
            for d in WebhookDelivery.objects.select_for_update(no_key=True)
            .filter(pk__in=[o.delivery_id for o in outcomes], claimed_by=worker_id)
            .order_by("pk")
        }
        attempts: list[WebhookAttempt] = []
        by_endpoint: dict[int, list[Outcome]] = defaultdict(list)
        for outcome in sorted(outcomes, key=lambda o: (o.at, o.delivery_id)):
            delivery = deliveries.get(outcome.delivery_id)
            if delivery is None:
                continue
            delivery.attempts += 1
            delivery.last_attempt_at = outcome.at
            delivery.last_status_code = outcome.status_code
            delivery.last_error = outcome.error[:300]
            delivery.claimed_by, delivery.claimed_at = "", None
            if outcome.succeeded:
                delivery.status, delivery.next_attempt_at = DeliveryStatus.SUCCEEDED, None
            else:
                delivery.status, delivery.next_attempt_at = next_after_failure(
                    delivery.attempts, now
                )
            attempts.append(
                WebhookAttempt(
                    partner_id=delivery.partner_id,
                    delivery_id=delivery.pk,
                    at=outcome.at,
                    status_code=outcome.status_code,
                    duration_ms=outcome.duration_ms,
                    error=outcome.error[:300],
                    response=outcome.response[:1000].replace("\x00", ""),
                )
            )
            by_endpoint[outcome.endpoint_id].append(outcome)
        WebhookDelivery.objects.bulk_update(
            list(deliveries.values()),
            [
                "attempts",
                "last_attempt_at",
                "last_status_code",
                "last_error",
                "claimed_by",
                "claimed_at",
                "status",
                "next_attempt_at",
            ],
            batch_size=500,
        )
        WebhookAttempt.objects.bulk_create(attempts, batch_size=1000)
        for endpoint_id, seen in by_endpoint.items():
            endpoint = endpoints.get(endpoint_id)
            if endpoint is not None:
                _endpoint_health(endpoint, seen, now)
    return len(attempts)


def _endpoint_health(
    endpoint: WebhookEndpoint, outcomes: Sequence[Outcome], now: dt.datetime
) -> None:
    """Keep ``failing_since`` (the last outcome decides) and disable after five days."""
    last = outcomes[-1]
    if last.succeeded:
        if endpoint.failing_since is not None:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
        return
    since = endpoint.failing_since
    if since is None:
        since = next((o.at for o in outcomes if not o.succeeded), last.at)
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=since)
    if endpoint.enabled and now - since >= DISABLE_AFTER:
        _disable(endpoint, since, now)


def _disable(endpoint: WebhookEndpoint, since: dt.datetime, now: dt.datetime) -> None:
    reason = "Failing for 5 days: disabled by the portal."
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        enabled=False, disabled_reason=reason, updated_at=now
    )
    forget_targets()
    audit_record(
        principal=WORKER,
        partner_id=endpoint.partner_id,
        action="webhook_endpoint.disable",
        object_type="webhook_endpoint",
        object_id=endpoint.pk,
        at=now,
        data={
            "url": endpoint.url,
            "failing_since": since,
            "before": {"enabled": True},
            "after": {"enabled": False},
        },
    )
    endpoint_id, partner_id, url = endpoint.pk, endpoint.partner_id, endpoint.url
    transaction.on_commit(lambda: _email_admins(partner_id, endpoint_id, url, since))


def _email_admins(partner_id: int, endpoint_id: int, url: str, since: dt.datetime) -> None:
    """Tell the partner's admins their endpoint was disabled; never fails the change."""
    from portal.accounts.models import Membership
    from portal.core.localtime import format_local
    from portal.core.roles import Role
    from portal.partners.models import Partner

    try:
        partner = Partner.objects.get(pk=partner_id)
        emails = sorted(
            Membership.objects.filter(
                partner_id=partner_id, role=Role.ADMIN, user__is_active=True
            ).values_list("user__email", flat=True)
        )
        if not emails:
            return
        body = (
            "Hello,\n\n"
            f"Every delivery to your webhook endpoint {url} has failed since "
            f"{format_local(since, partner.timezone)}, so the portal has disabled it: "
            "it receives no new events until you enable it again.\n\n"
            "Check that the endpoint answers with a 2xx status, then enable it in "
            "Settings → Webhooks (or PATCH /api/v1/webhook-endpoints/"
            f'{endpoint_id} with {{"enabled": true}}). Its delivery log shows each '
            "attempt's answer.\n\n— Partner Portal\n"
        )
        send_mail(f"Webhook endpoint disabled: {url}"[:200], body, None, emails)
    except Exception:
        logger.exception("Could not email the admins about webhook endpoint %s", endpoint_id)


def webhooks_prune(*, now: dt.datetime | None = None) -> int:
    """Delete events older than ``WEBHOOK_RETENTION_DAYS`` with their deliveries and
    attempts (the database cascades), in batches. Returns the events deleted."""
    cutoff = (now or clock.now()) - dt.timedelta(days=settings.WEBHOOK_RETENTION_DAYS)
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(
                WebhookEvent.objects.filter(created_at__lt=cutoff)
                .order_by("created_at")
                .values_list("pk", flat=True)[:PRUNE_BATCH]
            )
            if not ids:
                return deleted
            WebhookEvent.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
