"""The worker's webhook dispatcher: claims due deliveries and sends them, many at once.

It runs in a thread of every ``portal worker`` beside the task queue (registered as a
background loop in ``webhooks/tasks.py``), so a long task (a merge) never holds
deliveries back. One thread claims, records and hands attempts to a pool of
``WEBHOOK_CONCURRENCY`` sender threads; no endpoint gets more than
``WEBHOOK_ENDPOINT_CONCURRENCY`` of them, so a slow or dead endpoint (each attempt up
to its 10 s timeout) never delays the others' deliveries: the free slots keep going to
the endpoints that answer. The sender threads do no database work; outcomes are
recorded in batches as they finish.

Crash safety: a claim names this worker; if the process dies mid-attempt, its heartbeat
goes stale, the claim is void and another worker (or this one restarted) sends the
delivery again with the same ``webhook-id``: deliveries are at least once, and
receivers deduplicate on that id as the Standard Webhooks specification says.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from django.conf import settings
from django.db import DatabaseError, close_old_connections

from portal.webhooks.deliveries import attempts_record, deliveries_claim
from portal.webhooks.sender import Outcome, Outgoing, Sender

logger = logging.getLogger("portal.webhooks")

IDLE_SECONDS = 0.5  # between looks at the queue when nothing is due


class Dispatcher:
    """Claims and sends deliveries for one worker (see the module)."""

    def __init__(
        self,
        *,
        worker_id: str,
        concurrency: int | None = None,
        per_endpoint: int | None = None,
        sender: Sender | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.concurrency = max(1, concurrency or settings.WEBHOOK_CONCURRENCY)
        self.per_endpoint = max(1, per_endpoint or settings.WEBHOOK_ENDPOINT_CONCURRENCY)
        self.sender = sender or Sender(per_host=self.per_endpoint)
        self.sent = 0

    def run(self, stop: threading.Event, *, until_idle: bool = False) -> int:
        """Send until ``stop`` is set (then finish the attempts under way), or with
        ``until_idle`` until nothing is due and nothing is under way. Returns the
        attempts recorded."""
        in_flight: dict[Future[Outcome], Outgoing] = {}
        done: list[Outcome] = []
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="webhook-send") as pool:
            try:
                while True:
                    finished = [f for f in in_flight if f.done()]
                    for future in finished:
                        outgoing = in_flight.pop(future)
                        done.append(self._outcome(future, outgoing))
                    if done:
                        self._record(done)
                        done = []
                    claimed = 0
                    if not stop.is_set():
                        claimed = self._claim_into(pool, in_flight)
                    if not in_flight and (stop.is_set() or (until_idle and not claimed)):
                        break
                    if in_flight:
                        wait(list(in_flight), timeout=IDLE_SECONDS, return_when=FIRST_COMPLETED)
                    elif not claimed:
                        stop.wait(IDLE_SECONDS)
            finally:
                if in_flight:  # an error of our own: record what the threads still get
                    for future, outgoing in list(in_flight.items()):
                        done.append(self._outcome(future, outgoing))
                    self._record(done)
        return self.sent

    def drain(self) -> int:
        """Send everything due now and return (``portal worker --once``, tests)."""
        return self.run(threading.Event(), until_idle=True)

    def _claim_into(
        self, pool: ThreadPoolExecutor, in_flight: dict[Future[Outcome], Outgoing]
    ) -> int:
        free = self.concurrency - len(in_flight)
        if free <= 0:
            return 0
        counts = Counter(o.endpoint_id for o in in_flight.values())
        try:
            claimed = deliveries_claim(
                worker_id=self.worker_id,
                limit=free,
                in_flight=counts,
                per_endpoint=self.per_endpoint,
            )
        except DatabaseError:
            logger.exception("Could not claim webhook deliveries; will retry")
            close_old_connections()
            time.sleep(IDLE_SECONDS)
            return 0
        for outgoing in claimed:
            in_flight[pool.submit(self.sender.send, outgoing)] = outgoing
        return len(claimed)

    def _outcome(self, future: Future[Outcome], outgoing: Outgoing) -> Outcome:
        try:
            return future.result()
        except Exception as exc:  # the sender catches what HTTP raises; this is a bug
            logger.exception("Webhook delivery %s failed in the sender", outgoing.delivery_id)
            from portal.core import clock

            return Outcome(
                delivery_id=outgoing.delivery_id,
                endpoint_id=outgoing.endpoint_id,
                at=clock.now(),
                status_code=None,
                duration_ms=0,
                error=f"{type(exc).__name__}: {exc}"[:300],
            )

    def _record(self, outcomes: list[Outcome]) -> None:
        for attempt in range(3):
            try:
                self.sent += attempts_record(worker_id=self.worker_id, outcomes=outcomes)
                return
            except DatabaseError:
                logger.exception("Could not record %d webhook attempts", len(outcomes))
                close_old_connections()
                time.sleep(0.5 * (attempt + 1))
        # Left claimed: once the claims go void the deliveries are sent again.


def deliver_due(worker_id: str = "inline") -> int:
    """Send every delivery due now, in this process; returns the attempts recorded."""
    return Dispatcher(worker_id=worker_id).drain()
