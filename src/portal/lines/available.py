"""A line back in Available is ready for another client (domain §2).

It drops its former client's label, user name, user email and notes, and its daily limit
returns to the partner's default. :func:`lines_release_in_available` does both inside the
transaction of the change that brought the lines there (a single or bulk move, a
deletion's disposition: every path goes through ``relocation.lines_relocate``),
set-based, and hands back what each line had so that change's audit event keeps it.

Internal (``core.tenancy``): it takes a bare ``partner_id``; ``lines_relocate``'s
callers have scoped and locked the lines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.db import connection

from portal.core.bulk import id_matches
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
    One SELECT and, when some had details, one UPDATE (the ids as one array parameter on
    PostgreSQL, in chunks elsewhere: ``core.bulk.id_matches``), plus the limit history's
    statements (:func:`~portal.lines.limits.line_limits_set`). The caller has locked the
    lines, so the UPDATE clears exactly the lines the SELECT found with details.
    """
    default = Partner.objects.values_list("default_daily_limit", flat=True).get(pk=partner_id)
    qn = connection.ops.quote_name
    lines = qn(Line._meta.db_table)
    fields = [*CLEARED_DETAILS, "daily_limit"]
    cleared = {**CLEARED_DETAILS, "daily_limit": default}
    had_details = " OR ".join(f"{qn(name)} <> %s" for name in CLEARED_DETAILS)
    clear = ", ".join(f"{qn(name)} = %s" for name in CLEARED_DETAILS)
    released: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    with connection.cursor() as cursor:
        for match, params in id_matches(sorted(set(line_ids))):
            # Only quoted identifiers and placeholders are formatted in; values are parameters.
            cursor.execute(
                f"SELECT id, {', '.join(qn(f) for f in fields)} FROM {lines} "  # noqa: S608
                f"WHERE partner_id = %s AND id {match} AND ({had_details} OR daily_limit <> %s)",
                [partner_id, *params, *CLEARED_DETAILS.values(), default],
            )
            with_details = False
            for pk, *values in cursor.fetchall():
                before = {k: v for k, v in zip(fields, values, strict=True) if v != cleared[k]}
                released[pk] = (before, {k: cleared[k] for k in before})
                with_details = with_details or bool(before.keys() - {"daily_limit"})
            if with_details:
                cursor.execute(
                    f"UPDATE {lines} SET {clear} "  # noqa: S608
                    f"WHERE partner_id = %s AND id {match} AND ({had_details})",
                    [*CLEARED_DETAILS.values(), partner_id, *params, *CLEARED_DETAILS.values()],
                )
    limited = [pk for pk, (before, _) in released.items() if "daily_limit" in before]
    if limited:
        line_limits_set(partner_id=partner_id, line_ids=limited, daily_limit=default, at=at)
    return released
