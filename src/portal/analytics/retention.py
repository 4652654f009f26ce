"""Retention of raw message events: a partner's events of days older than
``EVENT_RETENTION_DAYS`` are deleted by a periodic job, in batches that resume; the
horizon is moved first so ingestion refuses events for those days from then on.
Conversations and rollups are kept (they stand in for the pruned events).

Internal (``core.tenancy``): a job over every partner, as the system.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo

from django.conf import settings
from django.db import transaction

from portal.analytics.models import MessageEvent
from portal.analytics.rollups import locked_state
from portal.core import clock
from portal.partners.models import Partner

logger = logging.getLogger("portal.analytics")


PRUNE_BATCH = 10_000


def message_events_prune(*, partner_id: int, batch_size: int = PRUNE_BATCH) -> int:
    """Delete the partner's raw events of days older than ``EVENT_RETENTION_DAYS``.

    The horizon (``events_pruned_before``) is moved first, in its own transaction,
    so from then on ingestion refuses events for those days; then the events go in
    batches of ``batch_size`` (one ``DELETE … WHERE id IN (…)`` each, its own
    transaction), so a killed worker leaves a consistent state and the next run
    finishes. Conversations and rollups are kept. Returns the number deleted.
    """
    partner = Partner.objects.get(pk=partner_id)
    zone = zoneinfo.ZoneInfo(partner.timezone)
    cutoff = clock.now().astimezone(zone).date() - dt.timedelta(days=settings.EVENT_RETENTION_DAYS)
    with transaction.atomic():
        state = locked_state(partner_id)
        if state.events_pruned_before is None or state.events_pruned_before < cutoff:
            state.events_pruned_before = cutoff
            state.save(update_fields=["events_pruned_before"])
        cutoff = state.events_pruned_before
    deleted = 0
    old = MessageEvent.objects.filter(partner_id=partner_id, local_day__lt=cutoff)
    while True:
        with transaction.atomic():
            ids = list(old.order_by().values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            deleted += MessageEvent.objects.filter(pk__in=ids).delete()[0]
    if deleted:
        logger.info(
            "analytics: pruned %d raw event(s) of partner %s before %s", deleted, partner_id, cutoff
        )
    return deleted


def message_events_prune_all(*, batch_size: int = PRUNE_BATCH) -> int:
    """:func:`message_events_prune` for every partner that has events."""
    partner_ids = Partner.objects.values_list("pk", flat=True)
    return sum(message_events_prune(partner_id=pk, batch_size=batch_size) for pk in partner_ids)
