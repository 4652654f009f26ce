"""Statements over many rows: ids in statement-sized pieces, and COPY on PostgreSQL.

:func:`chunks` cuts a list of ids into one statement's worth each; :func:`id_matches`
matches a column to a list of ids, as one array parameter on PostgreSQL (``= ANY(%s)``:
planned once and adapted at once, where an ``IN`` list of thousands of placeholders
costs more than the statement's work) and as chunks of placeholders elsewhere.

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

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db import connection

CHUNK = 5_000  # ids per statement: well under SQLite's bound-parameter limit


def chunks[T](ids: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    """``ids`` in slices of at most ``size``, one statement's worth each."""
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def id_matches(ids: Sequence[int]) -> list[tuple[str, list[Any]]]:
    """``(sql, params)`` pairs that together match a column to ``ids``, the sql to follow
    the column's name (``f"WHERE line_id {sql}"``): one array parameter on PostgreSQL,
    chunks of placeholders elsewhere. No pair at all for no ids."""
    if not ids:
        return []
    if connection.vendor == "postgresql":
        return [("= ANY(%s)", [list(ids)])]
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
