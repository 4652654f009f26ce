"""The event types (domain §8.3) and how each audited change becomes webhook events.

Pure: takes what the audit log recorded (``portal.core.events.Recorded``), returns the
events' types and ``data``; reads no database (statements, which the audit event only
counts, are read by the outbox). ``data`` is built from the audit event's own data, which
the partner's API keys already read at ``GET /audit-events``: only this partner's
objects, never another's.

Shapes:

- one object: ``{"<object>_id": id, …}`` and the audit event's ``before``/``after`` and
  details (``sub_account.created`` has ``after``, ``sub_account.updated`` ``before`` and
  ``after``, …);
- lines changing hands (``line.moved``, ``line.disconnected``, and ``line_order.fulfilled``
  for the lines delivered): one event per operation, not per line. An operation is one
  call of an audit writer: a single move, a bulk move, one batch of a merge, a
  deletion's disposal of its lines. Its line ids go in chunks of at most
  :data:`CHUNK` per event, each event saying which part it is: ``{"operation_id",
  "part", "parts", "line_count", "line_ids", "sub_account_id" (where they went; None
  when disconnected), "from_sub_account_ids", "merge_request_id"?,
  "deletion_request_id"?}``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from portal.core.events import Recorded, RecordedChange

CHUNK = 1000

# Every type an endpoint may subscribe to, with its words for the Webhooks page.
EVENT_TYPES: dict[str, str] = {
    "sub_account.created": "Sub-account created",
    "sub_account.updated": "Sub-account changed",
    "line.assigned": "Line added to a sub-account",
    "line.moved": "Lines moved (one event per move, bulk move or merge batch)",
    "line.disconnected": "Lines disconnected",
    "line_order.fulfilled": "Line request fulfilled",
    "merge_request.created": "Merge requested",
    "merge_request.approved": "Merge approved",
    "merge_request.rejected": "Merge rejected",
    "merge_request.completed": "Merge completed",
    "deletion_request.created": "Deletion requested",
    "deletion_request.approved": "Deletion approved",
    "deletion_request.rejected": "Deletion rejected",
    "deletion_request.restored": "Sub-account restored",
    "deletion_request.purged": "Sub-account purged",
    "invoice.issued": "Invoice issued",
    "invoice.finalized": "Invoice finalised",
    "statement.issued": "Client statements issued",
    "alert.triggered": "Alert triggered",
    "alert.resolved": "Alert resolved",
}
PING = "ping"  # sent by Send test event to one endpoint, whatever it subscribes to
ALL = "*"


@dataclass(frozen=True, slots=True)
class Event:
    """One webhook event to write: its type and its ``data``."""

    type: str
    data: dict[str, Any]


def operation_id() -> str:
    return "op_" + secrets.token_hex(12)


def _id(value: Any) -> Any:
    """An object id as the API gives it: an integer when it is one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _one(type_: str, key: str) -> Callable[[Recorded], Iterator[Event]]:
    """One event per changed object: its id under ``key`` and the audit event's data."""

    def build(recorded: Recorded) -> Iterator[Event]:
        for change in recorded.changes:
            data = {key: _id(change.object_id), **(change.data or {})}
            if change.sub_account_id is not None and key != "sub_account_id":
                data.setdefault("sub_account_id", change.sub_account_id)
            yield Event(type_, data)

    return build


def _lines(type_: str) -> Callable[[Recorded], Iterator[Event]]:
    """The lines of one operation, chunked: see the module's docstring."""

    def build(recorded: Recorded) -> Iterator[Event]:
        changes = sorted(recorded.changes, key=lambda c: _id(c.object_id))
        yield from _line_chunks(type_, changes)

    return build


