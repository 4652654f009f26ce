"""The worker's webhook work: the delivery loop and the delivery log's retention."""

from __future__ import annotations

import datetime as dt
import threading

from portal.jobs import loops, periodic
from portal.webhooks.deliveries import webhooks_prune
from portal.webhooks.dispatcher import Dispatcher


@loops.register("webhook_deliveries")
def webhook_deliveries(worker_id: str, stop: threading.Event, once: bool) -> None:
    """Send due deliveries beside the task queue (``portal.webhooks.dispatcher``)."""
    dispatcher = Dispatcher(worker_id=worker_id)
    try:
        if once:
            dispatcher.drain()
        else:
            dispatcher.run(stop)
    finally:
        dispatcher.sender.close()


@periodic.register("prune_webhook_deliveries", every=dt.timedelta(hours=1))
def prune_webhook_deliveries_job() -> None:
    """Retention: events, deliveries and attempts older than 30 days go."""
    webhooks_prune()
