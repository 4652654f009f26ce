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
from collections.abc import Mapping, Sequence

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
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
# A claim older than this is void whatever its worker's heartbeat says: a safety net (a
# claim waits for a slot for at most a few minutes, and an attempt lasts two timeouts).
CLAIM_LEASE = dt.timedelta(minutes=15)
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

    ``in_flight`` (endpoint id → deliveries this worker holds already) and
    ``per_endpoint`` keep any one endpoint to its share, so a slow endpoint cannot take
    every slot: its due deliveries wait while others go. A delivery is due when it is
    pending or retrying, its time has come and no live worker holds it (a claim whose
    worker stopped beating, or older than :data:`CLAIM_LEASE`, is void; this worker's
    own claims are its attempts under way). PostgreSQL locks the rows ``FOR NO KEY
    UPDATE SKIP LOCKED``, so workers claiming at once take different ones without
    waiting for each other; SQLite's IMMEDIATE transaction serialises the claims.
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
    of failures disable the endpoint and email its partner's admins. The endpoints come
    first (the lock order), and only those whose health changes are locked: recording
    a batch of successes to healthy endpoints locks none.
    """
    if not outcomes:
        return 0
    now = clock.now()
    ordered = sorted(outcomes, key=lambda o: (o.at, o.delivery_id))
    with transaction.atomic():
        _endpoints_health(ordered, now)
        held: dict[int, int] = {}
        partner_of: dict[int, int] = {}
        for pk, count, partner_id in (
            WebhookDelivery.objects.select_for_update(no_key=True)
            .filter(pk__in=[o.delivery_id for o in ordered], claimed_by=worker_id)
            .order_by("pk")
            .values_list("pk", "attempts", "partner_id")
        ):
            held[pk], partner_of[pk] = count, partner_id
        rows: list[tuple[object, ...]] = []
        attempts: list[WebhookAttempt] = []
        for outcome in ordered:
            if outcome.delivery_id not in held:
                continue
            held[outcome.delivery_id] += 1
            count = held[outcome.delivery_id]
            if outcome.succeeded:
                status, next_at = DeliveryStatus.SUCCEEDED, None
            else:
                status, next_at = next_after_failure(count, now)
            rows.append(
                (
                    outcome.at,
                    outcome.status_code,
                    outcome.error[:300],
                    str(status),
                    next_at,
                    outcome.delivery_id,
                )
            )
            attempts.append(
                WebhookAttempt(
                    partner_id=partner_of[outcome.delivery_id],
                    delivery_id=outcome.delivery_id,
                    at=outcome.at,
                    status_code=outcome.status_code,
                    duration_ms=outcome.duration_ms,
                    error=outcome.error[:300],
                    response=outcome.response[:1000].replace("\x00", ""),
                )
            )
        _apply(rows)
        WebhookAttempt.objects.bulk_create(attempts, batch_size=1000)
    return len(attempts)


def _apply(rows: Sequence[tuple[object, ...]]) -> None:
    """One attempt per row counted on its delivery: (at, status code, error, status, next
    attempt, id). One prepared UPDATE run for every row (psycopg pipelines them): the
    ORM's ``bulk_update`` spent more time building its CASE expressions than the
    database spent running them."""
    if not rows:
        return
    qn = connection.ops.quote_name
    adapt = connection.ops.adapt_datetimefield_value
    table = qn(WebhookDelivery._meta.db_table)
    sql = (
        f"UPDATE {table} SET attempts = attempts + 1, last_attempt_at = %s, "  # noqa: S608
        "last_status_code = %s, last_error = %s, status = %s, next_attempt_at = %s, "
        "claimed_by = '', claimed_at = NULL WHERE id = %s"
    )
    with connection.cursor() as cursor:
        cursor.executemany(
            sql,
            [
                (adapt(at), code, error, status, adapt(nxt), pk)
                for at, code, error, status, nxt, pk in rows
            ],
        )


def _endpoints_health(ordered: Sequence[Outcome], now: dt.datetime) -> None:
    """Keep each endpoint's ``failing_since`` (its last outcome of the batch decides) and
    disable the ones failing for five days."""
    last: dict[int, Outcome] = {}
    first_failure: dict[int, dt.datetime] = {}
    for outcome in ordered:
        last[outcome.endpoint_id] = outcome
        if not outcome.succeeded:
            first_failure.setdefault(outcome.endpoint_id, outcome.at)
    failing = sorted(pk for pk, o in last.items() if not o.succeeded)
    changing = list(
        WebhookEndpoint.objects.select_for_update(no_key=True)
        .filter(Q(pk__in=failing) | Q(pk__in=list(last), failing_since__isnull=False))
        .order_by("pk")
    )
    for endpoint in changing:
        if last[endpoint.pk].succeeded:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
            continue
        since = endpoint.failing_since
        if since is None:
            since = first_failure[endpoint.pk]
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=since)
        if endpoint.enabled and now - since >= DISABLE_AFTER:
            _disable(endpoint, since, now)


@retry_on_lost_race
def deliveries_release(*, worker_id: str, delivery_ids: Sequence[int] | None = None) -> int:
    """Hand back claims of ``worker_id`` (all, or ``delivery_ids``) that it did not
    start: due again at once, for any worker."""
    held = WebhookDelivery.objects.filter(claimed_by=worker_id, status__in=DUE)
    if delivery_ids is not None:
        held = held.filter(pk__in=list(delivery_ids))
    with transaction.atomic():
        ids = list(held.select_for_update(no_key=True).order_by("pk").values_list("pk", flat=True))
        if not ids:
            return 0
        return WebhookDelivery.objects.filter(pk__in=ids).update(claimed_by="", claimed_at=None)


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
