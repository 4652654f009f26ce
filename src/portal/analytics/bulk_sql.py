"""Statements with many values, for analytics' set-based writes and look-ups.

On PostgreSQL a column's values go as one array parameter (``= ANY(…)``, ``unnest(…)``)
and plain tuples are COPYed; on SQLite the values go in chunks under its
bound-parameter limit and rows by one prepared ``executemany``. No model knowledge
beyond table and column names; used by ingestion and the rollups.

Internal (``core.tenancy``): callers pass ids they have scoped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db import connection, models
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL

from portal.core.bulk import copy_binary, pg_array

CHUNK = 2_000  # values per IN (...): well under SQLite's bound-parameter limit


def chunks(values: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    """``values`` in slices of at most ``size``."""
    for i in range(0, len(values), size):
        yield values[i : i + size]


def postgres() -> bool:
    """Whether the connection is PostgreSQL's (array parameters, COPY) or SQLite's."""
    return connection.vendor == "postgresql"


def value_chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    """``values`` whole on PostgreSQL (they go as one array parameter), in chunks on SQLite."""
    if not values:
        return []
    return [values] if postgres() else chunks(values)


def any_of(model: type[models.Model], field: str, values: Sequence[Any]) -> Q | RawSQL:
    """A filter: ``field`` equals one of ``values``.

    On PostgreSQL ``= ANY(array)`` with the array as one parameter: ten thousand
    placeholders cost more to build, send and parse than the index lookups themselves.
    """
    if postgres():
        column = f"{model._meta.db_table}.{connection.ops.quote_name(field)}"
        array, param = pg_array(sql_type(model, field), values)
        # The column and type come from model metadata; the values are one parameter.
        return RawSQL(f"{column} = ANY({array})", (param,), output_field=BooleanField())  # noqa: S611
    return Q(**{f"{field}__in": values})


def sql_type(model: type[models.Model], name: str) -> str:
    """The database type of the model's column ``name`` (for an array of its values)."""
    return model._meta.get_field(name).cast_db_type(connection)


def insert(
    model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert plain tuples: COPY on PostgreSQL, one prepared ``executemany`` on SQLite.

    Model instances and ``bulk_create`` cost more than the database does at ten
    thousand rows a request.
    """
    if not rows:
        return
    table = model._meta.db_table
    if postgres():
        copy_binary(table, columns, rows)
        return
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    adapt = sqlite_adapter()
    # Identifiers come from model metadata; values are parameters.
    sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(columns))})"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.executemany(sql, [tuple(adapt(v) for v in row) for row in rows])


def sqlite_adapter() -> Callable[[Any], Any]:
    """Values as Django stores them on SQLite: naive UTC text for datetimes, ISO dates."""

    def adapt(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")
        if isinstance(value, dt.date):
            return value.isoformat()
        return value

    return adapt
