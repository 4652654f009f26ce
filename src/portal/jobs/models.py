"""Worker bookkeeping."""

from __future__ import annotations

from django.db import models


class WorkerHeartbeat(models.Model):
    """A running worker process, refreshed every few seconds.

    A task marked running by a worker whose heartbeat is older than
    ``WORKER_STALE_AFTER_SECONDS`` was abandoned (the process died) and is requeued.
    """

    worker_id = models.CharField(max_length=64, unique=True)
    hostname = models.CharField(max_length=255, blank=True)
    pid = models.IntegerField(null=True)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)


class PeriodicRun(models.Model):
    """When each periodic job last ran, so several workers run it once per interval."""

    name = models.CharField(max_length=64, unique=True)
    last_run_at = models.DateTimeField()
