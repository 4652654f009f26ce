"""``portal worker``: run queued tasks and periodic jobs."""

from __future__ import annotations

import logging
import math
from argparse import ArgumentParser, ArgumentTypeError
from typing import Any

from django.core.management.base import BaseCommand

from portal.core.commands import plural
from portal.jobs.worker import PortalWorker, new_worker_id


def _interval(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or not 0 <= seconds <= 3600:
        raise ArgumentTypeError("must be between 0 and 3600 seconds")
    return seconds


class Command(BaseCommand):
    help = (
        "Run the background worker: tasks queued in the database (merges, deletions, "
        "billing) and the periodic jobs (recovery of tasks whose worker died, clean-ups, "
        "billing at cycle start). Run as many workers as you like; each periodic job runs "
        "once per interval among them. SIGTERM or Ctrl-C stops after the current task."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Run the periodic jobs that are due, run every ready task, then exit.",
        )
        parser.add_argument(
            "--interval",
            type=_interval,
            default=1.0,
            metavar="S",
            help="Seconds to wait when the queue is empty before looking again (default: 1).",
        )
        parser.add_argument(
            "--queue",
            dest="queues",
            default="default",
            metavar="NAMES",
            help="Comma-separated queue names to take tasks from (default: default).",
        )

    def handle(self, *args: Any, once: bool, interval: float, queues: str, **options: Any) -> None:
        verbosity = options["verbosity"]
        level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
        for name in ("portal.jobs", "django.tasks", "django_tasks_db"):
            logging.getLogger(name).setLevel(level)  # each task's start and end at INFO
        queue_names = [q.strip() for q in queues.split(",") if q.strip()] or ["default"]
        worker = PortalWorker(
            worker_id=new_worker_id(), interval=interval, batch=once, queue_names=queue_names
        )
        worker.configure_signals()
        try:
            worker.run()
        finally:
            worker.reset_signals()
        if once and verbosity:
            jobs = ", ".join(worker.periodic_ran) or "none due"
            self.stdout.write(f"Ran {plural(worker.tasks_run, 'task')}; periodic jobs: {jobs}.")
