"""A line back in Available is ready for another client (domain §2).

It drops its former client's label, user name, user email and notes, and its daily limit
returns to the partner's default. :func:`lines_release_in_available` does both inside the
transaction of the change that brought the lines there (a single or bulk move, a
deletion's disposition: every path goes through ``relocation.lines_relocate``),
set-based, and hands back what each line had so that change's audit event keeps it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.db.models import Q

from portal.core.bulk import chunks
from portal.lines.limits import line_limits_set
from portal.lines.models import Line
from portal.partners.models import Partner

# A former client's details: cleared to these values in Available.
CLEARED_DETAILS: dict[str, str] = {"label": "", "user_name": "", "user_email": "", "notes": ""}


def lines_release_in_available(
    *, partner_id: int, line_ids: Sequence[int], at: dt.datetime
) -> dict[int, tuple[dict[str, Any], dict[str, Any]]]:
    """Lines that arrived in the partner's Available pool at ``at``: clear their details
    and reset their limit to the partner's default.

    Returns ``{line id: (before, after)}`` for each line that had something to drop, with
    only the fields that changed, ready for the audit event's ``before`` and ``after``.
    One SELECT and one UPDATE per chunk of lines that had details, plus the limit history's
    statements (:func:`~portal.lines.limits.line_limits_set`).
    """
    default = Partner.objects.values_list("default_daily_limit", flat=True).get(pk=partner_id)
    had_details = Q()
    for name in CLEARED_DETAILS:
        had_details |= ~Q(**{name: ""})
    fields = [*CLEARED_DETAILS, "daily_limit"]
    cleared = {**CLEARED_DETAILS, "daily_limit": default}
    released: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    ids = sorted(set(line_ids))
    for chunk in chunks(ids):
        rows = Line.objects.filter(partner_id=partner_id, pk__in=chunk).filter(
            had_details | ~Q(daily_limit=default)
        )
        with_details: list[int] = []
        for pk, *values in rows.values_list("pk", *fields):
            before = {k: v for k, v in zip(fields, values, strict=True) if v != cleared[k]}
            released[pk] = (before, {k: cleared[k] for k in before})
            if before.keys() - {"daily_limit"}:
                with_details.append(pk)
        if with_details:
            Line.objects.filter(pk__in=with_details).update(**CLEARED_DETAILS)
    limited = [pk for pk, (before, _) in released.items() if "daily_limit" in before]
    if limited:
        line_limits_set(partner_id=partner_id, line_ids=limited, daily_limit=default, at=at)
    return released
