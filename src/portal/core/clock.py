"""The one source of the current time. Everything is timezone-aware UTC."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone


def now() -> dt.datetime:
    """Current instant, timezone-aware in UTC."""
    return timezone.now()
