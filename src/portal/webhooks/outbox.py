"""The outbox: webhook events written in the transaction of the change they report.

:data:`OUTBOX` subscribes to the audit log (``portal.core.events``, see
``WebhooksConfig.ready``): every audit writer hands it what it recorded, inside the
change's transaction, and it writes one :class:`WebhookEvent` per event and one
:class:`WebhookDelivery` per enabled endpoint subscribed to its type. They commit with
the change or not at all, so a rolled-back change sends nothing and a committed one is
never lost, even when the process dies right after the commit: the worker finds the
deliveries in the table (``portal.webhooks.dispatcher``).

Only partners with an enabled endpoint subscribed to a type the action produces get
rows. The endpoints are read once per partner and transaction (:func:`_targets`), so a
merge batch or a bulk move of 100,000 lines costs one small query more, and nothing
more, for a partner without webhooks.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Sequence
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

from portal.core import clock
from portal.core.events import Recorded
from portal.webhooks import catalogue
from portal.webhooks.catalogue import CHUNK, Event
from portal.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent

# (endpoint id, the types it lists) of one partner's enabled endpoints.
Targets = tuple[tuple[int, tuple[str, ...]], ...]

_CACHE_ATTRIBUTE = "_portal_webhook_targets"


class _TargetCache:
    """One transaction's view of the partners' enabled endpoints.

    It lives on the connection and holds while its ``expire`` callback is still waiting
    in the connection's commit hooks: the commit runs them, a rollback (of the
    transaction, or of the savepoint the cache was made in) drops them, and either way
    the next transaction reads the endpoints again.
    """

    def __init__(self) -> None:
        self.partners: dict[int, Targets] = {}
        self.expire = self._expire  # one bound method, found again by identity

    def _expire(self) -> None:
        self.partners.clear()


def _cache() -> _TargetCache | None:
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        return None
    cache = getattr(connection, _CACHE_ATTRIBUTE, None)
    if cache is None or not any(hook[1] is cache.expire for hook in connection.run_on_commit):
        cache = _TargetCache()
        setattr(connection, _CACHE_ATTRIBUTE, cache)
        transaction.on_commit(cache.expire)
    return cache


def forget_targets() -> None:
    """Drop this transaction's view of the endpoints (an endpoint was just changed)."""
    setattr(transaction.get_connection(), _CACHE_ATTRIBUTE, None)


def _targets(partner_id: int) -> Targets:
    cache = _cache()
    if cache is not None and partner_id in cache.partners:
        return cache.partners[partner_id]
    found: Targets = tuple(
        (pk, tuple(events or ()))
        for pk, events in WebhookEndpoint.objects.filter(partner_id=partner_id, enabled=True)
        .order_by("pk")
        .values_list("pk", "events")
    )
    if cache is not None:
        cache.partners[partner_id] = found
    return found


def _subscribed(targets: Targets, type_: str) -> list[int]:
    return [pk for pk, events in targets if catalogue.subscribes(events, type_)]


class Outbox:
    """The audit log's subscriber that writes webhook events (see the module)."""

    def wants(self, partner_id: int | None, action: str) -> bool:
        types = catalogue.TYPES_OF_ACTION.get(action)
        if partner_id is None or not types:
            return False
        targets = _targets(partner_id)
        return any(_subscribed(targets, t) for t in types)

    def receive(self, recorded: Recorded) -> None:
        partner_id = recorded.partner_id
        if partner_id is None:
            return
        targets = _targets(partner_id)
        events = catalogue.events_of(recorded)
        if recorded.action == "invoice.issue" and _subscribed(targets, "statement.issued"):
            for change in recorded.changes:
                events.extend(_statements_issued(partner_id, change.object_id))
        events_write(partner_id=partner_id, at=recorded.at, events=events, targets=targets)


OUTBOX = Outbox()


def _statements_issued(partner_id: int, invoice_id: Any) -> list[Event]:
    """``statement.issued`` for the statements issued with an invoice: one event per
    chunk of at most 1,000 statements (an invoice issues one per sub-account with a
    resale price, thousands for a large reseller). Each statement is its client's
    figures at the resale price: never the provider's price, discounts or credits."""
    from portal.billing.models import Statement
    from portal.billing.money import quantize

    rows = list(
        Statement.objects.filter(partner_id=partner_id, invoice_id=invoice_id)
        .order_by("sub_account_id")
        .values(
            "pk",
            "number",
            "sub_account_id",
            "name",
            "period_start",
            "period_end",
            "currency",
            "line_quantity",
            "recurring",
            "prorations",
            "total",
        )
    )
    if not rows:
        return []
    op, parts = catalogue.operation_id(), (len(rows) + CHUNK - 1) // CHUNK
    first = rows[0]
    return [
        Event(
            "statement.issued",
            {
                "operation_id": op,
                "part": part + 1,
                "parts": parts,
                "statement_count": len(rows),
                "period_start": first["period_start"],
                "period_end": first["period_end"],
                "currency": first["currency"],
                "statements": [
                    {
                        "id": row["pk"],
                        "number": row["number"],
                        "sub_account_id": row["sub_account_id"],
                        "name": row["name"],
                        "line_quantity": row["line_quantity"],
                        **{
                            key: f"{quantize(row[key], row['currency']):f}"
                            for key in ("recurring", "prorations", "total")
                        },
                    }
                    for row in rows[part * CHUNK : (part + 1) * CHUNK]
                ],
            },
        )
        for part in range(parts)
    ]


def new_msg_id() -> str:
    """A ``webhook-id``: unique, the same on every attempt of the message."""
    return "msg_" + secrets.token_hex(16)


def event_body(type_: str, at: dt.datetime, data: dict[str, Any]) -> str:
    """The JSON a delivery POSTs: ``{type, timestamp, data}``, times in UTC."""
    return json.dumps(
        {"type": type_, "timestamp": at.astimezone(dt.UTC), "data": data},
        cls=DjangoJSONEncoder,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def events_write(
    *,
    partner_id: int,
    at: dt.datetime,
    events: Sequence[Event],
    targets: Targets | None = None,
    endpoint_ids: Sequence[int] | None = None,
) -> list[WebhookDelivery]:
    """Write ``events`` and their deliveries, in the caller's transaction.

    Each event goes to the enabled endpoints of ``targets`` (by default the partner's)
    subscribed to its type, or to exactly ``endpoint_ids`` (a test event). An event no
    endpoint receives is not written. Its ``timestamp`` is ``at``, when the change
    happened (an invoice caught up late says when it was due); it is due now. Returns
    the deliveries.
    """
    now = clock.now()
    if targets is None and endpoint_ids is None:
        targets = _targets(partner_id)
    rows: list[tuple[WebhookEvent, list[int]]] = []
    for event in events:
        receivers = (
            list(endpoint_ids) if endpoint_ids is not None else _subscribed(targets, event.type)
        )
        if not receivers:
            continue
        row = WebhookEvent(
            partner_id=partner_id,
            msg_id=new_msg_id(),
            type=event.type,
            created_at=now,
            body=event_body(event.type, at, event.data),
        )
        rows.append((row, receivers))
    if not rows:
        return []
    WebhookEvent.objects.bulk_create([row for row, _ in rows])
    deliveries = [
        WebhookDelivery(
            partner_id=partner_id,
            endpoint_id=endpoint_id,
            event=row,
            event_type=row.type,
            status=DeliveryStatus.PENDING,
            next_attempt_at=now,
            created_at=now,
        )
        for row, receivers in rows
        for endpoint_id in receivers
    ]
    return WebhookDelivery.objects.bulk_create(deliveries, batch_size=1000)
