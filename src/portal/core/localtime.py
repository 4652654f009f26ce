"""Instants as people read them: in a partner's timezone, saying which.

Instants are stored and computed in UTC (``core.clock``); pages, PDFs, emails and
refusal messages show them in the timezone of the partner they are about, with the
zone written next to the time, so "16:43 EST" can never be read as UTC. Pages with
no partner (the staff's lists across partners) show UTC and say so. One function
does it for every output: the web layer's ``partner_time`` filter, the invoice PDF,
the workflow emails and the stale-move refusals all call :func:`format_local`.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import lru_cache

UTC_NAME = "UTC"


@lru_cache(maxsize=256)
def zone(name: str | None) -> zoneinfo.ZoneInfo:
    """The IANA zone ``name`` (UTC for an empty name)."""
    return zoneinfo.ZoneInfo(name or UTC_NAME)


def zone_label(local: dt.datetime) -> str:
    """The zone of an aware local time as a reader knows it: its abbreviation when the
    zone database has one ("EST", "BST", "UTC"), else the offset ("UTC+04", "UTC−03:30")."""
    abbreviation = local.tzname() or ""
    if abbreviation.isalpha():
        return abbreviation
    offset = local.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "\u2212"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}" + (f":{rest:02d}" if rest else "")


def to_local(instant: dt.datetime, tz: str | None) -> dt.datetime:
    """``instant`` (aware) in the timezone ``tz``."""
    if instant.tzinfo is None:
        raise ValueError("to_local needs an aware datetime")
    return instant.astimezone(zone(tz))


def format_local(instant: dt.datetime, tz: str | None, *, seconds: bool = False) -> str:
    """``instant`` in ``tz`` with its zone: "5 Dec 2026, 16:43 EST"; with ``seconds``,
    "5 Dec 2026, 16:43:07 EST". ``tz`` None or empty is UTC."""
    local = to_local(instant, tz)
    clock = f"{local:%H:%M:%S}" if seconds else f"{local:%H:%M}"
    return f"{local.day} {local:%b %Y}, {clock} {zone_label(local)}"
