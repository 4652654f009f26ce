"""Statements over many rows: ids in statement-sized pieces, and COPY on PostgreSQL.

:func:`chunks` cuts a list of ids into one statement's worth each; :func:`id_matches`
matches a column to a list of ids, as one array parameter on PostgreSQL (``= ANY(…)``:
planned once and adapted at once, where an ``IN`` list of thousands of placeholders
costs more than the statement's work; the array travels as one text parameter,
:func:`pg_array`) and as chunks of placeholders elsewhere.

:func:`copy_binary` streams tuples with ``COPY … FROM STDIN (FORMAT BINARY)``: psycopg
dumps each value in C for its column's exact type, a few times faster than the text
format's ``write_row`` (10,000 message events: ~20 ms instead of ~75 ms). The binary
format takes each value as its column's type, so values must already be of that type's
Python kind: ``int`` for integer columns, ``str`` for text, aware ``datetime`` for
``timestamptz``, ``date``, ``bool``; a ``numeric`` column needs ``Decimal`` and a
``jsonb`` column a ``psycopg.types.json.Jsonb`` (a ``str`` would be stored as a JSON
string). Ingestion uses it; invoice items and bulk audit events still COPY as text.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db import connection

CHUNK = 5_000  # ids per statement: well under SQLite's bound-parameter limit


def chunks[T](ids: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    """``ids`` in slices of at most ``size``, one statement's worth each."""
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


# Array elements travel as one text parameter split in the database: psycopg quotes a
# string in C, where a list parameter is dumped element by element in Python (a tenth
# of a second for a batch's ten thousand ids). The unit separator is refused in event
# ids and cannot occur in the other values (numbers, hashes, ids, dates).
_SEPARATOR, _NULL = "\x1f", "\x1e"


def pg_array(sql_type: str, values: Sequence[Any]) -> tuple[str, str]:
    """SQL for a PostgreSQL array of ``sql_type`` and its one parameter."""

    def text(value: Any) -> str:
        if value is None:
            return _NULL
        if isinstance(value, bool):
            return "t" if value else "f"
        if isinstance(value, dt.date):  # datetimes too: ISO 8601 with the offset
            return value.isoformat()
        return str(value)

    # A column's values are nearly always all text or all integers (ids, counts): those
    # are joined without a call per value.
    kinds = set(map(type, values))
    if kinds == {str}:
        joined = _SEPARATOR.join(values)
    elif kinds == {int}:
        joined = _SEPARATOR.join(map(str, values))
    else:
        joined = _SEPARATOR.join(map(text, values))
    # (A lone empty string would split into no element: no value here is ever empty.)
    return f"string_to_array(%s, chr(31), chr(30))::{sql_type}[]", joined


def id_matches(ids: Sequence[int]) -> list[tuple[str, list[Any]]]:
    """``(sql, params)`` pairs that together match a column to ``ids``, the sql to follow
    the column's name (``f"WHERE line_id {sql}"``): one array parameter on PostgreSQL,
    chunks of placeholders elsewhere. No pair at all for no ids."""
    if not ids:
        return []
    if connection.vendor == "postgresql":
        array, param = pg_array("bigint", ids)
        return [(f"= ANY({array})", [param])]
    return [(f"IN ({', '.join(['%s'] * len(chunk))})", list(chunk)) for chunk in chunks(ids)]


def copy_binary[T](
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    meanwhile: Callable[[], T] | None = None,
) -> T | None:
    """COPY ``rows`` (tuples in ``columns`` order) into ``table`` in the binary format.

    ``meanwhile`` is called once every row is handed to the server and before waiting
    for the server to have written them (index entries and all, most of a COPY's time),
    so Python work that needs no database runs beside it on another core; its result is
    returned. If the COPY fails, its error is raised and the result is lost.
    """
    quote = connection.ops.quote_name
    names = ", ".join(quote(c) for c in columns)
    oids = _column_type_oids(table, tuple(columns))
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {quote(table)} ({names}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(oids)
        for row in rows:
            copy.write_row(row)
        return meanwhile() if meanwhile is not None else None


# A column's type, as the binary format needs it exactly (int4 is not int8). The
# built-in types' ids are the same in every database, so one look-up per table will do.
@functools.cache
def _column_type_oids(table: str, columns: tuple[str, ...]) -> tuple[int, ...]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname, atttypid FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [connection.ops.quote_name(table)],
        )
        types = dict(cursor.fetchall())
    return tuple(types[c] for c in columns)


def commit_without_flush_wait() -> None:
    """Let the current transaction's commit return before its WAL reaches disk
    (PostgreSQL's ``SET LOCAL synchronous_commit = off``; nothing elsewhere).

    For the batches of a resumable job only: a server crash can undo the last few
    commits (at most a fraction of a second's), never half of one, and a job that
    resumes from the database's state simply does them again. Any later commit that
    waits (the default) flushes the earlier ones with it, since the WAL is written in
    order. Saves a disk flush per batch (~10 ms each on a small VM).

    The commit is visible to other sessions at once, before it is durable: after a
    server crash within that fraction of a second, what they did with it (the webhooks
    dispatcher sending the batch's events) happens again for the redone batch, under
    new event ids but saying the same thing (these lines are now there)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
