"""Tasks and periodic jobs of the worker itself."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.tasks import task

from portal.jobs import periodic
from portal.jobs.services import recover_stalled_tasks


@task()
def ping(value: Any = "pong") -> Any:
    """Return its argument: proves a worker is taking tasks from the queue."""
    return value


@periodic.register("recover_stalled_tasks", every=dt.timedelta(seconds=30))
def recover_stalled_tasks_job() -> None:
    recover_stalled_tasks()
