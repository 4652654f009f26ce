"""A real merge, end to end through the API, and what it does to billing and analytics.

domain §3: merges never prorate — the moved lines stay billed to their source for the rest
of the cycle (already invoiced in advance) and are in the target's section from the next
cycle, the source's section named "(merged into …)". domain §4: after a merge the target's
analytics include the sources' whole history, without any rollup being rewritten.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from portal.analytics.models import DailyLineRollup
from portal.billing.invoicing import invoice_issue
from portal.billing.periods import Cycle
from portal.core import clock
from portal.lines.services import line_move
from portal.workflows.models import MergeStatus
from portal.workflows.services import merges
from tests.analytics.support import event, ingest
from tests.conftest import Api
from tests.factories import SYSTEM, at, make_staff_key, make_sub_account, make_tenant
from tests.workflows.support import fill

pytestmark = pytest.mark.django_db(transaction=False)


def sections(invoice) -> dict[str, tuple[int, Decimal, Decimal, Decimal]]:
    return {
        s.name: (s.line_quantity, s.recurring, s.prorations, s.total)
        for s in invoice.sections.all()
    }


def test_a_merge_moves_billing_next_cycle_and_rolls_analytics_up_without_rewriting():
    with clock.frozen_at(at("2026-05-20 09:00")):
        tenant = make_tenant("Merge Effects", timezone="UTC", line_price=Decimal("50.00"))
        source = make_sub_account(tenant.partner, "Salon West")
        target = make_sub_account(tenant.partner, "Salon East")
        source_lines = fill(source, 2)
        fill(target, 1)
    # History in the source before the merge: 2 new conversations, one answered.
    ingest(
        event("e1", source_lines[0], "outbound", "+15550000001", at("2026-05-25 10:00")),
        event("e2", source_lines[0], "inbound", "+15550000001", at("2026-05-25 11:00")),
        event("e3", source_lines[1], "outbound", "+15550000002", at("2026-05-26 10:00")),
    )
    rollups_before = sorted(DailyLineRollup.objects.values_list("pk", "sub_account_id", "day"))
    with clock.frozen_at(at("2026-06-01 00:10")):
        invoice_issue(principal=SYSTEM, partner=tenant.partner, cycle=Cycle(2026, 6, "UTC"))

    # Mid-June: request through the API, staff approve, the task runs.
    admin, staff = Api(tenant.keys["admin"]), Api(make_staff_key())
    with clock.frozen_at(at("2026-06-10 12:00")):
        request = admin.ok_post(
            "/merge-requests", {"source_ids": [source.pk], "target_id": target.pk}
        )
        approved = staff.ok_post(
            f"/merge-requests/{request['id']}/approve?partner={tenant.partner.slug}"
        )
        assert approved["status"] in {"approved", "processing", "completed"}
        merges.merge_request_run(principal=SYSTEM, request_id=request["id"])
    done = admin.get(f"/merge-requests/{request['id']}").json()
    assert (done["status"], done["lines_moved"], done["lines_total"]) == (
        MergeStatus.COMPLETED,
        2,
        2,
    )
    # A later move in the same cycle credits the source, which was charged for June.
    other = make_sub_account(tenant.partner, "Salon North")
    with clock.frozen_at(at("2026-06-21 08:00")):
        line_move(principal=SYSTEM, line_id=source_lines[1].pk, sub_account_id=other.pk)

    with clock.frozen_at(at("2026-07-01 00:10")):
        july = invoice_issue(principal=SYSTEM, partner=tenant.partner, cycle=Cycle(2026, 7, "UTC"))
    by_name = sections(july)
    merged_name = "Salon West (merged into Salon East)"
    # The merge itself prorated nothing; the move on June 21 (10 of 30 days) did, against
    # the source that held the June charge.
    assert by_name[merged_name] == (0, Decimal("0.00"), Decimal("-16.67"), Decimal("-16.67"))
    assert by_name["Salon East"] == (2, Decimal("100.00"), Decimal("0.00"), Decimal("100.00"))
    assert by_name["Salon North"] == (1, Decimal("50.00"), Decimal("16.67"), Decimal("66.67"))
    assert july.total == sum(s.total for s in july.sections.all())

    # Analytics: the target shows the source's May history; the source is not listed apart.
    response = admin.get("/analytics/sub-accounts", start="2026-05-01", end="2026-05-31")
    rows = {row["sub_account_id"]: row for row in response.json()["items"]}
    assert source.pk not in rows
    east = rows[target.pk]
    assert (east["messages_sent"], east["messages_received"]) == (2, 1)
    assert (east["new_conversations"], east["responded_conversations"]) == (2, 1)
    assert east["response_rate"] == 0.5
    detail = admin.get(
        f"/sub-accounts/{target.pk}/analytics", start="2026-05-01", end="2026-05-31"
    ).json()
    assert detail["totals"]["messages_sent"] == 2
    # …without a single rollup rewritten.
    assert (
        sorted(DailyLineRollup.objects.values_list("pk", "sub_account_id", "day")) == rollups_before
    )
