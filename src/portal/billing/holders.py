"""Who held each line of a partner: the lines each sub-account held at an instant, and
every change of a line's holder, day by day, through a cycle, in one SQL statement over
the assignment periods (:func:`holder_changes`: the set-based proration engine, tested item
by item against the oracle in :mod:`portal.billing.proration`).

Internal (``core.tenancy``): it takes a bare ``partner_id``, scoped by its callers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, Q

from portal.billing.periods import Cycle
from portal.lines.models import AssignmentPeriod, Line


def lines_held_at(partner_id: int, instant: dt.datetime) -> dict[int, int]:
    """Lines held per sub-account at ``instant``: one ``GROUP BY`` over the periods."""
    rows = (
        AssignmentPeriod.objects.filter(partner_id=partner_id, start__lte=instant)
        .filter(Q(end__isnull=True) | Q(end__gt=instant))
        .values("sub_account_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["sub_account_id"]: row["n"] for row in rows}


@dataclass(frozen=True, slots=True)
class HolderChange:
    """The holder of a line at the end of ``day`` differs from the end of the day before.

    ``before`` is None when the line was not active then (a new line), ``after`` is
    None when it is no longer active (a disconnected line). "The end of day 0" is the
    cycle's start itself, the instant the invoice charged in advance.
    """

    line_id: int
    number: str
    day: int
    before: int | None
    after: int | None


def holder_changes(
    *, partner_id: int, cycle: Cycle, until: dt.datetime | None = None
) -> list[HolderChange]:
    """Every change of holder, day by day, of the partner's lines during ``cycle``.

    One statement. Python supplies the instants that end each day (local midnights,
    so DST is already handled) as a ``VALUES`` list; ``until`` (an instant inside the
    cycle, e.g. now) stops the days there, the last one ending at ``until``.

    In SQL: ``changed`` keeps the lines with a period starting or ending strictly
    inside the cycle (the others have one holder all along and give nothing). Each
    of their periods covers a contiguous range of day ends, ``first_day..last_day``
    (day 0 is the cycle's start, held by the period open *at* it; day d ≥ 1 is held by
    the period open just *before* its end, so a move at midnight belongs to the next
    day); a period that begins and ends between two day ends covers none, which is
    how several moves in one day collapse into one. ``LAG``/``LEAD`` over a line's
    remaining periods then give the changes: a period that starts a range after
    another holder's range is a move (or a new line when nothing held it the day
    before); a range that ends before the last day with nothing after it is a
    disconnection.

    Merges never prorate (domain §3): a period that began because a merge moved the line
    (``via_merge``) *inside* the cycle is billed to the holder before it, as if the
    line had not moved. ``billed_run`` numbers a line's periods so that such a period
    joins the run of the one before it (chains of merges included), and
    ``FIRST_VALUE`` gives the whole run that run's first holder: the merge is then no
    change at all, and a later move in the cycle credits the source, which was charged.
    A merge at or before the cycle's start is an ordinary holder: the target was
    charged in advance.
    """
    found = changes_sql(partner_id=partner_id, cycle=cycle, until=until)
    if found is None:
        return []
    changes, params = found
    lines = connection.ops.quote_name(Line._meta.db_table)
    sql = f"""
        {changes}
        SELECT ch.line_id, l.number, ch.day, ch.before_id, ch.after_id
        FROM changes ch JOIN {lines} l ON l.id = ch.line_id
        ORDER BY ch.line_id, ch.day
    """  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [HolderChange(*row) for row in cursor.fetchall()]


def changes_sql(
    *,
    partner_id: int,
    cycle: Cycle,
    until: dt.datetime | None,
    since: dt.datetime | None = None,
    changed_before: dt.datetime | None = None,
) -> tuple[str, list[object]] | None:
    """The ``WITH`` clause of :func:`holder_changes` (ending with the CTE ``changes``:
    ``line_id, day, before_id, after_id``) and its parameters, for a ``SELECT`` over the
    changes to follow; None when ``until`` is at or before the cycle's start.

    ``since`` (an instant inside the cycle, e.g. a day's end) keeps only the lines with a
    period starting or ending at or after it: their changes after it are all there are
    (the changes before it are those of every line, and this leaves most out).
    ``changed_before`` (after ``until``) widens that to the lines changed before it: the
    same lines as they stood at ``until``, before their later changes."""
    ends = cycle.day_ends()
    if until is not None:
        if until <= cycle.start:
            return None
        if until < cycle.end:
            ends = [end for end in ends if end < until] + [until]
    adapt = connection.ops.adapt_datetimefield_value
    start = adapt(cycle.start)
    upper = adapt(ends[-1])
    last = len(ends)
    qn = connection.ops.quote_name
    periods = qn(AssignmentPeriod._meta.db_table)
    p_start, p_end = qn("start"), qn("end")
    # A change at the cycle's start changes nothing in it; one at a day's end starts the next.
    after = ">" if since is None else ">="
    in_cycle = f"p.partner_id = %s AND p.{p_start} < %s AND (p.{p_end} IS NULL OR p.{p_end} > %s)"
    if since is not None and connection.vendor == "postgresql":
        # A day's few changed lines: each line's periods by its index. PostgreSQL would
        # otherwise hash-join them with a scan of all the partner's periods; OFFSET 0
        # keeps it from flattening the LATERAL subquery back into that join.
        lateral = f"SELECT * FROM {periods} p WHERE p.line_id = c.line_id AND {in_cycle}"  # noqa: S608
        lines_periods = f"changed c CROSS JOIN LATERAL ({lateral} OFFSET 0) p"
    else:
        lines_periods = f"{periods} p JOIN changed c ON c.line_id = p.line_id WHERE {in_cycle}"
    params: list[object] = []
    if connection.vendor == "postgresql":
        # The day ends as one sorted array: width_bucket() counts the ends at or before an
        # instant by binary search, where a COUNT over a VALUES list scans all of them
        # for every period (most of this statement's time on a million lines).
        days = "bounds (ends) AS (SELECT %s::timestamptz[])"
        params.append([connection.ops.adapt_datetimefield_value(end) for end in ends])

        def ends_through(instant: str) -> str:
            return f"width_bucket({instant}, (SELECT ends FROM bounds))"  # noqa: S608

        # Computed once per period, not once per reference to its columns below.
        materialized = "MATERIALIZED"
    else:
        days = f"days (d, at) AS (VALUES {', '.join(['(%s, %s)'] * len(ends))})"
        for d, end in enumerate(ends, start=1):
            params += [d, connection.ops.adapt_datetimefield_value(end)]

        def ends_through(instant: str) -> str:
            return f"(SELECT COUNT(*) FROM days WHERE days.at <= {instant})"  # noqa: S608

        materialized = ""
    # Only quoted identifiers and placeholders are formatted in; values are parameters.
    sql = f"""
        WITH {days},
        changed AS (
            SELECT DISTINCT line_id FROM {periods}
            WHERE partner_id = %s
              AND (({p_start} {after} %s AND {p_start} < %s)
                   OR ({p_end} {after} %s AND {p_end} < %s))
        ),
        overlapping AS (
            SELECT p.id, p.line_id, p.sub_account_id, p.{p_start}, p.{p_end},
                   SUM(CASE WHEN p.via_merge AND p.{p_start} > %s THEN 0 ELSE 1 END) OVER (
                       PARTITION BY p.line_id ORDER BY p.{p_start}, p.id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                   ) AS billed_run
            FROM {lines_periods}
        ),
        billed AS (
            SELECT line_id, {p_start}, {p_end},
                   FIRST_VALUE(sub_account_id) OVER (
                       PARTITION BY line_id, billed_run ORDER BY {p_start}, id
                   ) AS sub_account_id
            FROM overlapping
        ),
        spans AS {materialized} (
            SELECT p.line_id, p.sub_account_id,
                   CASE WHEN p.{p_start} <= %s THEN 0
                        ELSE {ends_through(f"p.{p_start}")} + 1
                   END AS first_day,
                   CASE WHEN p.{p_end} IS NULL THEN %s
                        ELSE {ends_through(f"p.{p_end}")}
                   END AS last_day
            FROM billed p
        ),
        held AS (
            SELECT line_id, sub_account_id, first_day, last_day,
                   LAG(sub_account_id) OVER (PARTITION BY line_id ORDER BY first_day)
                       AS prev_holder,
                   LAG(last_day) OVER (PARTITION BY line_id ORDER BY first_day) AS prev_last,
                   LEAD(first_day) OVER (PARTITION BY line_id ORDER BY first_day) AS next_first
            FROM spans
            WHERE first_day <= last_day
        ),
        changes AS (
            SELECT line_id, first_day AS day,
                   CASE WHEN prev_last = first_day - 1 THEN prev_holder END AS before_id,
                   sub_account_id AS after_id
            FROM held
            WHERE first_day > 0
              AND (prev_last IS NULL OR prev_last < first_day - 1
                   OR prev_holder <> sub_account_id)
            UNION ALL
            SELECT line_id, last_day + 1 AS day, sub_account_id AS before_id, NULL AS after_id
            FROM held
            WHERE last_day < %s AND (next_first IS NULL OR next_first > last_day + 1)
        )
    """  # noqa: S608
    lower = start if since is None else connection.ops.adapt_datetimefield_value(since)
    window = upper if changed_before is None else adapt(changed_before)
    params += [partner_id, lower, window, lower, window]  # changed
    params += [start, partner_id, upper, start]  # overlapping
    params += [start, last]  # spans
    params += [last]  # disconnections
    return sql, params
