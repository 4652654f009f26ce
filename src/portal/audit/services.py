"""Recording audit events. The only code that writes AuditEvent rows.

Each writer hands what it recorded to the subscribers of :mod:`portal.core.events`
(the webhooks' outbox) inside the same transaction, one call being one operation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction

from portal.audit.models import AuditEvent
from portal.core import clock, events
from portal.core.context import current
from portal.core.principal import Principal


@dataclass(slots=True)
class Change:
    """One object's change, for recording several in one statement."""

    object_type: str
    object_id: Any
    data: dict[str, Any] = field(default_factory=dict)
    sub_account_id: int | None = None
    other_sub_account_id: int | None = None
    line_id: int | None = None


def _event(
    *, principal: Principal, partner_id: int | None, action: str, change: Change, at: dt.datetime
) -> AuditEvent:
    ctx = current()
    return AuditEvent(
        partner_id=partner_id,
        at=at,
        actor_type=principal.kind,
        actor_id=principal.id,
        actor_label=principal.label[:200],
        action=action,
        object_type=change.object_type,
        object_id=str(change.object_id),
        sub_account_id=change.sub_account_id,
        other_sub_account_id=change.other_sub_account_id,
        line_id=change.line_id,
        data=change.data,
        request_id=ctx.request_id,
        ip=ctx.ip,
    )


def audit_record(
    *,
    principal: Principal,
    partner_id: int | None,
    action: str,
    object_type: str,
    object_id: Any,
    data: dict[str, Any] | None = None,
    sub_account_id: int | None = None,
    other_sub_account_id: int | None = None,
    line_id: int | None = None,
    at: dt.datetime | None = None,
) -> AuditEvent:
    """Record one event. Must run inside the transaction of the change it records."""
    _require_transaction()
    change = Change(
        object_type, object_id, data or {}, sub_account_id, other_sub_account_id, line_id
    )
    event = _event(
        principal=principal,
        partner_id=partner_id,
        action=action,
        change=change,
        at=at or clock.now(),
    )
    event.save(force_insert=True)
    if events.wanted(partner_id, action):
        events.publish(
            events.Recorded(
                action=action,
                partner_id=partner_id,
                at=event.at,
                principal=principal,
                changes=(change,),
            )
        )
    return event


def audit_record_many(
    *,
    principal: Principal,
    partner_id: int | None,
    action: str,
    changes: Iterable[Change],
    at: dt.datetime | None = None,
) -> int:
    """Record one event per changed object in one multi-row INSERT per batch."""
    _require_transaction()
    when = at or clock.now()
    changes = list(changes)
    rows = [
        _event(principal=principal, partner_id=partner_id, action=action, change=c, at=when)
        for c in changes
    ]
    AuditEvent.objects.bulk_create(rows, batch_size=2000)
    _publish_many(
        principal=principal, partner_id=partner_id, action=action, at=when, changes=changes
    )
    return len(rows)


def _publish_many(
    *,
    principal: Principal,
    partner_id: int | None,
    action: str,
    at: dt.datetime,
    changes: list[Change],
) -> None:
    if changes and events.wanted(partner_id, action):
        events.publish(
            events.Recorded(
                action=action, partner_id=partner_id, at=at, principal=principal, changes=changes
            )
        )


# What AuditEvent.data's field stores: json.dumps with its encoder.
_encode = DjangoJSONEncoder().encode
# The columns audit_record_bulk writes, in the order of its rows.
_COLUMNS = (
    "partner_id",
    "at",
    "actor_type",
    "actor_id",
    "actor_label",
    "action",
    "object_type",
    "object_id",
    "sub_account_id",
    "other_sub_account_id",
    "line_id",
    "data",
    "request_id",
    "ip",
)


def audit_record_bulk(
    *,
    principal: Principal,
    partner_id: int | None,
    action: str,
    changes: Iterable[Change],
    at: dt.datetime | None = None,
) -> int:
    """Record one event per changed object, set-based, for batches of thousands.

    The same rows as :func:`audit_record_many` (same columns, ``data`` serialised with
    the field's encoder), but on PostgreSQL streamed by one ``COPY`` from plain tuples:
    building a model object per event cost more than the change being recorded (a
    merge batch of 1,000 lines spent ~40% of its time there). Elsewhere (SQLite) it is
    :func:`audit_record_many`. Returns the number of events.
    """
    if connection.vendor != "postgresql":
        return audit_record_many(
            principal=principal, partner_id=partner_id, action=action, changes=changes, at=at
        )
    _require_transaction()
    when = at or clock.now()
    # Kept for the subscribers only when one wants them: otherwise streamed, as ever.
    kept: list[Change] | None = [] if events.wanted(partner_id, action) else None
    ctx = current()
    label = principal.label[:200]
    qn = connection.ops.quote_name
    table = qn(AuditEvent._meta.db_table)
    columns = ", ".join(qn(c) for c in _COLUMNS)
    count = 0
    with (
        connection.cursor() as cursor,
        cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
    ):
        for c in changes:
            if kept is not None:
                kept.append(c)
            copy.write_row(
                (
                    partner_id,
                    when,
                    principal.kind,
                    principal.id,
                    label,
                    action,
                    c.object_type,
                    str(c.object_id),
                    c.sub_account_id,
                    c.other_sub_account_id,
                    c.line_id,
                    _encode(c.data),
                    ctx.request_id,
                    ctx.ip,
                )
            )
            count += 1
    if kept:
        _publish_many(
            principal=principal, partner_id=partner_id, action=action, at=when, changes=kept
        )
    return count


def _require_transaction() -> None:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("Audit events are written inside the transaction of their change.")
