"""The billing summary's accruing prorations (domain §3) are summed in the database
(``accruals.proration_sums``): per sub-account they must equal, to the minor unit, the
sum of the rounded items that the invoice of the next cycle will carry."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from portal.billing.accruals import ACCRUAL_LAG, proration_sums
from portal.billing.drafting import invoice_draft, proration_items
from portal.billing.holders import holder_changes
from portal.billing.invoicing import invoice_issue
from portal.billing.models import SummaryAccrual, SummaryAccrualRow
from portal.billing.money import minor_units
from portal.billing.periods import Cycle
from portal.billing.precompute import proration_accruals_precompute
from portal.billing.summary import billing_summary
from portal.core.clock import frozen_at
from portal.lines.services import line_disconnect, line_move
from portal.partners.models import Partner
from portal.workflows.services import merges
from tests.billing.test_invoices import _mark_merges, _random_history, set_partner
from tests.factories import SYSTEM, make_lines, make_partner, make_sub_account

D = Decimal
_count = itertools.count()

CASES = [
    ("UTC", 2026, 6, "USD", "50.00"),
    ("America/New_York", 2026, 3, "USD", "49.99"),
    ("Europe/Paris", 2026, 10, "EUR", "12.3456"),
    ("Asia/Tokyo", 2026, 2, "JPY", "5000"),
    ("America/Los_Angeles", 2026, 11, "USD", "0.07"),
    ("UTC", 2026, 12, "KWD", "17.125"),
]


def _item_sums(partner: Partner, cycle: Cycle, until: dt.datetime | None) -> dict[int, Decimal]:
    """The item-level engine's prorations of ``cycle`` through ``until``, per sub-account."""
    changes = holder_changes(partner_id=partner.pk, cycle=cycle, until=until)
    items = proration_items(
        partner=partner,
        cycle=cycle,
        price=partner.line_price,
        changes=changes,
        names=lambda pk, _day: str(pk),
    )
    sums: dict[int, Decimal] = {}
    for item in items:
        sums[item.sub_account_id] = sums.get(item.sub_account_id, D(0)) + item.amount
    return sums


def _check(partner: Partner, cycle: Cycle, rng: random.Random) -> None:
    partner.refresh_from_db()
    price = partner.line_price
    # Every day so far, and the cycle cut at a few instants (a summary read mid-cycle).
    cuts = [None, cycle.end - dt.timedelta(microseconds=1)]
    cuts += [cycle.start + (cycle.end - cycle.start) * rng.random() for _ in range(3)]
    for until in cuts:
        got = proration_sums(partner=partner, cycle=cycle, price=price, until=until)
        assert got == _item_sums(partner, cycle, until), until
        places = minor_units(partner.currency)
        assert all(v.as_tuple().exponent == -places for v in got.values())

    # The summary read in the last instant of the cycle accrues exactly what the next
    # invoice's sections carry as prorations; the same with the days ended precomputed.
    last = cycle.end - dt.timedelta(microseconds=1)
    with frozen_at(last):
        summary = billing_summary(principal=SYSTEM.acting_for(partner.pk))
        assert proration_accruals_precompute(principal=SYSTEM) == 1
        assert billing_summary(principal=SYSTEM.acting_for(partner.pk)).rows == summary.rows
        assert proration_accruals_precompute(principal=SYSTEM) == 0  # already summed
    accruing = {r.sub_account_id: r.accruing_prorations for r in summary.rows}
    draft = invoice_draft(partner=partner, cycle=cycle.next())
    prorated = {
        s.sub_account_id: s.prorations
        for s in draft.sections
        if any(i.kind not in ("recurring", "discount", "credit") for i in s.items)
    }
    assert prorated, "the history should prorate something"
    assert {pk: accruing[pk] for pk in prorated} == prorated
    assert not {pk: a for pk, a in accruing.items() if a and pk not in prorated}


@hypothesis_settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    case=st.sampled_from(CASES),
    seed=st.integers(min_value=0, max_value=2**32),
    prorate_new_lines=st.booleans(),
    credit_disconnects=st.booleans(),
)
def test_the_sums_equal_the_items_on_random_histories(
    db, case, seed, prorate_new_lines, credit_disconnects
):
    tz, year, month, currency, price = case
    rng = random.Random(seed)
    savepoint = transaction.savepoint_create()
    try:
        partner = make_partner(
            f"Summed {next(_count)}", timezone=tz, currency=currency, line_price=price
        )
        set_partner(
            partner, prorate_new_lines=prorate_new_lines, credit_disconnects=credit_disconnects
        )
        cycle = Cycle(year, month, tz)
        _random_history(rng, partner, cycle)
        _mark_merges(rng, partner)
        _check(partner, cycle, rng)
    finally:
        transaction.savepoint_rollback(savepoint)


