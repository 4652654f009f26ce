"""How lines change hands: the one relocation every move of a line goes through.

A single move, a bulk move, an assignment from Available, a disconnection, a deletion's
disposal of its lines and every merge batch call :func:`lines_relocate`; nothing else
closes or opens assignment periods of existing lines, repoints them or keeps
``SubAccount.line_count``. It runs inside the caller's transaction, after the caller
has locked what it touches in the order of docs/architecture.md ("Locks": the lines
in id order, then the sub-accounts in id order) and checked what its operation
requires (stale views, the sub-accounts' locks, the target's kind): the relocation
itself checks nothing.

At one instant ``at`` (now, but never before the start of an open period it closes,
so a period never ends before it began) it closes the lines' open periods, opens one
in the target per line (``via_merge`` for a merge's, which billing does not prorate),
points the lines at the target (or disconnects them), keeps the sub-accounts' line
counts, and clears the lines that arrived in the Available pool (``lines.available``).
Each step is one statement over all the lines: on PostgreSQL the ids go as one array
parameter (``core.bulk.id_matches``), elsewhere in chunks of placeholders; with an
``action`` it records one audit event per line, COPYed on PostgreSQL
(``audit_record_bulk``).

Internal (``core.tenancy``): it takes a bare ``partner_id``; its callers found the lines
and the target through ``visible_to(principal)``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection

from portal.audit.services import Change, audit_record_bulk
from portal.core import clock
from portal.core.bulk import id_matches
from portal.core.principal import Principal
from portal.lines.available import lines_release_in_available
from portal.lines.models import AssignmentPeriod, Line, LineStatus
from portal.partners.models import SubAccount, SubAccountKind

# A line on the move: (line id, the sub-account it leaves, its number).
MovingLine = tuple[int, int, str]

# Per line that dropped details in Available: (before, after) for its audit event.
Released = Mapping[int, tuple[dict[str, Any], dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Relocation:
    """What :func:`lines_relocate` did: when, how many lines, and what each line that
    arrived in Available dropped (``{line id: (before, after)}``)."""

    at: dt.datetime
    moved: int
    released: Released


def lines_relocate(
    *,
    principal: Principal,
    partner_id: int,
    lines: Sequence[MovingLine],
    target: SubAccount | None,
    action: str | None = None,
    via_merge: bool = False,
    data: Mapping[str, Any] | None = None,
) -> Relocation:
    """Move the partner's ``lines`` into ``target`` (None: disconnect them), set-based.

    Internal to the line and workflow services: the caller has locked the lines (id
    order) and the sub-accounts they leave and enter (id order), and made every check
    its operation needs. With ``action`` one audit event per line records the move
    (``before``/``after`` sub-account, what it dropped in Available, and ``data``);
    without, the caller records its own event at ``Relocation.at``.
    """
    if not lines:
        return Relocation(at=clock.now(), moved=0, released={})
    ids = sorted(pk for pk, _, _ in lines)
    target_id = target.pk if target is not None else None
    at = _change_at(ids)
    _move_rows(partner_id=partner_id, ids=ids, target_id=target_id, at=at, via_merge=via_merge)
    _keep_counts(Counter(source_id for _, source_id, _ in lines), target_id)
    released: Released = {}
    if target is not None and target.kind == SubAccountKind.AVAILABLE:
        released = lines_release_in_available(partner_id=partner_id, line_ids=ids, at=at)
    if action is not None:
        _record(
            principal=principal,
            partner_id=partner_id,
            lines=lines,
            target_id=target_id,
            action=action,
            at=at,
            released=released,
            data=data or {},
        )
    return Relocation(at=at, moved=len(lines), released=released)


def _change_at(ids: Sequence[int]) -> dt.datetime:
    """Now, but never before the start of any open period being closed."""
    qn = connection.ops.quote_name
    periods = qn(AssignmentPeriod._meta.db_table)
    latest: dt.datetime | None = None
    with connection.cursor() as cursor:
        for match, params in id_matches(ids):
            # Only quoted identifiers and placeholders are formatted in (S608).
            cursor.execute(
                f"SELECT MAX({qn('start')}) FROM {periods} "  # noqa: S608
                f"WHERE {qn('end')} IS NULL AND line_id {match}",
                params,
            )
            found = cursor.fetchone()[0]
            if found is not None:
                found = _as_datetime(found)
                latest = found if latest is None else max(latest, found)
    at = clock.now()
    return max(at, latest) if latest is not None else at


def _move_rows(
    *, partner_id: int, ids: Sequence[int], target_id: int | None, at: dt.datetime, via_merge: bool
) -> None:
    """Close the open periods, open the target's, point the lines at it (or disconnect)."""
    qn = connection.ops.quote_name
    periods, line_table = qn(AssignmentPeriod._meta.db_table), qn(Line._meta.db_table)
    start, end = qn("start"), qn("end")
    when = connection.ops.adapt_datetimefield_value(at)
    with connection.cursor() as cursor:
        for match, params in id_matches(ids):
            # Only quoted identifiers and placeholders are formatted in (S608).
            cursor.execute(
                f"UPDATE {periods} SET {end} = %s "  # noqa: S608
                f"WHERE {end} IS NULL AND line_id {match}",
                [when, *params],
            )
            if target_id is None:
                cursor.execute(
                    f"UPDATE {line_table} SET sub_account_id = NULL, status = %s, "  # noqa: S608
                    f"disconnected_at = %s WHERE id {match}",
                    [LineStatus.DISCONNECTED.value, when, *params],
                )
                continue
            cursor.execute(
                f"INSERT INTO {periods} "  # noqa: S608
                f"(partner_id, line_id, sub_account_id, {start}, {end}, via_merge) "
                f"SELECT partner_id, id, %s, %s, NULL, %s FROM {line_table} "
                f"WHERE partner_id = %s AND id {match}",
                [target_id, when, via_merge, partner_id, *params],
            )
            cursor.execute(
                f"UPDATE {line_table} SET sub_account_id = %s WHERE id {match}",  # noqa: S608
                [target_id, *params],
            )


