"""Reacting to recorded changes: subscribers to the audit log, called in the change's transaction.

Every state change records its audit events through ``portal.audit.services`` (the only
writers), inside the transaction that makes the change. That is the one place where
every change of every app passes, so an app that must react to changes (the webhooks'
outbox) subscribes here instead of being called by each service, and imports keep
pointing down: the audit writers call :func:`publish`, which calls the subscribers with
what was just written, before the transaction commits. What a subscriber writes commits
or rolls back with the change itself.

A subscriber first answers :meth:`Subscriber.wants` (cheap: an action code and a
partner), so a write nobody listens to costs nothing: a bulk writer streaming a hundred
thousand events (``audit_record_bulk``) keeps them in memory only when someone wants
them. One call of an audit writer is one :class:`Recorded`: the events of one operation
(a bulk move's lines, one merge batch), which a subscriber may treat as a whole.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from portal.core.principal import Principal


class RecordedChange(Protocol):
    """One object's change as the audit log stores it (``audit.services.Change`` or an
    ``AuditEvent``)."""

    object_type: str
    object_id: Any
    data: dict[str, Any]
    sub_account_id: int | None
    other_sub_account_id: int | None
    line_id: int | None


@dataclass(frozen=True, slots=True)
class Recorded:
    """What one call of an audit writer recorded: one action, one partner, one instant."""

    action: str
    partner_id: int | None
    at: dt.datetime
    principal: Principal
    changes: Sequence[RecordedChange]


class Subscriber(Protocol):
    def wants(self, partner_id: int | None, action: str) -> bool:
        """Whether :meth:`receive` should see this action of this partner (cheap)."""
        ...

    def receive(self, recorded: Recorded) -> None:
        """React inside the change's transaction; an exception rolls the change back."""
        ...


_subscribers: list[Subscriber] = []


def subscribe(subscriber: Subscriber) -> None:
    """Add ``subscriber`` (an app's ``AppConfig.ready``); once per object."""
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)


def unsubscribe(subscriber: Subscriber) -> None:
    if subscriber in _subscribers:
        _subscribers.remove(subscriber)


def wanted(partner_id: int | None, action: str) -> bool:
    """Whether any subscriber wants this action of this partner."""
    return any(s.wants(partner_id, action) for s in _subscribers)


def publish(recorded: Recorded) -> None:
    """Hand ``recorded`` to every subscriber that wants it (inside the transaction)."""
    for subscriber in list(_subscribers):
        if subscriber.wants(recorded.partner_id, recorded.action):
            subscriber.receive(recorded)
