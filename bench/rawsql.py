"""The raw-SQL baseline for moving lines: the least SQL that does what a move must.

Used by the web suite (moving one line, bulk moves) and the merge suite: the same
steps as the portal's services, set-based, one statement each whatever the number of
lines: lock the lines and the sub-accounts, close the open periods and open new ones,
write one audit row per line, adjust both line counts, move the lines; a merge also
reads the lines' analytics rows from the merge day on, which it must judge again (the
bench's history has none then, so neither side writes any).
"""

from __future__ import annotations

from django.db import connection, transaction

from portal.analytics.models import DailyLineRollup
from portal.audit.models import AuditEvent
from portal.core import clock
from portal.lines.models import AssignmentPeriod, Line
from portal.partners.models import SubAccount

TABLES = {
    "line": Line._meta.db_table,
    "period": AssignmentPeriod._meta.db_table,
    "sub": SubAccount._meta.db_table,
    "audit": AuditEvent._meta.db_table,
    "rollup": DailyLineRollup._meta.db_table,
}
_AUDIT_COLUMNS = (
    "partner_id, at, actor_type, actor_id, actor_label, action, object_type, object_id, "
    "sub_account_id, other_sub_account_id, line_id, data, request_id, ip"
)


def raw_move(
    *,
    partner_id: int,
    line_ids: list[int],
    target_id: int,
    actor_id: int,
    via_merge: bool = False,
) -> None:
    """Move ``line_ids`` into ``target_id`` in one transaction (a merge with ``via_merge``)."""
    t = TABLES
    at = clock.now()
    action = "line.merge" if via_merge else "line.move"
    # Only quoted table names are formatted into the statements (noqa: S608 below).
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, sub_account_id FROM {t['line']} WHERE id = ANY(%s) AND partner_id = %s "  # noqa: S608
            "AND status = 'active' ORDER BY id FOR UPDATE",
            [line_ids, partner_id],
        )
        sources = {sub for _, sub in cursor.fetchall()}
        cursor.execute(
            f"SELECT id FROM {t['sub']} WHERE id = ANY(%s) ORDER BY id FOR UPDATE",  # noqa: S608
            [sorted(sources | {target_id})],
        )
        cursor.execute(
            f'UPDATE {t["period"]} SET "end" = %s WHERE line_id = ANY(%s) AND "end" IS NULL',  # noqa: S608
            [at, line_ids],
        )
        cursor.execute(
            f'INSERT INTO {t["period"]} (partner_id, line_id, sub_account_id, start, "end", '  # noqa: S608
            f"via_merge) SELECT partner_id, id, %s, %s, NULL, %s FROM {t['line']} "
            "WHERE id = ANY(%s)",
            [target_id, at, via_merge, line_ids],
        )
        cursor.execute(
            f"INSERT INTO {t['audit']} ({_AUDIT_COLUMNS}) "  # noqa: S608
            "SELECT partner_id, %s, 'user', %s, 'bench', %s, 'line', id::text, "
            "sub_account_id, %s, id, jsonb_build_object('number', number, 'before', "
            "jsonb_build_object('sub_account_id', sub_account_id), 'after', "
            f"jsonb_build_object('sub_account_id', %s)), '', NULL FROM {t['line']} "
            "WHERE id = ANY(%s)",
            [at, actor_id, action, target_id, target_id, line_ids],
        )
        cursor.execute(
            f"UPDATE {t['sub']} s SET line_count = s.line_count - c.n FROM (SELECT "  # noqa: S608
            f"sub_account_id, COUNT(*) AS n FROM {t['line']} WHERE id = ANY(%s) "
            "GROUP BY sub_account_id) c WHERE s.id = c.sub_account_id",
            [line_ids],
        )
        cursor.execute(
            f"UPDATE {t['sub']} SET line_count = line_count + %s WHERE id = %s",  # noqa: S608
            [len(line_ids), target_id],
        )
        cursor.execute(
            f"UPDATE {t['line']} SET sub_account_id = %s WHERE id = ANY(%s)",  # noqa: S608
            [target_id, line_ids],
        )
        if via_merge:
            cursor.execute(
                f"SELECT line_id, sub_account_id, day FROM {t['rollup']} "  # noqa: S608
                "WHERE partner_id = %s AND day >= %s AND line_id = ANY(%s)",
                [partner_id, at.date(), line_ids],
            )
            cursor.fetchall()