def _keep_counts(leaving: Counter[int], target_id: int | None) -> None:
    """Each source loses the lines that left it; the target gains them all.

    One UPDATE per distinct number of lines leaving (a few), not one per source: 10,000
    lines picked across a partner come from thousands of sub-accounts. The rows are
    locked already (by the caller), so the order of the statements does not matter.
    """
    qn = connection.ops.quote_name
    table = qn(SubAccount._meta.db_table)
    by_count: dict[int, list[int]] = defaultdict(list)
    for source_id, count in leaving.items():
        by_count[count].append(source_id)
    with connection.cursor() as cursor:
        for count, source_ids in sorted(by_count.items()):
            for match, params in id_matches(sorted(source_ids)):
                cursor.execute(
                    f"UPDATE {table} SET line_count = line_count - %s WHERE id {match}",  # noqa: S608
                    [count, *params],
                )
        if target_id is not None:
            cursor.execute(
                f"UPDATE {table} SET line_count = line_count + %s WHERE id = %s",  # noqa: S608
                [leaving.total(), target_id],
            )


def _record(
    *,
    principal: Principal,
    partner_id: int,
    lines: Sequence[MovingLine],
    target_id: int | None,
    action: str,
    at: dt.datetime,
    released: Released,
    data: Mapping[str, Any],
) -> None:
    """One ``action`` event per line: where it was and went, what it dropped, ``data``."""
    after: dict[str, Any] = (
        {"sub_account_id": target_id}
        if target_id is not None
        else {"status": LineStatus.DISCONNECTED, "sub_account_id": None}
    )
    audit_record_bulk(
        principal=principal,
        partner_id=partner_id,
        action=action,
        at=at,
        changes=(
            Change(
                "line",
                pk,
                {**_move_data(number, source_id, after, released.get(pk)), **data},
                sub_account_id=source_id,
                other_sub_account_id=target_id,
                line_id=pk,
            )
            for pk, source_id, number in lines
        ),
    )


def _move_data(
    number: str,
    source_id: int,
    after: Mapping[str, Any],
    released: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A moved line's audit data: where it was and went, and what it dropped in Available."""
    dropped, reset = released or ({}, {})
    return {
        "number": number,
        "before": {"sub_account_id": source_id, **dropped},
        "after": {**after, **reset},
    }


def _as_datetime(value: Any) -> dt.datetime:
    """A datetime read by a raw query: aware on PostgreSQL, text or naive UTC on SQLite."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value
