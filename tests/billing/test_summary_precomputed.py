"""The worker's precomputed billing summary (SummaryAccrual, issue 16 point 4): a row per
section of the cycle's invoice with the prorations accruing summed into it. The summary
read with it must equal the summary read without it, to the minor unit, whatever happened
since (moves, a move undone, a merge, a disconnection, new lines), and the worker's rows
added to run after run must equal the rows it writes afresh."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import transaction

from portal.billing.accruals import ACCRUAL_LAG, proration_sums
from portal.billing.invoicing import invoice_issue
from portal.billing.models import SummaryAccrual, SummaryAccrualRow
from portal.billing.periods import Cycle
from portal.billing.precompute import proration_accruals_precompute
from portal.billing.summary import billing_summary
from portal.core.clock import frozen_at
from portal.lines.services import line_disconnect, line_move
from portal.partners.models import Partner
from portal.workflows.services import merges
from tests.billing.test_invoices import set_partner
from tests.factories import SYSTEM, make_lines, make_partner, make_sub_account

D = Decimal
CYCLE = Cycle(2026, 6, "UTC")


def when(day: int, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 6, day, hour, minute, tzinfo=dt.UTC)


def _without_sums(partner: Partner, now: dt.datetime) -> list:
    """The summary's rows at ``now`` read without the worker's sums (deleted, rolled back)."""
    savepoint = transaction.savepoint_create()
    SummaryAccrual.objects.filter(partner=partner).delete()
    with frozen_at(now):
        rows = billing_summary(principal=SYSTEM.acting_for(partner.pk)).rows
    transaction.savepoint_rollback(savepoint)
    return rows


def _stored(partner: Partner) -> tuple[object, list[tuple]]:
    summary = SummaryAccrual.objects.get(partner=partner)
    rows = SummaryAccrualRow.objects.filter(summary=summary).order_by("position", "sub_account_id")
    fields = ("position", "sub_account_id", "name", "line_quantity", "recurring")
    fields += ("prorations", "discounts", "credits", "accruing_units", "accruing_items")
    return summary.through, list(rows.values_list(*fields))


def _afresh(partner: Partner, now: dt.datetime) -> tuple[object, list[tuple]]:
    """The rows the worker writes at ``now`` from nothing (deleted first, rolled back)."""
    savepoint = transaction.savepoint_create()
    SummaryAccrual.objects.filter(partner=partner).delete()
    with frozen_at(now):
        assert proration_accruals_precompute(principal=SYSTEM) == 1
    stored = _stored(partner)
    transaction.savepoint_rollback(savepoint)
    return stored


def _same_both_ways(partner: Partner, now: dt.datetime) -> list:
    """The summary at ``now`` with the worker's sums, checked equal to it without them,
    and a page of it (``sub_account_ids``) equal to its rows of that page."""
    principal = SYSTEM.acting_for(partner.pk)
    with frozen_at(now):
        cached = billing_summary(principal=principal).rows
        for page in (
            {r.sub_account_id for r in cached[::2]},
            {r.sub_account_id for r in cached[1::2]},
        ):
            paged = billing_summary(principal=principal, sub_account_ids=page).rows
            assert paged == [r for r in cached if r.sub_account_id in page], (now, page)
    assert cached == _without_sums(partner, now), now
    return cached


def test_the_worker_adds_up_run_after_run_as_it_would_afresh(db):
    """Moves, a move undone after the sums, a merge, a disconnection and new lines, the
    worker run between them: each run's rows (its previous rows plus the changes) equal
    the rows written afresh, and the summary with them equals the summary without."""
    partner = make_partner("Precomputed Runs", timezone="UTC")
    set_partner(partner, credit_disconnects=True)
    a, b, c = (make_sub_account(partner, name) for name in ("A", "B", "C"))
    with frozen_at(dt.datetime(2026, 5, 20, tzinfo=dt.UTC)):
        lines = make_lines(partner, 8)
        for line, sub in zip(lines, (a, a, a, b, b, c, c, c), strict=True):
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=sub.pk)
    with frozen_at(when(1, 0, 30)):
        invoice_issue(principal=SYSTEM, partner=partner, cycle=CYCLE)
    late = make_sub_account(partner, "Late")  # no section on June's invoice
    staff = SYSTEM.acting_for(partner.pk)

    def merge() -> None:
        request = merges.merge_request_create(principal=staff, source_ids=[c.pk], target_id=a.pk)
        merges.merge_request_approve(principal=staff, request_id=request.pk)
        merges.merge_request_run(principal=staff, request_id=request.pk)

    steps = [
        (when(3, 9), lambda: line_move(principal=SYSTEM, line_id=lines[0].pk, sub_account_id=b.pk)),
        (
            when(3, 10),
            lambda: line_move(principal=SYSTEM, line_id=lines[3].pk, sub_account_id=late.pk),
        ),
        # Undone after the worker's run of 10:20 (through 10:15).
        (
            when(3, 10, 10),
            lambda: line_move(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=late.pk),
        ),
        (
            when(3, 10, 30),
            lambda: line_move(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=a.pk),
        ),
        (when(3, 11), lambda: line_disconnect(principal=SYSTEM, line_id=lines[4].pk)),
        (when(3, 11, 30), lambda: make_lines(partner, 2)),
        (when(3, 12), merge),
        (
            when(3, 13),
            lambda: line_move(principal=SYSTEM, line_id=lines[5].pk, sub_account_id=b.pk),
        ),
    ]
    runs = [when(3, 10, 20), when(3, 10, 40), when(3, 11, 50), when(3, 12, 30), when(3, 14)]
    pending = sorted([(at, "step", f) for at, f in steps] + [(at, "run", None) for at in runs])
    for at, kind, step in pending:
        with frozen_at(at):
            if kind == "step":
                step()
                continue
            assert proration_accruals_precompute(principal=SYSTEM) == 1
            assert proration_accruals_precompute(principal=SYSTEM) == 0  # already summed
        stored = _stored(partner)
        assert stored[0] == at - ACCRUAL_LAG
        assert stored == _afresh(partner, at), at
        assert SummaryAccrual.objects.get(partner=partner).invoice_id is not None
        for later in (at, at + dt.timedelta(minutes=7)):
            _same_both_ways(partner, later)
    rows = _same_both_ways(partner, when(3, 15))
    accruing = {r.sub_account_id: r.accruing_prorations for r in rows}
    assert accruing[late.pk] > 0
    # The stored accruing sums are the engine's own, per sub-account.
    units = {
        pk: D(u).scaleb(-2)
        for pk, u, n in SummaryAccrualRow.objects.filter(summary__partner=partner).values_list(
            "sub_account_id", "accruing_units", "accruing_items"
        )
        if n > 0
    }
    want = proration_sums(
        partner=partner, cycle=CYCLE, price=partner.line_price, until=when(3, 14) - ACCRUAL_LAG
    )
    assert units == want
    # The late sub-account's row is one without a section, read with its name now.
    late_row = next(r for r in rows if r.sub_account_id == late.pk)
    assert late_row.name == "Late" and late_row.line_count == 0


def test_a_move_undone_leaves_no_row_without_a_section(db):
    """A sub-account without a section whose only items were a move undone: the worker's
    next run drops its row, and the summary shows none, as without the sums."""
    partner = make_partner("Precomputed Undone", timezone="UTC")
    a = make_sub_account(partner, "A")
    with frozen_at(dt.datetime(2026, 5, 20, tzinfo=dt.UTC)):
        (line,) = make_lines(partner, 1)
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=a.pk)
    with frozen_at(when(1, 1)):
        invoice_issue(principal=SYSTEM, partner=partner, cycle=CYCLE)
    other = make_sub_account(partner, "Other")
    with frozen_at(when(4, 9)):
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=other.pk)
    with frozen_at(when(4, 10)):
        assert proration_accruals_precompute(principal=SYSTEM) == 1
    assert SummaryAccrualRow.objects.filter(sub_account_id=other.pk, position=None).exists()
    with frozen_at(when(4, 10, 30)):  # moved back the same day: no item for either
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=a.pk)
    rows = _same_both_ways(partner, when(4, 11))
    assert other.pk not in {r.sub_account_id for r in rows}
    with frozen_at(when(4, 11)):
        assert proration_accruals_precompute(principal=SYSTEM) == 1
    assert not SummaryAccrualRow.objects.filter(sub_account_id=other.pk).exists()
    assert _stored(partner) == _afresh(partner, when(4, 11))


def test_the_cycle_first_minutes_and_a_partner_without_an_invoice(db):
    """Before the invoice is issued the worker sums the accruing prorations alone (the
    summary drafts the invoice); once it is issued, its next run writes the sections'
    rows. In a new cycle's first minutes nothing of the cycle before is used."""
    partner = make_partner("Precomputed Draft", timezone="UTC")
    a, b = make_sub_account(partner, "A"), make_sub_account(partner, "B")
    with frozen_at(dt.datetime(2026, 5, 20, tzinfo=dt.UTC)):
        lines = make_lines(partner, 3)
        for line in lines:
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=a.pk)
    with frozen_at(dt.datetime(2026, 5, 25, tzinfo=dt.UTC)):
        line_move(principal=SYSTEM, line_id=lines[0].pk, sub_account_id=b.pk)
    with frozen_at(dt.datetime(2026, 5, 28, tzinfo=dt.UTC)):
        assert proration_accruals_precompute(principal=SYSTEM) == 1
    assert SummaryAccrual.objects.get(partner=partner).period_month == dt.date(2026, 5, 1)
    # June's first minutes: the worker still sums May (through is 5 minutes before), and
    # May's sums are not June's.
    with frozen_at(when(1, 0, 3)):
        assert proration_accruals_precompute(principal=SYSTEM) == 1
    assert SummaryAccrual.objects.get(partner=partner).period_month == dt.date(2026, 5, 1)
    rows = _same_both_ways(partner, when(1, 0, 3))
    assert all(r.accruing_prorations == 0 for r in rows)
    # No invoice yet for June: the worker sums the prorations alone, the summary drafts.
    with frozen_at(when(2, 9)):
        line_move(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=b.pk)
    with frozen_at(when(2, 10)):
        assert proration_accruals_precompute(principal=SYSTEM) == 1
    summary = SummaryAccrual.objects.get(partner=partner)
    assert summary.invoice_id is None and summary.period_month == dt.date(2026, 6, 1)
    assert not SummaryAccrualRow.objects.filter(summary=summary, position__isnull=False).exists()
    with frozen_at(when(2, 10, 30)):
        line_move(principal=SYSTEM, line_id=lines[2].pk, sub_account_id=b.pk)
    rows = _same_both_ways(partner, when(2, 11))
    assert {r.sub_account_id: r.accruing_prorations for r in rows}[b.pk] > 0
    # Issued (late): the next run writes the sections' rows, read in one statement.
    with frozen_at(when(2, 11)):
        invoice = invoice_issue(principal=SYSTEM, partner=partner, cycle=CYCLE)
    assert _same_both_ways(partner, when(2, 11, 5)) == rows
    with frozen_at(when(2, 11, 20)):
        assert proration_accruals_precompute(principal=SYSTEM) == 1
    assert SummaryAccrual.objects.get(partner=partner).invoice_id == invoice.pk
    assert SummaryAccrualRow.objects.filter(summary__partner=partner, position=1).exists()
    assert _same_both_ways(partner, when(2, 11, 30)) == rows


