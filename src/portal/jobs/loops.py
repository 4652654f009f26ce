"""Background loops: work a worker does beside its queue, each in a thread of its own.

A periodic job runs between tasks, so a long task (a merge) holds it back. Work that
must keep flowing whatever the queue does (webhook deliveries) is a loop instead.
Register one in the ``tasks.py`` of the app that owns it::

    @loops.register("webhook_deliveries")
    def deliver(worker_id: str, stop: threading.Event, once: bool) -> None: ...

``portal worker`` starts every registered loop in a thread after its first heartbeat
and gives it the worker's id (claims made under it are void once that heartbeat goes
stale). The loop runs until ``stop`` is set, then finishes what it has under way and
returns; the worker waits for it before it removes its heartbeat. With ``--once`` the
worker calls each loop with ``once=True`` after draining the queue: do what is due now,
then return. A loop that raises is logged and started again after a pause.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.db import connection

from portal.jobs import periodic

logger = logging.getLogger("portal.jobs")

LoopFunction = Callable[[str, threading.Event, bool], object]
F = TypeVar("F", bound=LoopFunction)
RESTART_PAUSE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Loop:
    name: str
    func: LoopFunction


_registry: dict[str, Loop] = {}


def register(name: str) -> Callable[[F], F]:
    """Run the decorated ``func(worker_id, stop, once)`` in every worker."""

    def decorator(func: F) -> F:
        _registry[name] = Loop(name=name, func=func)
        return func

    return decorator


def registered_loops() -> list[Loop]:
    """Every registered loop, after importing each installed app's ``tasks`` module."""
    periodic.registered_jobs()  # imports the apps' tasks modules once
    return sorted(_registry.values(), key=lambda loop: loop.name)


def run_in_thread(loop: Loop, worker_id: str, stop: threading.Event) -> None:
    """A loop's thread: run it until ``stop``, starting it again after an error."""
    try:
        while not stop.is_set():
            try:
                loop.func(worker_id, stop, False)
            except Exception:
                logger.exception("Background loop %s failed; starting it again", loop.name)
                stop.wait(RESTART_PAUSE_SECONDS)
            else:
                if not stop.is_set():
                    stop.wait(RESTART_PAUSE_SECONDS)
    finally:
        connection.close()  # this thread's own connection


def start(worker_id: str, stop: threading.Event) -> list[threading.Thread]:
    threads = []
    for loop in registered_loops():
        thread = threading.Thread(
            target=run_in_thread,
            args=(loop, worker_id, stop),
            name=f"{loop.name}-{worker_id}",
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    return threads


def run_once(worker_id: str) -> list[str]:
    """Each loop's work that is due now, in this thread (``--once``); a failure is logged."""
    ran = []
    for loop in registered_loops():
        try:
            loop.func(worker_id, threading.Event(), True)
        except Exception:
            logger.exception("Background loop %s failed", loop.name)
        ran.append(loop.name)
    return ran
