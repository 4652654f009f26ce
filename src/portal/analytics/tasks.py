"""Periodic analytics jobs (run by ``portal worker``).

Activity is brought up to date in the ingestion request's own transaction (see
``ingestion.message_events_ingest``); what is left for the worker is what depends
on the clock: closing partner-local days that have ended (storing their capacity,
backfilling any day missing) and pruning raw events past their retention. Both
are safe to rerun and resume where a killed run stopped.
"""

from __future__ import annotations

import datetime as dt

from portal.analytics.retention import message_events_prune_all
from portal.analytics.rollups import analytics_days_close_all
from portal.jobs import periodic


@periodic.register("analytics_days_close", every=dt.timedelta(minutes=10))
def analytics_days_close_job() -> None:
    analytics_days_close_all()


@periodic.register("message_events_prune", every=dt.timedelta(hours=1))
def message_events_prune_job() -> None:
    message_events_prune_all()