def _line_chunks(type_: str, changes: Sequence[RecordedChange]) -> Iterator[Event]:
    if not changes:
        return
    first = changes[0].data or {}
    after = first.get("after") or {}
    common: dict[str, Any] = {"sub_account_id": after.get("sub_account_id")}
    for key in ("merge_request_id", "deletion_request_id"):
        if first.get(key) is not None:
            common[key] = first[key]
    op, parts = operation_id(), (len(changes) + CHUNK - 1) // CHUNK
    for part in range(parts):
        chunk = changes[part * CHUNK : (part + 1) * CHUNK]
        yield Event(
            type_,
            {
                "operation_id": op,
                "part": part + 1,
                "parts": parts,
                "line_count": len(changes),
                "line_ids": [_id(c.object_id) for c in chunk],
                "from_sub_account_ids": sorted(
                    {c.sub_account_id for c in chunk if c.sub_account_id is not None}
                ),
                **common,
            },
        )


def _order_fulfilled(recorded: Recorded) -> Iterator[Event]:
    """One event per fulfilment, its delivered lines' ids chunked like a move's."""
    for change in recorded.changes:
        data = dict(change.data or {})
        line_ids = list(data.pop("line_ids", []) or [])
        op, parts = operation_id(), max(1, (len(line_ids) + CHUNK - 1) // CHUNK)
        for part in range(parts):
            yield Event(
                "line_order.fulfilled",
                {
                    "line_order_id": _id(change.object_id),
                    **data,
                    "operation_id": op,
                    "part": part + 1,
                    "parts": parts,
                    "line_count": len(line_ids),
                    "line_ids": line_ids[part * CHUNK : (part + 1) * CHUNK],
                },
            )


# Audit action → (the event type it becomes, how its events are built). Audit codes
# not listed (line.update, api_key.create, …) send nothing.
MAPPED: dict[str, tuple[str, Callable[[Recorded], Iterator[Event]]]] = {
    "sub_account.create": ("sub_account.created", _one("sub_account.created", "sub_account_id")),
    "sub_account.update": ("sub_account.updated", _one("sub_account.updated", "sub_account_id")),
    "line.assign": ("line.assigned", _one("line.assigned", "line_id")),
    "line.move": ("line.moved", _lines("line.moved")),
    "line.merge": ("line.moved", _lines("line.moved")),
    "line.disconnect": ("line.disconnected", _lines("line.disconnected")),
    "line_order.fulfil": ("line_order.fulfilled", _order_fulfilled),
    "invoice.issue": ("invoice.issued", _one("invoice.issued", "invoice_id")),
    "invoice.finalize": ("invoice.finalized", _one("invoice.finalized", "invoice_id")),
    "alert.trigger": ("alert.triggered", _one("alert.triggered", "alert_id")),
    "alert.resolve": ("alert.resolved", _one("alert.resolved", "alert_id")),
}
for _verb, _past in (
    ("create", "created"),
    ("approve", "approved"),
    ("reject", "rejected"),
    ("complete", "completed"),
):
    MAPPED[f"merge_request.{_verb}"] = (
        f"merge_request.{_past}",
        _one(f"merge_request.{_past}", "merge_request_id"),
    )
for _verb, _past in (
    ("create", "created"),
    ("approve", "approved"),
    ("reject", "rejected"),
    ("restore", "restored"),
    ("purge", "purged"),
):
    MAPPED[f"deletion_request.{_verb}"] = (
        f"deletion_request.{_past}",
        _one(f"deletion_request.{_past}", "deletion_request_id"),
    )

# The types an audit action may produce (an issued invoice also issues statements).
TYPES_OF_ACTION: dict[str, frozenset[str]] = {
    action: frozenset({type_} | ({"statement.issued"} if action == "invoice.issue" else set()))
    for action, (type_, _build) in MAPPED.items()
}


def events_of(recorded: Recorded) -> list[Event]:
    """The webhook events of what the audit log recorded (statements aside)."""
    mapped = MAPPED.get(recorded.action)
    return list(mapped[1](recorded)) if mapped else []


def subscribes(events: Sequence[str], type_: str) -> bool:
    """Whether an endpoint listing ``events`` receives ``type_``."""
    return ALL in events or type_ in events
