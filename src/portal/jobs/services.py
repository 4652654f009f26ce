"""Worker bookkeeping: heartbeats and the recovery of tasks whose worker died.

These change no partner's data, so they record no audit event; recoveries are
logged instead.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from portal.core import clock
from portal.jobs.models import WorkerHeartbeat

logger = logging.getLogger("portal.jobs")


def stale_after() -> dt.timedelta:
    return dt.timedelta(seconds=settings.WORKER_STALE_AFTER_SECONDS)


def worker_heartbeat(*, worker_id: str, hostname: str = "", pid: int | None = None) -> None:
    """Record that the worker is alive now (creating its row on the first beat)."""
    at = clock.now()
    WorkerHeartbeat.objects.update_or_create(
        worker_id=worker_id,
        defaults={"last_seen": at},
        create_defaults={"last_seen": at, "started_at": at, "hostname": hostname, "pid": pid},
    )


def worker_heartbeat_remove(*, worker_id: str) -> None:
    """A worker that stops cleanly says so; its tasks have all finished."""
    WorkerHeartbeat.objects.filter(worker_id=worker_id).delete()


def recover_stalled_tasks() -> list[str]:
    """Put back in the queue every running task whose worker stopped beating.

    A task is stalled when the worker that claimed it last (``worker_ids[-1]``) has
    no heartbeat newer than ``WORKER_STALE_AFTER_SECONDS`` and the task started at
    least that long ago (a worker gets that long to be seen). The requeue is a
    conditional update on the status and start time read here, so when two workers
    recover at once only one requeues a task, and a task that was meanwhile
    requeued and claimed again is left alone. Returns the ids requeued.

    Tasks must tolerate a second run: a worker that was only paused (not dead)
    may still finish the task it had.
    """
    cutoff = clock.now() - stale_after()
    alive = set(
        WorkerHeartbeat.objects.filter(last_seen__gte=cutoff).values_list("worker_id", flat=True)
    )
    requeued: list[str] = []
    running = DBTaskResult.objects.filter(
        status=TaskResultStatus.RUNNING, started_at__lt=cutoff
    ).only("id", "task_path", "worker_ids", "started_at")
    for task in running:
        last_worker = task.worker_ids[-1] if task.worker_ids else None
        if last_worker in alive:
            continue
        taken = DBTaskResult.objects.filter(
            pk=task.pk, status=TaskResultStatus.RUNNING, started_at=task.started_at
        ).update(status=TaskResultStatus.READY)
        if taken:
            requeued.append(str(task.pk))
            logger.warning(
                "Requeued task %s (%s): its worker %s stopped sending heartbeats",
                task.pk,
                task.task_path,
                last_worker or "(unknown)",
            )
    # Rows of dead workers are noise once their tasks are back in the queue.
    WorkerHeartbeat.objects.filter(last_seen__lt=cutoff).delete()
    return requeued
