"""Running a service's transaction again when the database chose it as a race's loser.

PostgreSQL ends one of two transactions that wait for each other (deadlock detected,
SQLSTATE 40P01) and refuses one that cannot be serialised (40001); SQLite answers
"database is locked" when a writer waited longer than its busy timeout. None of these
says anything about the request: the same transaction run again a moment later
succeeds, or is refused for a reason of its own (a 409 with a message for people).
So :func:`retry_on_lost_race` re-runs the whole service call, from its first
statement, a few times before the error goes on to be answered 409 (``portal.api``).

Only a call that owns the outermost transaction is re-run: inside someone else's
transaction (a service calling a service, a test's) the error leaves the
transaction aborted and must go up to whoever opened it. Nothing of an attempt that
lost outlives it: its writes and audit events are rolled back and the callbacks it
gave ``transaction.on_commit`` (emails, tasks) are dropped with it, so the attempt that
commits is the only one anybody hears about. An error raised by such a callback, after
the commit, is never retried: the change is done, and running it again would repeat it.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable

from django.db import IntegrityError, transaction

logger = logging.getLogger("portal.retry")

# Runs after the first: enough for the few transactions that meet on one row to
# take turns, short enough that a request stuck behind something else still ends.
RETRIES = 3
# The n-th retry waits a random time up to BACKOFF_SECONDS * 2**n, so two losers do
# not meet again at once.
BACKOFF_SECONDS = 0.05

# PostgreSQL: serialization_failure, deadlock_detected.
_RETRIED_SQLSTATES = frozenset({"40001", "40P01"})
_SQLITE_BUSY = ("database is locked", "database table is locked")


def is_lost_race(exc: BaseException) -> bool:
    """Whether ``exc`` is the database ending a transaction that lost a race.

    Django wraps driver errors (the driver's own is the ``__cause__``); statements run
    on the driver's cursor directly (COPY) raise the driver's error as it is.
    """
    for error in (exc, exc.__cause__):
        if error is None:
            continue
        if getattr(error, "sqlstate", None) in _RETRIED_SQLSTATES:
            return True
        if type(error).__name__ == "OperationalError" and any(
            text in str(error).lower() for text in _SQLITE_BUSY
        ):
            return True
    return False


def is_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is a concurrent change the caller should hear as a 409: a lost race
    (:func:`is_lost_race`, after the retries), a unique key taken meanwhile, or a lock the
    database gave up waiting for (PostgreSQL 55P03). Other database errors (a lost
    connection, an overflowing value) are server errors and are not dressed up as "retry".
    The one rule for the API and the pages."""
    if isinstance(exc, IntegrityError) or is_lost_race(exc):
        return True
    return getattr(exc.__cause__, "sqlstate", None) == "55P03"


def _after_commit(exc: BaseException) -> bool:
    """Whether ``exc`` came out of an on-commit callback, the transaction committed."""
    trace = exc.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_name == "run_and_clear_commit_hooks":
            return True
        trace = trace.tb_next
    return False


def retry_on_lost_race[**P, T](func: Callable[P, T]) -> Callable[P, T]:
    """Run ``func`` (which opens its own transaction) again when its transaction lost a
    deadlock, a serialisation check or SQLite's busy wait: up to :data:`RETRIES` more
    times, after a short random pause; the last loss is raised."""

    @functools.wraps(func)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> T:
        if transaction.get_connection().in_atomic_block:
            return func(*args, **kwargs)
        for retry in range(RETRIES + 1):
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                if retry == RETRIES or not is_lost_race(exc) or _after_commit(exc):
                    raise
                logger.info("%s lost a race (%s); running it again", func.__qualname__, exc)
                time.sleep(random.uniform(0, BACKOFF_SECONDS * 2**retry))
        raise AssertionError("unreachable")

    return wrapped
