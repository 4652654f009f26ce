"""Periodic jobs: functions the worker runs every so often, once per interval in total.

Register one in the ``tasks.py`` of the app that owns it::

    @periodic.register("invoice_finalize", every=dt.timedelta(minutes=5))
    def invoice_finalize_due() -> None: ...

Every running worker looks at the registry about once a second. A job runs where
a worker wins the claim: one conditional ``UPDATE`` that moves the job's
``PeriodicRun.last_run_at`` to now only if it is at least ``every`` old, so
however many workers look, one of them runs it per interval. The claim is taken
before the run: a job that fails waits for its next interval (it is logged), and
jobs must be safe to rerun, as a worker can die halfway through one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import DatabaseError, IntegrityError, transaction
from django.utils.module_loading import autodiscover_modules

from portal.core import clock
from portal.jobs.models import PeriodicRun

logger = logging.getLogger("portal.jobs")

F = TypeVar("F", bound=Callable[[], Any])

# A job never run before is due at once.
_NEVER = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    name: str
    every: dt.timedelta
    func: Callable[[], Any]


_registry: dict[str, PeriodicJob] = {}
_discovered = False


def register(name: str, every: dt.timedelta) -> Callable[[F], F]:
    """Run the decorated function (no arguments) every ``every``, on one worker."""
    if not name or len(name) > PeriodicRun._meta.get_field("name").max_length:
        raise ValueError(f"Periodic job name {name!r} must be 1 to 64 characters.")
    if every <= dt.timedelta(0):
        raise ValueError(f"Periodic job {name!r} needs a positive interval.")

    def decorator(func: F) -> F:
        existing = _registry.get(name)
        if existing is not None and _qualified(existing.func) != _qualified(func):
            raise ValueError(f"Periodic job {name!r} is already registered by another function.")
        _registry[name] = PeriodicJob(name=name, every=every, func=func)
        return func

    return decorator


def _qualified(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def registered_jobs() -> list[PeriodicJob]:
    """Every registered job, after importing each installed app's ``tasks`` module."""
    global _discovered
    if not _discovered:
        autodiscover_modules("tasks")
        _discovered = True
    return sorted(_registry.values(), key=lambda job: job.name)


def claim(job: PeriodicJob, *, at: dt.datetime | None = None) -> bool:
    """Take this interval's run of ``job``; False when another worker already has."""
    at = at or clock.now()
    if not PeriodicRun.objects.filter(name=job.name).exists():
        try:
            with transaction.atomic():
                PeriodicRun.objects.create(name=job.name, last_run_at=_NEVER)
        except IntegrityError:
            pass  # another worker created it first; the claim below decides
    claimed = PeriodicRun.objects.filter(name=job.name, last_run_at__lte=at - job.every).update(
        last_run_at=at
    )
    return claimed == 1


def run_due(jobs: Iterable[PeriodicJob] | None = None) -> list[str]:
    """Run every job that is due and that this worker claims. Returns their names.

    A failing job is logged and does not stop the others.
    """
    ran: list[str] = []
    for job in registered_jobs() if jobs is None else jobs:
        try:
            if not claim(job):
                continue
        except DatabaseError:
            logger.exception("Could not claim periodic job %s; will retry", job.name)
            continue
        logger.info("Running periodic job %s", job.name)
        try:
            job.func()
        except Exception:
            logger.exception("Periodic job %s failed", job.name)
        ran.append(job.name)
    return ran