def test_the_summary_matches_the_next_invoice_through_a_real_merge(db):
    """Same-day collapse, a move back and forth, a disconnection credited, activations
    and a merge processed by the workflow (never prorated), summed both ways."""
    partner = make_partner("Summed Merge", timezone="UTC")
    set_partner(partner, credit_disconnects=True)
    a, b, c = (make_sub_account(partner, name) for name in ("A", "B", "C"))
    cycle = Cycle(2026, 6, "UTC")

    def when(day: int, hour: int = 12) -> dt.datetime:
        return dt.datetime(2026, 6, day, hour, tzinfo=dt.UTC)

    with frozen_at(dt.datetime(2026, 5, 20, tzinfo=dt.UTC)):
        lines = make_lines(partner, 6)
        for line, sub in zip(lines, (a, a, b, b, c, c), strict=True):
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=sub.pk)
    steps = [
        (when(3, 9), lambda: line_move(principal=SYSTEM, line_id=lines[0].pk, sub_account_id=c.pk)),
        (
            when(3, 15),
            lambda: line_move(principal=SYSTEM, line_id=lines[0].pk, sub_account_id=b.pk),
        ),
        (when(5, 9), lambda: line_move(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=b.pk)),
        (
            when(5, 10),
            lambda: line_move(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=a.pk),
        ),
        (when(8), lambda: line_move(principal=SYSTEM, line_id=lines[2].pk, sub_account_id=c.pk)),
        (when(12), lambda: line_move(principal=SYSTEM, line_id=lines[2].pk, sub_account_id=b.pk)),
        (when(14), lambda: line_disconnect(principal=SYSTEM, line_id=lines[3].pk)),
        (when(16), lambda: make_lines(partner, 2)),
    ]
    for instant, step in steps:
        with frozen_at(instant):
            step()
    staff = SYSTEM.acting_for(partner.pk)
    with frozen_at(when(20)):
        request = merges.merge_request_create(principal=staff, source_ids=[c.pk], target_id=a.pk)
        merges.merge_request_approve(principal=staff, request_id=request.pk)
        merges.merge_request_run(principal=staff, request_id=request.pk)
    with frozen_at(when(25)):
        line_move(principal=SYSTEM, line_id=lines[4].pk, sub_account_id=b.pk)
    _check(partner, cycle, random.Random(7))


def test_the_precomputed_days_and_todays_moves_add_up(db, django_assert_num_queries):
    """The worker sums the cycle through a few minutes ago; the summary adds the changes
    of the lines changed since, with a fixed number of queries: one more than without the
    sums (the stored sums and their instant in one statement, where there is the same
    empty read before summing the cycle; the changed lines now, and as they stood when
    summed)."""
    partner = make_partner("Summed Today", timezone="America/New_York")
    set_partner(partner, credit_disconnects=True)
    a, b = make_sub_account(partner, "A"), make_sub_account(partner, "B")
    cycle = Cycle(2026, 3, "America/New_York")  # DST starts on March 8
    with frozen_at(dt.datetime(2026, 2, 20, tzinfo=dt.UTC)):
        lines = make_lines(partner, 4)
    for day, index, to in [(3, 0, a), (8, 1, b), (9, 0, b), (12, 2, a)]:
        with frozen_at(dt.datetime(2026, 3, day, 18, tzinfo=dt.UTC)):
            line_move(principal=SYSTEM, line_id=lines[index].pk, sub_account_id=to.pk)
    noon = dt.datetime(2026, 3, 12, 16, tzinfo=dt.UTC)  # day 12 in New York
    principal = SYSTEM.acting_for(partner.pk)
    with frozen_at(noon):
        uncached = billing_summary(principal=principal)
        assert proration_accruals_precompute(principal=SYSTEM) == 1
    later = noon + dt.timedelta(hours=5)
    with frozen_at(later - dt.timedelta(hours=1)):
        line_move(principal=SYSTEM, line_id=lines[0].pk, sub_account_id=a.pk)
        line_disconnect(principal=SYSTEM, line_id=lines[3].pk)
        make_lines(partner, 1)
    with frozen_at(later), django_assert_num_queries(_summary_queries(partner, later) + 1):
        cached = billing_summary(principal=principal)
    assert cached.rows != uncached.rows  # today's changes are in
    got = {r.sub_account_id: r.accruing_prorations for r in cached.rows if r.accruing_prorations}
    want = proration_sums(partner=partner, cycle=cycle, price=partner.line_price, until=later)
    assert got == {pk: v for pk, v in want.items() if v}
    # Read from the stored sums indeed: a stored sum changed by hand shows.
    stored = SummaryAccrualRow.objects.filter(summary__partner=partner, sub_account_id=b.pk)
    one = 10 ** minor_units(partner.currency)
    assert stored.update(accruing_units=F("accruing_units") + one) == 1
    with frozen_at(later):
        again = billing_summary(principal=principal)
    shown = {r.sub_account_id: r.accruing_prorations for r in again.rows}
    assert shown[b.pk] == got[b.pk] + 1


