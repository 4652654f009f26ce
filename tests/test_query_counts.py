"""List endpoints run a fixed number of queries whatever the page holds (STYLE §9)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portal.lines.services import line_move, line_order_create
from tests.factories import SYSTEM, make_lines, make_sub_account


def queries_for(api, path: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = api.get(path, limit=500)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def grow(partner, n: int) -> None:
    subs = [make_sub_account(partner) for _ in range(n)]
    lines = make_lines(partner, n)
    for line, sa in zip(lines, subs, strict=True):
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=sa.pk)
    for _ in range(n):
        # An area code with no stock: these stay pending and leave later imports alone.
        line_order_create(principal=SYSTEM, partner=partner, quantity=1, area_code="999")


@pytest.mark.parametrize("path", ["/sub-accounts", "/lines", "/line-orders", "/audit-events"])
def test_list_query_count_does_not_grow_with_rows(api, tenant, path):
    grow(tenant.partner, 2)
    api.get(path)  # the first call records the key's use; measure later ones
    small = queries_for(api, path)
    grow(tenant.partner, 15)
    large = queries_for(api, path)
    assert api.get(path, limit=500).json()["count"] > 15
    assert large == small
