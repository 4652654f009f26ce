"""Periodic housekeeping of accounts data."""

from __future__ import annotations

import datetime as dt

from portal.accounts.idempotency import prune_idempotency_records
from portal.jobs import periodic


@periodic.register("prune_idempotency_records", every=dt.timedelta(hours=1))
def prune_idempotency_records_job() -> None:
    prune_idempotency_records()
