"""The bulk helpers on the floor: ids matched as one text-borne array, and a commit that
does not wait for the disk, for one transaction only."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from portal.core.bulk import commit_without_flush_wait, id_matches, pg_array
from portal.lines.models import Line
from tests.factories import make_lines, make_partner


@pytest.mark.django_db
def test_id_matches_finds_exactly_the_ids_given():
    partner = make_partner()
    lines = make_lines(partner, 5)
    wanted = [lines[0].pk, lines[3].pk, 10**12]  # one that does not exist
    table = connection.ops.quote_name(Line._meta.db_table)
    found: list[int] = []
    with connection.cursor() as cursor:
        for match, params in id_matches(wanted):
            cursor.execute(f"SELECT id FROM {table} WHERE id {match}", params)  # noqa: S608
            found += [row[0] for row in cursor.fetchall()]
    assert sorted(found) == [lines[0].pk, lines[3].pk]
    assert id_matches([]) == []


def test_pg_array_carries_mixed_values_as_one_text_parameter():
    sql, param = pg_array("bigint", [1, 22, 333])
    assert sql == "string_to_array(%s, chr(31), chr(30))::bigint[]"
    assert param == "1\x1f22\x1f333"
    _, with_null = pg_array("text", ["a", None, "b"])
    assert with_null == "a\x1f\x1e\x1fb"


@pytest.mark.django_db(transaction=True)
def test_a_commit_without_flush_wait_holds_for_its_own_transaction_only():
    if connection.vendor != "postgresql":
        with transaction.atomic():
            commit_without_flush_wait()  # nothing to do, and no error
        return

    def setting() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return cursor.fetchone()[0]

    assert setting() == "on"
    with transaction.atomic():
        commit_without_flush_wait()
        assert setting() == "off"
    assert setting() == "on"  # SET LOCAL: the session's next transaction waits again