def test_a_change_of_price_or_policy_is_not_read_from_the_sums(db):
    """The sums are keyed by the price and the policies: after a change the summary
    computes afresh (equal to without the sums), and the worker's next run rewrites."""
    partner = make_partner("Precomputed Policy", timezone="UTC")
    a, b = make_sub_account(partner, "A"), make_sub_account(partner, "B")
    with frozen_at(dt.datetime(2026, 5, 20, tzinfo=dt.UTC)):
        lines = make_lines(partner, 2)
        for line in lines:
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=a.pk)
    with frozen_at(when(1, 1)):
        invoice_issue(principal=SYSTEM, partner=partner, cycle=CYCLE)
    with frozen_at(when(5)):
        line_disconnect(principal=SYSTEM, line_id=lines[0].pk)
        line_move(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=b.pk)
    with frozen_at(when(6)):
        assert proration_accruals_precompute(principal=SYSTEM) == 1
    before = _same_both_ways(partner, when(6, 13))
    set_partner(partner, credit_disconnects=not partner.credit_disconnects)
    after = _same_both_ways(partner, when(6, 13))
    assert after != before
    with frozen_at(when(6, 14)):
        assert proration_accruals_precompute(principal=SYSTEM) == 1
    assert _same_both_ways(partner, when(6, 14)) == after
    assert SummaryAccrual.objects.get(partner=partner).credit_disconnects == (
        partner.credit_disconnects
    )
