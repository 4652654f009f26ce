"""Keeping analytics' rollups current: the line, sub-account (day, week, month) and
partner rows that every read sums.

- Differences: ingestion's changes per line-day are added to the line rollups, whose
  days are then judged against the limit the line had at each day's end
  (``analytics.pressure``), and the counts and flags that changed are added to the
  sub-account days, weeks, months and the partner's days, set-based (one upsert per
  table).
- Re-judging: a limit change or a merge judges the lines' days again from then on
  (:func:`line_days_rejudge`, in the caller's transaction), and a limit changed after
  the day in progress was counted corrects that count.
- Closing days: the periodic :func:`analytics_days_close` stores the capacity
  (active line-days, Σ limits, counted by :mod:`~portal.analytics.capacity`) of the
  days that ended, and of the day in progress so far.
- Repair: :func:`sub_account_buckets_rebuild` recomputes weeks, months and the
  partner's days from the sub-account days.

Derived data: logged, not audited.

Internal (``core.tenancy``): functions take a bare ``partner_id``; ingestion (lines
locked through ``visible_to``), the line services' signal and the periodic jobs
call them.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, models, transaction
from django.db.models import Q

from portal.analytics.bulk_sql import (
    any_of,
    chunks,
    pg_array,
    postgres,
    sql_type,
    sqlite_adapter,
    value_chunks,
)
from portal.analytics.capacity import line_days
from portal.analytics.models import (
    DailyLineRollup,
    DailyPartnerRollup,
    DailySubAccountRollup,
    Grain,
    PartnerAnalyticsState,
    SubAccountRollupBucket,
)
from portal.analytics.periods import ROLLUP_SUMS, local_midnight
from portal.analytics.pressure import Span, judge, limit_at_day_end, merge_heads
from portal.core import clock
from portal.lines.models import AssignmentPeriod, Line, LineLimitChange
from portal.partners.models import Partner

logger = logging.getLogger("portal.analytics")

# --- A line-day's differences (what ingestion adds) ---------------------------------------

LineDay = tuple[int, int, dt.date]  # (line, sub-account, day)
# The columns of a line rollup that add up into its sub-account's day.
_SUMMED = (
    "messages_sent",
    "messages_received",
    "new_conversations",
    "responded_conversations",
    "inbound_conversations",
    "near_limit_line_days",
    "over_pressured_line_days",
)
LINE_COUNTS = _SUMMED[:5]  # what a line rollup stores (its pressure follows from them)
SENT, RECEIVED, NEW, RESPONDED, INBOUND = range(5)


# --- Pressure: judging line-days ---------------------------------------------------------

_JUDGED = ("daily_limit", "near_limit_line_days", "over_pressured_line_days")
RowState = tuple[int, int | None, int, int]  # new conversations, daily limit, near, over


@dataclass
class LineFacts:
    """What judging a line's days needs beyond its rollups: its limit now and its
    assignment periods (the merges), by line id."""

    current: dict[int, int]
    spans: dict[int, list[Span]]


def _day_end_limits(
    partner_id: int,
    zone: zoneinfo.ZoneInfo,
    line_days: Iterable[tuple[int, dt.date]],
    current: dict[int, int],
) -> dict[tuple[int, dt.date], int]:
    """Each line-day's limit: the line's limit at the end of the day (its first change at
    or after the day's end says what it was; none: the limit it has now). One query,
    over the changes since the earliest day's end (usually none)."""
    wanted = set(line_days)
    if not wanted:
        return {}
    first_end = local_midnight(min(day for _, day in wanted) + dt.timedelta(days=1), zone)
    changes: dict[int, list[tuple[dt.datetime, int]]] = defaultdict(list)
    for chunk in value_chunks(sorted({line for line, _ in wanted})):
        rows = (
            LineLimitChange.objects.filter(partner_id=partner_id, at__gte=first_end)
            .filter(any_of(LineLimitChange, "line_id", chunk))
            .order_by("at", "pk")
            .values_list("line_id", "at", "old_limit")
        )
        for line_id, at, old_limit in rows:
            changes[line_id].append((at, old_limit))
    return {
        (line, day): limit_at_day_end(
            changes.get(line, ()), current[line], local_midnight(day + dt.timedelta(days=1), zone)
        )
        for line, day in wanted
    }


def _merge_heads_by_line_day(
    zone: zoneinfo.ZoneInfo, line_days: Iterable[tuple[int, dt.date]], spans: dict[int, list[Span]]
) -> dict[tuple[int, dt.date], dict[int, int]]:
    """The line-days on which a merge moved the line: sub-account -> the one it joins."""
    heads = {}
    for line, day in line_days:
        line_spans = spans.get(line, ())
        if not any(s.via_merge for s in line_spans):
            continue
        found = merge_heads(
            line_spans, local_midnight(day, zone), local_midnight(day + dt.timedelta(days=1), zone)
        )
        if found:
            heads[(line, day)] = found
    return heads


def _judge_and_write(
    partner_id: int,
    states: dict[LineDay, RowState],
    limits: dict[tuple[int, dt.date], int],
    heads: dict[tuple[int, dt.date], dict[int, int]],
) -> dict[tuple[int, dt.date], dict[str, int]]:
    """Judge every line-day of ``states`` (all of its stored rows) against its limit
    (``analytics.pressure.judge``), store the rows whose limit or flags change (one
    upsert: a merge's target row may be new) and return the flags' differences per
    (sub-account, day), to add to the rollups above."""
    by_line_day: dict[tuple[int, dt.date], dict[int, int]] = defaultdict(dict)
    for (line, sub_account, day), (new, *_) in states.items():
        by_line_day[(line, day)][sub_account] = new
    writes: dict[tuple, Sequence[int]] = {}
    sub_deltas: dict[tuple[int, dt.date], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(_SUMMED, 0)
    )
    for (line, day), rows in by_line_day.items():
        for sub_account, judged in judge(
            rows, limits[(line, day)], heads.get((line, day), {})
        ).items():
            stored = states.get((line, sub_account, day))
            if stored is None and not (judged.near or judged.over):
                continue  # a merge's target with nothing to carry: no row
            _, limit, near, over = stored or (0, None, 0, 0)
            if (limit, near, over) == judged:
                continue
            writes[(line, sub_account, day)] = judged
            if (near, over) != judged[1:]:
                total = sub_deltas[(sub_account, day)]
                total["near_limit_line_days"] += judged.near - near
                total["over_pressured_line_days"] += judged.over - over
    _upsert(
        DailyLineRollup,
        partner_id,
        ("line_id", "sub_account_id", "day"),
        writes,
        _JUDGED,
        added=(),
        kept=(),
    )
    return sub_deltas


def add_to_line_days(
    partner_id: int,
    deltas: dict[LineDay, list[int]],
    zone: zoneinfo.ZoneInfo,
    facts: LineFacts,
) -> dict[tuple[int, dt.date], dict[str, int]]:
    """Add the differences to the line rollups, then judge the line-days they touched
    (against the limit at each day's end); returns what changed per (sub-account, day),
    pressure included.

    The upserts return each row's counts and flags after the addition, so judging needs
    no read of the rows but on the day of a merge (the line-day's other rows). No
    difference can empty a row: a conversation that starts on a line's day is one of
    the messages of that day, and messages are never taken away.
    """
    sub_deltas: dict[tuple[int, dt.date], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(_SUMMED, 0)
    )
    if not deltas:
        return sub_deltas
    line_days = {(line, day) for line, _, day in deltas}
    limits = _day_end_limits(partner_id, zone, line_days, facts.current)
    keys = ("line_id", "sub_account_id", "day")
    returning = (*keys, "new_conversations", *_JUDGED)
    fresh: dict[tuple, Sequence[int]] = {}
    taken: dict[tuple, Sequence[int]] = {}
    for key, delta in deltas.items():
        if min(delta) >= 0 and delta[RESPONDED] <= delta[NEW]:
            fresh[key] = (limits[(key[0], key[2])], *delta)
        else:
            # Would break the row checks as a row of its own (CHECK constraints are tested
            # before a conflict turns an insert into an update): only ever a row that is
            # there, as taking away needs something to take from.
            taken[key] = delta
    returned = _upsert(
        DailyLineRollup,
        partner_id,
        keys,
        fresh,
        ("daily_limit", *LINE_COUNTS),
        added=LINE_COUNTS,
        returning=returning,
        kept=("daily_limit",),
    )
    returned += _add_to_stored(DailyLineRollup, partner_id, keys, taken, LINE_COUNTS, returning)
    states: dict[LineDay, RowState] = {}
    for line_id, sub_account_id, day, *state in returned:
        states[(line_id, sub_account_id, _as_date(day))] = tuple(state)  # type: ignore[assignment]
    heads = _merge_heads_by_line_day(zone, line_days, facts.spans)
    if heads:  # a merge day: the line-day's rows the batch did not touch are judged too
        states = {**_stored_states(partner_id, heads), **states}
    for (_, sub_account_id, day), delta in deltas.items():
        total = sub_deltas[(sub_account_id, day)]
        for i, name in enumerate(LINE_COUNTS):
            total[name] += delta[i]
    for key, flags in _judge_and_write(partner_id, states, limits, heads).items():
        total = sub_deltas[key]
        for name, value in flags.items():
            total[name] += value
    return {key: delta for key, delta in sub_deltas.items() if any(delta.values())}


def _as_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def _stored_states(
    partner_id: int, line_days: Iterable[tuple[int, dt.date]]
) -> dict[LineDay, RowState]:
    """The stored rows of the given line-days, as :data:`RowState` by (line, sub-account, day)."""
    wanted = set(line_days)
    states: dict[LineDay, RowState] = {}
    for chunk in value_chunks(sorted({line for line, _ in wanted})):
        rows = (
            DailyLineRollup.objects.filter(
                partner_id=partner_id, day__in=sorted({day for _, day in wanted})
            )
            .filter(any_of(DailyLineRollup, "line_id", chunk))
            .values_list("line_id", "sub_account_id", "day", "new_conversations", *_JUDGED)
        )
        for line, sub_account, day, *state in rows:
            if (line, day) in wanted:
                states[(line, sub_account, day)] = tuple(state)  # type: ignore[assignment]
    return states


def line_days_rejudge(*, partner_id: int, line_ids: Sequence[int], since: dt.datetime) -> int:
    """Judge again the lines' days from the one holding ``since`` on: after a limit change
    or a merge at ``since`` (the line-days it can change: the limit at their end, or
    which rows make one line-day). Runs in the caller's transaction, the lines locked
    by it; derived data, not audited. Returns the number of (sub-account, day) pairs
    whose pressure flags it judged."""
    partner = Partner.objects.get(pk=partner_id)
    zone = zoneinfo.ZoneInfo(partner.timezone)
    first_day = since.astimezone(zone).date()
    ids = sorted(set(line_ids))
    states: dict[LineDay, RowState] = {}
    for chunk in value_chunks(ids):
        rows = (
            DailyLineRollup.objects.filter(partner_id=partner_id, day__gte=first_day)
            .filter(any_of(DailyLineRollup, "line_id", chunk))
            .values_list("line_id", "sub_account_id", "day", "new_conversations", *_JUDGED)
        )
        for line, sub_account, day, *state in rows:
            states[(line, sub_account, day)] = tuple(state)  # type: ignore[assignment]
    counted = _counted_day(partner_id, zone, since)
    differences = _limit_differences(partner_id, ids, since) if counted else {}
    if not states and not differences:
        return 0  # no day of theirs stored since, nor a count to correct: nothing to judge
    current: dict[int, int] = {}
    spans: dict[int, list[Span]] = defaultdict(list)
    midnight = local_midnight(first_day, zone)
    for chunk in value_chunks(ids):
        current.update(
            Line.objects.filter(partner_id=partner_id)
            .filter(any_of(Line, "id", chunk))
            .values_list("pk", "daily_limit")
        )
        periods = (
            AssignmentPeriod.objects.filter(partner_id=partner_id)
            .filter(Q(end__isnull=True) | Q(end__gt=midnight))
            .filter(any_of(AssignmentPeriod, "line_id", chunk))
            .values_list("line_id", "sub_account_id", "start", "end", "via_merge")
        )
        for line, *span in periods:
            spans[line].append(Span(*span))
    if counted and differences:
        _counted_capacity_follows_limits(partner_id, zone, counted, differences, spans)
    if not states:
        return 0
    line_days = {(line, day) for line, _, day in states}
    limits = _day_end_limits(partner_id, zone, line_days, current)
    heads = _merge_heads_by_line_day(zone, line_days, spans)
    flags = _judge_and_write(partner_id, states, limits, heads)
    add_to_sub_account_days(
        partner_id, {key: delta for key, delta in flags.items() if any(delta.values())}
    )
    return len(flags)


def _counted_day(
    partner_id: int, zone: zoneinfo.ZoneInfo, at: dt.datetime
) -> tuple[dt.date, dt.datetime] | None:
    """The day in progress and when the job counted its capacity, if that count was made
    before ``at`` on ``at``'s day (a change at ``at`` may have to correct it); else None."""
    state = (
        PartnerAnalyticsState.objects.filter(partner_id=partner_id)
        .values_list("capacity_day", "capacity_at")
        .first()
    )
    if not state or state[1] is None or at <= state[1] or at.astimezone(zone).date() != state[0]:
        return None
    return state


def _limit_differences(partner_id: int, line_ids: Sequence[int], at: dt.datetime) -> dict[int, int]:
    """The lines' limit changes made at ``at``: new limit minus old, by line."""
    differences: dict[int, int] = {}
    for chunk in value_chunks(sorted(line_ids)):
        changes = LineLimitChange.objects.filter(partner_id=partner_id, at=at).filter(
            any_of(LineLimitChange, "line_id", chunk)
        )
        for line, old, new in changes.values_list("line_id", "old_limit", "new_limit"):
            differences[line] = new - old
    return differences


def _counted_capacity_follows_limits(
    partner_id: int,
    zone: zoneinfo.ZoneInfo,
    counted: tuple[dt.date, dt.datetime],
    differences: dict[int, int],
    spans: dict[int, list[Span]],
) -> None:
    """Limits that changed (``differences``, :func:`_limit_differences`) after the job
    counted the day in progress (``counted``: that day and when, :func:`_counted_day`):
    the count holds each line's old limit for every sub-account that held the line by
    then, so the difference is added to those sub-account days (and their weeks, months
    and partner day). Reads add only the line-days gained since the count, with the
    limits of now, so the day's Σ limits are the limits now at any time, not at the
    job's next run."""
    day, counted_at = counted
    day_start = local_midnight(day, zone)
    held: dict[tuple[int, dt.date], dict[str, int]] = {}
    for line, difference in differences.items():
        for sub_account_id in _holders_at_count(spans.get(line, ()), day_start, counted_at):
            row = held.setdefault((sub_account_id, day), dict.fromkeys(_CAPACITY, 0))
            row["limit_line_days"] += difference
    add_to_sub_account_days(partner_id, held, columns=_CAPACITY)


def _holders_at_count(
    spans: Sequence[Span], day_start: dt.datetime, counted_at: dt.datetime
) -> set[int]:
    """The sub-accounts whose count of the day starting ``day_start`` (made at
    ``counted_at``) included the line: every holder of it that day up to the count, but
    not one the line left by a merge before the count (counted in the target)."""
    ordered = sorted(spans, key=lambda s: s.start)
    holders = set()
    for span, after in zip(ordered, [*ordered[1:], None], strict=True):
        if span.start > counted_at or span.end == span.start:
            continue
        if span.end is not None and span.end <= day_start:
            continue
        left_by_merge = (
            after is not None
            and after.via_merge
            and after.start == span.end
            and span.end is not None
            and span.end <= counted_at
        )
        if not left_by_merge:
            holders.add(span.sub_account_id)
    return holders


# --- Writing rollup rows ------------------------------------------------------------------


def _upsert(
    model: type[models.Model],
    partner_id: int,
    keys: Sequence[str],
    rows: dict[tuple, Sequence[int]],
    columns: Sequence[str],
    *,
    added: Sequence[str],
    returning: Sequence[str] = (),
    kept: Sequence[str] = (),
) -> list[tuple]:
    """``INSERT … ON CONFLICT DO UPDATE`` of rollup rows in one statement (on SQLite one
    per chunk), in key order so concurrent writers lock rows in the same order.

    ``rows`` maps the values of ``keys`` (after ``partner_id``) to the values of
    ``columns``. On a clash the ``added`` columns are added to the stored ones
    (ingestion's differences commute, so two batches for different lines of one
    sub-account cannot overwrite each other) and the other columns replaced, except the
    ``kept`` ones, which a stored row keeps. Columns of the table not named start at zero.
    Returns the ``returning`` columns of every row written.
    """
    if not rows:
        return []
    table = model._meta.db_table
    quote = connection.ops.quote_name
    names = ["partner_id", *keys, *columns]
    updates = [
        f"{quote(c)} = {table}.{quote(c)} + EXCLUDED.{quote(c)}"
        if c in added
        else f"{quote(c)} = EXCLUDED.{quote(c)}"
        for c in columns
        if c not in kept
    ]
    conflict = ", ".join(quote(n) for n in ["partner_id", *keys])
    tail = f" ON CONFLICT ({conflict}) DO UPDATE SET {', '.join(updates)}"
    if returning:
        tail += " RETURNING " + ", ".join(quote(c) for c in returning)
    # Columns a statement does not name start at zero.
    defaults = [name for name in ROLLUP_SUMS if name not in columns and _has_field(model, name)]
    all_names = ", ".join(quote(n) for n in [*names, *defaults])
    zeros = ["0"] * len(defaults)
    values = [(partner_id, *key, *row) for key, row in sorted(rows.items())]
    result: list[tuple] = []
    with connection.cursor() as cursor:
        if postgres():
            arrays = [
                pg_array(sql_type(model, n), column)
                for n, column in zip(names, zip(*values, strict=True), strict=True)
            ]
            # Identifiers come from model metadata; values are array parameters.
            cursor.execute(
                f"INSERT INTO {table} ({all_names}) "  # noqa: S608
                f"SELECT u.*{''.join(', ' + z for z in zeros)} "
                f"FROM unnest({', '.join(sql for sql, _ in arrays)}) AS u" + tail,
                [param for _, param in arrays],
            )
            return cursor.fetchall() if returning else []
        placeholder = "(" + ", ".join(["%s"] * len(names) + zeros) + ")"
        adapt = sqlite_adapter()
        for chunk in chunks(values, max(1, 30_000 // len(names) // 2)):
            cursor.execute(  # identifiers from model metadata; values are parameters
                f"INSERT INTO {table} ({all_names}) VALUES "  # noqa: S608
                + ", ".join([placeholder] * len(chunk))
                + tail,
                [adapt(v) for row in chunk for v in row],
            )
            if returning:
                result.extend(cursor.fetchall())
    return result


def _add_to_stored(
    model: type[models.Model],
    partner_id: int,
    keys: Sequence[str],
    rows: dict[tuple, Sequence[int]],
    columns: Sequence[str],
    returning: Sequence[str],
) -> list[tuple]:
    """``UPDATE … FROM`` adding ``rows`` (values of ``columns`` by the values of ``keys``)
    to rows that must already be stored; returns their ``returning`` columns."""
    if not rows:
        return []
    table = model._meta.db_table
    quote = connection.ops.quote_name
    names = [*keys, *columns]
    values = [(*key, *row) for key, row in sorted(rows.items())]
    if postgres():
        arrays = [
            pg_array(sql_type(model, n), column)
            for n, column in zip(names, zip(*values, strict=True), strict=True)
        ]
        source = f"SELECT * FROM unnest({', '.join(sql for sql, _ in arrays)})"  # noqa: S608
        params: list[Any] = [param for _, param in arrays]
    else:
        adapt = sqlite_adapter()
        row_sql = "(" + ", ".join(["%s"] * len(names)) + ")"
        source = "VALUES " + ", ".join([row_sql] * len(values))
        params = [adapt(v) for row in values for v in row]
    sets = ", ".join(f"{quote(c)} = {table}.{quote(c)} + d.{quote(c)}" for c in columns)
    matches = " AND ".join(f"{table}.{quote(k)} = d.{quote(k)}" for k in keys)
    # Identifiers come from model metadata; values are parameters.
    sql = (
        f"WITH d ({', '.join(quote(n) for n in names)}) AS ({source}) "  # noqa: S608
        f"UPDATE {table} SET {sets} FROM d WHERE {table}.partner_id = %s AND {matches} "
        f"RETURNING {', '.join(f'{table}.{quote(c)}' for c in returning)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, partner_id])
        result = cursor.fetchall()
    if len(result) != len(rows):
        raise RuntimeError(f"{table}: {len(rows) - len(result)} row(s) to take from are missing")
    return result


def _has_field(model: type[models.Model], name: str) -> bool:
    return any(f.name == name for f in model._meta.concrete_fields)


def bucket_starts(day: dt.date) -> dict[str, dt.date]:
    """The week (from Monday) and the month ``day`` falls in."""
    return {
        Grain.WEEK: day - dt.timedelta(days=day.weekday()),
        Grain.MONTH: day.replace(day=1),
    }


def _in_buckets(
    rows: dict[tuple[int, dt.date], dict[str, int]], columns: Sequence[str]
) -> dict[tuple[int, str, dt.date], list[int]]:
    buckets: dict[tuple[int, str, dt.date], list[int]] = defaultdict(lambda: [0] * len(columns))
    for (sub_account_id, day), values in rows.items():
        for grain, start in bucket_starts(day).items():
            total = buckets[(sub_account_id, grain, start)]
            for i, name in enumerate(columns):
                total[i] += values[name]
    return buckets


def _by_day(
    rows: dict[tuple[int, dt.date], dict[str, int]], columns: Sequence[str]
) -> dict[tuple[dt.date], list[int]]:
    """Sub-account days summed per day: the partner's rows."""
    days: dict[tuple[dt.date], list[int]] = defaultdict(lambda: [0] * len(columns))
    for (_, day), values in rows.items():
        total = days[(day,)]
        for i, name in enumerate(columns):
            total[i] += values[name]
    return days


def add_to_sub_account_days(
    partner_id: int,
    deltas: dict[tuple[int, dt.date], dict[str, int]],
    *,
    columns: Sequence[str] = _SUMMED,
) -> None:
    """Add differences (ingestion's, or a limit's to a counted day's capacity) to the
    sub-accounts' days, weeks and months, and to the partner's days, in that order."""
    if not deltas:
        return
    _upsert(
        DailySubAccountRollup,
        partner_id,
        ("sub_account_id", "day"),
        {key: [delta[c] for c in columns] for key, delta in deltas.items()},
        columns,
        added=columns,
    )
    _upsert(
        SubAccountRollupBucket,
        partner_id,
        ("sub_account_id", "grain", "start"),
        _in_buckets(deltas, columns),
        columns,
        added=columns,
    )
    _upsert(
        DailyPartnerRollup, partner_id, ("day",), _by_day(deltas, columns), columns, added=columns
    )


def sub_account_buckets_rebuild(*, partner_id: int) -> int:
    """Recompute a partner's week and month buckets and its own days from its sub-accounts'
    days (repair, data loads).

    Derived data: logged, not audited. Returns the number of bucket rows written.
    """
    with transaction.atomic():
        SubAccountRollupBucket.objects.filter(partner_id=partner_id).delete()
        DailyPartnerRollup.objects.filter(partner_id=partner_id).delete()
        days = {}
        for row in DailySubAccountRollup.objects.filter(partner_id=partner_id).values():
            days[(row["sub_account_id"], row["day"])] = row
        buckets = _in_buckets(days, ROLLUP_SUMS)
        keys = ("sub_account_id", "grain", "start")
        _upsert(SubAccountRollupBucket, partner_id, keys, buckets, ROLLUP_SUMS, added=())
        partner_days = _by_day(days, ROLLUP_SUMS)
        _upsert(DailyPartnerRollup, partner_id, ("day",), partner_days, ROLLUP_SUMS, added=())
    logger.info("analytics: rebuilt %d bucket(s) of partner %s", len(buckets), partner_id)
    return len(buckets)


# --- Closing days (a periodic job) ---------------------------------------------------------

CLOSE_DAYS_PER_STATEMENT = 7


def locked_state(partner_id: int) -> PartnerAnalyticsState:
    """The partner's analytics state row, locked (created on first use)."""
    PartnerAnalyticsState.objects.get_or_create(partner_id=partner_id)
    return PartnerAnalyticsState.objects.select_for_update().get(partner_id=partner_id)


def analytics_days_close(*, partner_id: int) -> int:
    """Store the capacity (line-days, Σ limits) of the partner's ended days not stored yet,
    then the capacity of the day in progress so far.

    Backfills from the partner's first line if no day was closed yet. A day is
    closed once: the capacity columns are replaced by :func:`capacity.line_days`
    (each line's limit at the end of the day, from its history, so a day closed late
    counts as one closed on time), in one statement per few days,
    each batch in a transaction that also moves ``days_closed_through``, so a rerun
    resumes. The day in progress is counted the same way and stamped in the state
    (``capacity_day``, ``capacity_at``): reads then add only the lines that arrived
    since, instead of counting a partner's lines on every request. Derived data:
    logged, not audited. Returns the number of days closed.
    """
    partner = Partner.objects.get(pk=partner_id)
    zone = zoneinfo.ZoneInfo(partner.timezone)
    now = clock.now()
    today = now.astimezone(zone).date()
    yesterday = today - dt.timedelta(days=1)
    closed = 0
    while True:
        with transaction.atomic():
            state = locked_state(partner_id)
            first = (
                state.days_closed_through + dt.timedelta(days=1)
                if state.days_closed_through
                else _first_day(partner_id, zone)
            )
            if first is None or first > yesterday:
                break
            last = min(yesterday, first + dt.timedelta(days=CLOSE_DAYS_PER_STATEMENT - 1))
            days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
            _store_capacity(partner_id, zone, days)
            state.days_closed_through = last
            state.save(update_fields=["days_closed_through"])
            closed += len(days)
    with transaction.atomic():
        state = locked_state(partner_id)
        if state.days_closed_through is not None or _first_day(partner_id, zone) is not None:
            _store_capacity(partner_id, zone, [today])
            state.capacity_day, state.capacity_at = today, now
            state.save(update_fields=["capacity_day", "capacity_at"])
    if closed:
        logger.info("analytics: closed %d day(s) of partner %s", closed, partner_id)
    return closed


_CAPACITY = ("active_line_days", "limit_line_days")


def _store_capacity(partner_id: int, zone: zoneinfo.ZoneInfo, days: list[dt.date]) -> None:
    """Set the capacity of ``days`` to :func:`capacity.line_days` counted now, on the
    sub-account days and the partner's days, and add what changed to weeks and months
    (a day counted before, in progress, changes by the lines and limits since)."""
    counted = line_days(partner_id=partner_id, zone=zone, days=days)
    stored = DailySubAccountRollup.objects.filter(partner_id=partner_id, day__in=days).filter(
        Q(active_line_days__gt=0) | Q(limit_line_days__gt=0)
    )
    before = {
        (sub_account_id, day): (lines, limits)
        for sub_account_id, day, lines, limits in stored.values_list(
            "sub_account_id", "day", *_CAPACITY
        )
    }
    rows: dict[tuple[int, dt.date], dict[str, int]] = {}
    changes: dict[tuple[int, dt.date], dict[str, int]] = {}
    for key in set(counted) | set(before):
        lines, limits = counted.get(key, (0, 0))
        old_lines, old_limits = before.get(key, (0, 0))
        rows[key] = {"active_line_days": lines, "limit_line_days": limits}
        if (lines, limits) != (old_lines, old_limits):
            changes[key] = {
                "active_line_days": lines - old_lines,
                "limit_line_days": limits - old_limits,
            }
    day_rows = {key: [row[c] for c in _CAPACITY] for key, row in rows.items()}
    _upsert(
        DailySubAccountRollup, partner_id, ("sub_account_id", "day"), day_rows, _CAPACITY, added=()
    )
    partner_days = _by_day(rows, _CAPACITY)
    _upsert(DailyPartnerRollup, partner_id, ("day",), partner_days, _CAPACITY, added=())
    keys = ("sub_account_id", "grain", "start")
    buckets = _in_buckets(changes, _CAPACITY)
    _upsert(SubAccountRollupBucket, partner_id, keys, buckets, _CAPACITY, added=_CAPACITY)


def _first_day(partner_id: int, zone: zoneinfo.ZoneInfo) -> dt.date | None:
    first = (
        AssignmentPeriod.objects.filter(partner_id=partner_id)
        .order_by("start")
        .values_list("start", flat=True)
        .first()
    )
    return first.astimezone(zone).date() if first else None


def analytics_days_close_all() -> int:
    """:func:`analytics_days_close` for every partner that has lines."""
    partner_ids = AssignmentPeriod.objects.values_list("partner_id", flat=True).distinct()
    return sum(analytics_days_close(partner_id=pk) for pk in sorted(set(partner_ids)))