def test_a_change_undone_after_the_sums_leaves_no_trace(db):
    """A line moved before the worker's sums and moved back after them: the summary
    reads the sums and takes the move out again, to the row (a sub-account whose only
    items were that move has no row, as without the sums); so does the worker's next
    computation, made from the one before."""
    partner = make_partner("Summed Undone", timezone="UTC")
    a, b = make_sub_account(partner, "A"), make_sub_account(partner, "B")
    with frozen_at(dt.datetime(2026, 5, 20, tzinfo=dt.UTC)):
        lines = make_lines(partner, 3)
        for line in lines:
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=a.pk)
    c = make_sub_account(partner, "C")
    principal = SYSTEM.acting_for(partner.pk)
    with frozen_at(dt.datetime(2026, 6, 1, 1, tzinfo=dt.UTC)):
        invoice_issue(principal=SYSTEM, partner=partner, cycle=Cycle(2026, 6, "UTC"))
    with frozen_at(dt.datetime(2026, 6, 10, 9, tzinfo=dt.UTC)):
        line_move(principal=SYSTEM, line_id=lines[0].pk, sub_account_id=b.pk)
        line_move(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=c.pk)
    with frozen_at(dt.datetime(2026, 6, 10, 12, tzinfo=dt.UTC)):
        assert proration_accruals_precompute(principal=SYSTEM) == 1
    with frozen_at(dt.datetime(2026, 6, 10, 15, tzinfo=dt.UTC)):
        line_move(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=a.pk)
    for now in (
        dt.datetime(2026, 6, 10, 18, tzinfo=dt.UTC),
        dt.datetime(2026, 6, 12, tzinfo=dt.UTC),
    ):
        with frozen_at(now):
            cached = billing_summary(principal=principal)
            savepoint = transaction.savepoint_create()
            SummaryAccrual.objects.filter(partner=partner).delete()
            uncached = billing_summary(principal=principal)
            transaction.savepoint_rollback(savepoint)
        assert cached.rows == uncached.rows, now
        assert c.pk not in {r.sub_account_id for r in cached.rows}
        assert {r.sub_account_id: r.accruing_prorations for r in cached.rows}[b.pk] > 0
    # The worker's next computation starts from the one before and agrees too.
    with frozen_at(dt.datetime(2026, 6, 10, 20, tzinfo=dt.UTC)):
        assert proration_accruals_precompute(principal=SYSTEM) == 1
        cycle = Cycle(2026, 6, "UTC")
        through = dt.datetime(2026, 6, 10, 20, tzinfo=dt.UTC) - ACCRUAL_LAG
        assert SummaryAccrual.objects.get(partner=partner).through == through
        assert _stored(partner) == proration_sums(
            partner=partner, cycle=cycle, price=partner.line_price, until=through
        )


def _summary_queries(partner: Partner, now: dt.datetime) -> int:
    """The queries of a summary read without the precomputed sums (deleted, rolled back)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    savepoint = transaction.savepoint_create()
    SummaryAccrual.objects.filter(partner=partner).delete()
    with CaptureQueriesContext(connection) as ctx, frozen_at(now):
        billing_summary(principal=SYSTEM.acting_for(partner.pk))
    transaction.savepoint_rollback(savepoint)
    return len(ctx.captured_queries)


def _stored(partner: Partner) -> dict[int, Decimal]:
    """The worker's stored accruing sums of ``partner``, per sub-account with items."""
    places = minor_units(partner.currency)
    rows = SummaryAccrualRow.objects.filter(summary__partner=partner, accruing_items__gt=0)
    return {
        pk: Decimal(units).scaleb(-places)
        for pk, units in rows.values_list("sub_account_id", "accruing_units")
    }
