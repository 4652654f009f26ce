"""The worker process: django-tasks-db's queue plus heartbeats, periodic jobs and loops.

One loop runs in the main thread: about once a second it runs the periodic jobs
that are due (see :mod:`portal.jobs.periodic`), then claims and runs the next
ready task of the queue, and waits ``interval`` seconds when there is none. A
background thread writes the worker's heartbeat every few seconds, so other
workers can tell that its running task is not abandoned (see
:func:`portal.jobs.services.recover_stalled_tasks`). The apps' background loops
(:mod:`portal.jobs.loops`: webhook deliveries) run in threads of their own beside
the queue; with ``--once`` each does what is due once the queue is drained.

SIGTERM or SIGINT lets the current task finish and then stops; a second one stops
at once (the task is marked failed). A clean stop deletes the heartbeat. SIGUSR1
prints every thread's stack to stderr (a worker that seems stuck shows where).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import socket
import threading
import time
from types import FrameType

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.db.utils import OperationalError
from django.utils.crypto import get_random_string
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import exclusive_transaction, is_locked_database_exception

from portal.core.memory import limit_malloc_arenas, release_free_memory
from portal.jobs import loops, periodic
from portal.jobs.services import worker_heartbeat, worker_heartbeat_remove

logger = logging.getLogger("portal.jobs")

PERIODIC_CHECK_SECONDS = 1.0
# How long a stopping worker waits for its background loops (an attempt under way
# ends within its timeouts).
LOOP_STOP_SECONDS = 30.0


def heartbeat_seconds() -> float:
    """A few beats fit in the staleness window, so one slow beat is not fatal."""
    return max(0.5, min(5.0, settings.WORKER_STALE_AFTER_SECONDS / 4))


def new_worker_id() -> str:
    host = socket.gethostname()[:40]
    return f"{host}:{os.getpid()}:{get_random_string(8)}"


class PortalWorker(Worker):
    def __init__(self, *, worker_id: str, interval: float, batch: bool, queue_names: list[str]):
        super().__init__(
            queue_names=queue_names,
            interval=interval,
            batch=batch,
            backend_name="default",
            startup_delay=False,
            max_tasks=None,
            worker_id=worker_id,
            excluded_queue_names=[],
        )
        self.hostname = socket.gethostname()[:255]
        self.pid = os.getpid()
        # The jobs run, for ``--once`` to report; a long-running worker keeps no history.
        self.periodic_ran: list[str] = []
        self._wake = threading.Event()
        self._stop_beating = threading.Event()
        self._stop_loops = threading.Event()
        self._previous_handlers: dict[int, object] = {}

    @property
    def tasks_run(self) -> int:
        return self._run_tasks

    # --- signals --------------------------------------------------------------------

    def configure_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may install handlers (tests call us from others)
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, self.shutdown)
        if hasattr(signal, "SIGUSR1"):
            faulthandler.register(signal.SIGUSR1, all_threads=True)

    def reset_signals(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous_handlers.clear()
        if hasattr(signal, "SIGUSR1"):
            faulthandler.unregister(signal.SIGUSR1)

    def shutdown(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self.running:
            logger.warning("Received %s again: stopping now.", name)
            self.reset_signals()
            raise SystemExit(1)
        logger.warning(
            "Received %s: stopping after the current task (send it again to stop now).", name
        )
        self.running = False
        self._wake.set()

    # --- heartbeat ------------------------------------------------------------------

    def beat(self) -> None:
        worker_heartbeat(worker_id=self.worker_id, hostname=self.hostname, pid=self.pid)

    def _heartbeat_loop(self) -> None:
        try:
            while not self._stop_beating.wait(heartbeat_seconds()):
                try:
                    self.beat()
                except DatabaseError:
                    logger.exception("Worker %s could not record its heartbeat", self.worker_id)
        finally:
            connection.close()  # this thread's own connection

    # --- the loop -------------------------------------------------------------------

    def run(self) -> None:
        logger.info("Worker %s started (queues: %s)", self.worker_id, ",".join(self.queue_names))
        limit_malloc_arenas()  # before the heartbeat thread starts (see portal.core.memory)
        self.beat()
        beater = threading.Thread(
            target=self._heartbeat_loop, name=f"heartbeat-{self.worker_id}", daemon=True
        )
        beater.start()
        background = [] if self.batch else loops.start(self.worker_id, self._stop_loops)
        try:
            self._loop()
            if self.batch and self.running:
                loops.run_once(self.worker_id)
        finally:
            self._stop_loops.set()
            for thread in background:  # each finishes what it has under way
                thread.join(timeout=LOOP_STOP_SECONDS)
            self._stop_beating.set()
            beater.join(timeout=heartbeat_seconds() + 5)
            try:
                worker_heartbeat_remove(worker_id=self.worker_id)
            except DatabaseError:
                logger.exception("Worker %s could not remove its heartbeat", self.worker_id)
            logger.info("Worker %s stopped after %d tasks", self.worker_id, self.tasks_run)

    def _loop(self) -> None:
        next_periodic = 0.0
        while self.running:
            close_old_connections()
            if time.monotonic() >= next_periodic:
                ran = periodic.run_due()
                if ran:
                    release_free_memory()  # a job's rows and results are gone now
                    if self.batch:
                        self.periodic_ran.extend(ran)
                next_periodic = time.monotonic() + PERIODIC_CHECK_SECONDS
                if not self.running:
                    break
            task_result, retrieved = self._claim_next()
            if task_result is not None:
                self.run_task(task_result)
                release_free_memory()
            elif self.batch and retrieved:
                logger.info("Queue drained; worker %s exits.", self.worker_id)
                return
            close_old_connections()
            if self.running and task_result is None:
                self._wake.wait(self.interval)

    def _claim_next(self) -> tuple[DBTaskResult | None, bool]:
        """Claim the next ready task. ``retrieved`` is False when the database was busy."""
        tasks = DBTaskResult.objects.ready().filter(
            backend_name=self.backend_name, queue_name__in=self.queue_names
        )
        try:
            with exclusive_transaction(tasks.db):
                task_result = tasks.get_locked()
                if task_result is not None:
                    task_result.claim(self.worker_id)
        except OperationalError as exc:
            if not is_locked_database_exception(exc):
                raise
            return None, False
        return task_result, True
