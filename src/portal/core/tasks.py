"""Periodic housekeeping of the core's request bookkeeping."""

from __future__ import annotations

import datetime as dt

from portal.core.ratelimit import prune_rate_limit_buckets
from portal.jobs import periodic


@periodic.register("prune_rate_limit_buckets", every=dt.timedelta(minutes=10))
def prune_rate_limit_buckets_job() -> None:
    prune_rate_limit_buckets()
