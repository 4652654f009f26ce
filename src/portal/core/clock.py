"""The one source of the current time. Everything is timezone-aware UTC.

``frozen_at`` pins the clock for a block of code: the demo seeder uses it to lay
down history in the past, and tests use it for dates with known answers.
"""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

from django.utils import timezone

_pinned: contextvars.ContextVar[dt.datetime | None] = contextvars.ContextVar(
    "portal_clock_pinned", default=None
)


def now() -> dt.datetime:
    """Current instant, timezone-aware in UTC."""
    pinned = _pinned.get()
    return pinned if pinned is not None else timezone.now()


@contextmanager
def frozen_at(at: dt.datetime) -> Iterator[None]:
    """Make :func:`now` return ``at`` (aware) inside the block, in this thread only."""
    if timezone.is_naive(at):
        raise ValueError("frozen_at needs an aware datetime")
    token = _pinned.set(at.astimezone(dt.UTC))
    try:
        yield
    finally:
        _pinned.reset(token)
