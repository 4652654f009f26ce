"""A line's daily volume limit as history (domain §4: a day is judged by the limit the line
had at the end of it; domain §2: a line back in Available returns to the partner's default).

Every change of ``Line.daily_limit`` goes through :func:`line_limits_set`, inside the
transaction of the service that makes it (assign, edit, a return to Available, which
``lines.available`` handles): it appends :class:`~portal.lines.models.LineLimitChange`
rows and sends :data:`line_limits_changed`, on which analytics re-judges the lines' days
from then on. A signal, not a call, because analytics reads lines (imports point down).

Internal (``core.tenancy``): it takes a bare ``partner_id``; the services that call it
have locked the lines through ``visible_to(principal)``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.db import connection
from django.dispatch import Signal

from portal.core.bulk import id_matches
from portal.lines.models import Line, LineLimitChange

# Sent with partner_id, line_ids (those whose limit changed) and at (the instant).
line_limits_changed = Signal()


def line_limits_set(
    *, partner_id: int, line_ids: Sequence[int], daily_limit: int, at: dt.datetime
) -> list[int]:
    """Give the lines ``daily_limit`` from ``at`` on, recording the change of each line whose
    limit differs (set-based: one SELECT, one INSERT … SELECT and one UPDATE, the ids as one
    array parameter on PostgreSQL and in chunks elsewhere, ``core.bulk.id_matches``). Runs
    in the caller's transaction, the lines locked by it, so the three statements see the
    same lines. Returns the ids of the lines changed."""
    changed: list[int] = []
    qn = connection.ops.quote_name
    history, lines = qn(LineLimitChange._meta.db_table), qn(Line._meta.db_table)
    when = connection.ops.adapt_datetimefield_value(at)
    with connection.cursor() as cursor:
        for match, params in id_matches(sorted(set(line_ids))):
            # Only quoted identifiers and placeholders are formatted in; values are parameters.
            differing = f"WHERE partner_id = %s AND id {match} AND daily_limit <> %s"
            where = [partner_id, *params, daily_limit]
            cursor.execute(f"SELECT id FROM {lines} {differing}", where)  # noqa: S608
            found = [pk for (pk,) in cursor.fetchall()]
            if not found:
                continue
            cursor.execute(
                f"INSERT INTO {history} (partner_id, line_id, at, old_limit, new_limit) "  # noqa: S608
                f"SELECT partner_id, id, %s, daily_limit, %s FROM {lines} {differing}",
                [when, daily_limit, *where],
            )
            cursor.execute(
                f"UPDATE {lines} SET daily_limit = %s {differing}",  # noqa: S608
                [daily_limit, *where],
            )
            changed += found
    if changed:
        line_limits_changed.send(
            sender=LineLimitChange, partner_id=partner_id, line_ids=changed, at=at
        )
    return changed
