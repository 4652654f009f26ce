"""Periodic housekeeping of accounts data."""

from __future__ import annotations

import datetime as dt

from portal.accounts.idempotency import prune_idempotency_records
from portal.accounts.services import security_events_prune
from portal.accounts.sessions import SessionStore
from portal.jobs import periodic


@periodic.register("prune_idempotency_records", every=dt.timedelta(hours=1))
def prune_idempotency_records_job() -> None:
    prune_idempotency_records()


@periodic.register("clear_expired_sessions", every=dt.timedelta(hours=1))
def clear_expired_sessions_job() -> None:
    """Delete sessions past their expiry date (what `portal clearsessions` does)."""
    SessionStore.clear_expired()


@periodic.register("prune_security_events", every=dt.timedelta(days=1))
def prune_security_events_job() -> None:
    security_events_prune()
