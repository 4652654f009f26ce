"""The worker's webhook dispatcher: claims due deliveries and sends them, many at once.

It runs in a thread of every ``portal worker`` beside the task queue (registered as a
background loop in ``webhooks/tasks.py``), so a long task (a merge) never holds
deliveries back. One thread claims, records and hands attempts to a pool of
``WEBHOOK_CONCURRENCY`` sender threads; no endpoint gets more than
``WEBHOOK_ENDPOINT_CONCURRENCY`` of them, so a slow or dead endpoint (each attempt up
to its 10 s timeout) never delays the others' deliveries: the free slots keep going to
the endpoints that answer. The sender threads do no database work.

The database work is batched: a claim takes up to :data:`PREFETCH` times the
concurrency (at most that many times an endpoint's share per endpoint), kept in
per-endpoint queues until a slot is free, and outcomes are recorded together, every
:data:`RECORD_EVERY` seconds or :data:`RECORD_BATCH` outcomes. A worker that stops
hands back the claims it has not started.

Crash safety: a claim names this worker; if the process dies mid-attempt, its heartbeat
goes stale, the claim is void and another worker (or this one restarted) sends the
delivery again with the same ``webhook-id``: deliveries are at least once, and
receivers deduplicate on that id as the Standard Webhooks specification says.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from django.conf import settings
from django.db import DatabaseError, close_old_connections

from portal.core import clock
from portal.webhooks.deliveries import attempts_record, deliveries_claim, deliveries_release
from portal.webhooks.sender import Outcome, Outgoing, Sender

logger = logging.getLogger("portal.webhooks")

IDLE_SECONDS = 0.5  # between looks at the queue when nothing is due
# Claims held (under way or waiting for a slot): at most this many times the concurrency,
# and this many times an endpoint's share for one endpoint (a dead one: 64 × 10 s / 4).
PREFETCH = 8
PREFETCH_PER_ENDPOINT = 16
CLAIM_EVERY = 0.25  # seconds between claims while more than the concurrency is held
RECORD_EVERY = 0.2  # seconds an outcome may wait to be recorded with others
RECORD_BATCH = 200


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
        self._queued: dict[int, deque[Outgoing]] = {}
        self._in_flight: dict[Future[Outcome], Outgoing] = {}
        self._outcomes: list[Outcome] = []
        self._oldest_outcome = 0.0
        self._next_claim = 0.0
        self._last_claim = 0.0

    def run(self, stop: threading.Event, *, until_idle: bool = False) -> int:
        """Send until ``stop`` is set (then finish the attempts under way), or with
        ``until_idle`` until nothing is due and nothing is under way. Returns the
        attempts recorded."""
        # Claims this worker left behind (a dispatcher restarted after an error) are no
        # attempt under way any more: hand them back before claiming.
        deliveries_release(worker_id=self.worker_id)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="webhook-send") as pool:
            try:
                while True:
                    self._harvest()
                    if self._outcomes and (
                        len(self._outcomes) >= RECORD_BATCH
                        or time.monotonic() - self._oldest_outcome >= RECORD_EVERY
                        or not self._in_flight
                    ):
                        self._record()
                    claimed = None if stop.is_set() else self._claim()
                    if not stop.is_set():
                        self._submit(pool)
                    queued = sum(len(q) for q in self._queued.values())
                    idle = not self._in_flight and not self._outcomes
                    if idle and (stop.is_set() or (until_idle and claimed == 0 and not queued)):
                        break
                    if self._in_flight:
                        wait(self._in_flight, timeout=RECORD_EVERY, return_when=FIRST_COMPLETED)
                    elif not claimed and not queued:
                        stop.wait(max(0.0, self._next_claim - time.monotonic()))
            finally:
                for future in list(self._in_flight):  # an error of ours: keep what they get
                    self._outcomes.append(self._outcome(future, self._in_flight.pop(future)))
                self._record()
                self._release()
        return self.sent

    def drain(self) -> int:
        """Send everything due now and return (``portal worker --once``, tests)."""
        return self.run(threading.Event(), until_idle=True)

    # --- the steps ---------------------------------------------------------------------

    def _harvest(self) -> None:
        for future in [f for f in self._in_flight if f.done()]:
            if not self._outcomes:
                self._oldest_outcome = time.monotonic()
            self._outcomes.append(self._outcome(future, self._in_flight.pop(future)))

    def _held(self) -> Counter[int]:
        """Deliveries this worker holds per endpoint: under way or waiting for a slot."""
        held = Counter(o.endpoint_id for o in self._in_flight.values())
        for endpoint_id, queue in self._queued.items():
            held[endpoint_id] += len(queue)
        return held

    def _claim(self) -> int | None:
        """Claim more when the queues run low, and not again at once after an empty look
        (None: it did not look)."""
        held = self._held()
        cap = self.concurrency * PREFETCH
        room = cap - held.total()
        now = time.monotonic()
        running_low = held.total() < self.concurrency
        if now < self._next_claim or (not running_low and now < self._last_claim + CLAIM_EVERY):
            return None
        self._last_claim = now
        try:
            claimed = deliveries_claim(
                worker_id=self.worker_id,
                limit=room,
                in_flight=held,
                per_endpoint=self.per_endpoint * PREFETCH_PER_ENDPOINT,
            )
        except DatabaseError:
            logger.exception("Could not claim webhook deliveries; will retry")
            close_old_connections()
            self._next_claim = time.monotonic() + IDLE_SECONDS
            return 0
        if not claimed:
            self._next_claim = time.monotonic() + IDLE_SECONDS
        for outgoing in claimed:
            self._queued.setdefault(outgoing.endpoint_id, deque()).append(outgoing)
        return len(claimed)

    def _submit(self, pool: ThreadPoolExecutor) -> None:
        """Start what waits, endpoint by endpoint, within the shares and the slots."""
        sending = Counter(o.endpoint_id for o in self._in_flight.values())
        progressed = True
        while progressed and len(self._in_flight) < self.concurrency:
            progressed = False
            for endpoint_id, queue in list(self._queued.items()):
                if not queue:
                    del self._queued[endpoint_id]
                    continue
                if sending[endpoint_id] >= self.per_endpoint:
                    continue
                if len(self._in_flight) >= self.concurrency:
                    break
                outgoing = queue.popleft()
                self._in_flight[pool.submit(self.sender.send, outgoing)] = outgoing
                sending[endpoint_id] += 1
                progressed = True

    def _outcome(self, future: Future[Outcome], outgoing: Outgoing) -> Outcome:
        try:
            return future.result()
        except Exception as exc:  # the sender catches what HTTP raises; this is a bug
            logger.exception("Webhook delivery %s failed in the sender", outgoing.delivery_id)
            return Outcome(
                delivery_id=outgoing.delivery_id,
                endpoint_id=outgoing.endpoint_id,
                at=clock.now(),
                status_code=None,
                duration_ms=0,
                error=f"{type(exc).__name__}: {exc}"[:300],
            )

    def _record(self) -> None:
        if not self._outcomes:
            return
        outcomes, self._outcomes = self._outcomes, []
        self._next_claim = 0.0  # a failed attempt may be due again at once
        for attempt in range(3):
            try:
                self.sent += attempts_record(worker_id=self.worker_id, outcomes=outcomes)
                return
            except DatabaseError:
                logger.exception("Could not record %d webhook attempts", len(outcomes))
                close_old_connections()
                time.sleep(0.5 * (attempt + 1))
        # Left claimed: once the claims go void the deliveries are sent again.

    def _release(self) -> None:
        """Hand back the claims not started (a stopping worker), for others to take."""
        waiting = [o.delivery_id for q in self._queued.values() for o in q]
        self._queued.clear()
        if not waiting:
            return
        try:
            deliveries_release(worker_id=self.worker_id, delivery_ids=waiting)
        except DatabaseError:
            logger.exception("Could not hand back %d webhook deliveries", len(waiting))


def deliver_due(worker_id: str = "inline") -> int:
    """Send every delivery due now, in this process; returns the attempts recorded."""
    return Dispatcher(worker_id=worker_id).drain()
