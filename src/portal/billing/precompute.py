"""The worker's precomputed billing summary: every few minutes, each partner's accruing
prorations of its current cycle summed through a few minutes ago into
:class:`~portal.billing.models.SummaryAccrual` and its rows, so that a read of the summary
adds only the lines changed since (:mod:`portal.billing.accruals`).

Internal (``core.tenancy``): a job over every partner, as the system.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.db.models import BigIntegerField, Case, F, Value, When

from portal.accounts.policies import require
from portal.billing.accruals import ACCRUAL_LAG, accrual_changes, accrual_key, proration_parts_sql
from portal.billing.drafting import invoice_for_cycle, price_for_cycle
from portal.billing.models import InvoiceSection, SummaryAccrual, SummaryAccrualRow
from portal.billing.periods import Cycle, cycle_containing
from portal.billing.policies import can_issue_invoices
from portal.core import clock
from portal.core.principal import Principal
from portal.partners.models import Partner

# Sub-accounts per statement when the worker adds changes to its precomputed summary.
_CHANGES_BATCH = 500


def proration_accruals_precompute(*, principal: Principal, now: dt.datetime | None = None) -> int:
    """For every partner, precompute the billing summary of its current cycle through
    ``now`` less ``ACCRUAL_LAG`` (:class:`SummaryAccrual`: a row per section of the
    cycle's invoice with the prorations accruing for the next invoice, and a row per other
    sub-account with accruing items), unless already summed: the billing summary then
    reads it in one statement and adds only the lines changed since
    (:func:`~portal.billing.accruals.accrual_rows`). Returns how many partners were
    summed.

    Set-based: a run adds to the partner's rows the changes since its previous run (the
    same :func:`~portal.billing.accruals.accrual_changes` a read adds), writing only the
    rows they change; the first run of a cycle, of each day, after the invoice is issued,
    or after a change of price or policy rewrites the rows in one ``INSERT … SELECT`` of
    the invoice's sections and every change of the cycle so far.

    A cache, not a state change: no audit event. Each partner in its own transaction,
    which locks the partner's summary row, so two runs at once sum in turn (the second
    finds the work done).
    """
    require(can_issue_invoices(principal), "Only the provider precomputes billing figures.")
    through = (now or clock.now()) - ACCRUAL_LAG
    summed = rewritten = 0
    for partner in Partner.objects.order_by("pk"):
        cycle = cycle_containing(through, partner.timezone)
        if through <= cycle.start:
            continue
        done = _summary_accrual_update(partner, cycle, through)
        summed += done is not None
        rewritten += bool(done)
    if rewritten and connection.vendor == "postgresql":
        # Fresh statistics for the rows rewritten, so that a read walks a summary's rows
        # by its index in order (stale ones, e.g. without autovacuum, make it sort them).
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(SummaryAccrualRow._meta.db_table)}")
    return summed


def _summary_accrual_update(partner: Partner, cycle: Cycle, through: dt.datetime) -> bool | None:
    """:func:`proration_accruals_precompute` for one partner: None when already done,
    True when its rows were rewritten, False when changes were added to them."""
    with transaction.atomic():
        summary = SummaryAccrual.objects.select_for_update().filter(partner=partner).first()
        fresh = summary is None
        if summary is None:
            try:
                with transaction.atomic():
                    summary = SummaryAccrual.objects.create(
                        **accrual_key(partner, cycle, Decimal(0)), through=through
                    )
            except IntegrityError:  # another run created it meanwhile: wait for it
                summary = SummaryAccrual.objects.select_for_update().get(partner=partner)
                fresh = False
        # Read under the lock: an invoice issued meanwhile is seen.
        invoice = invoice_for_cycle(partner.pk, cycle)
        price = invoice.unit_price if invoice is not None else price_for_cycle(partner, cycle)
        key = {**accrual_key(partner, cycle, price), "invoice_id": invoice.pk if invoice else None}
        same = not fresh and all(getattr(summary, k) == v for k, v in key.items())
        if same and summary.through == through:
            return None
        if (
            same
            and summary.through < through
            and cycle.day_of(summary.through) == cycle.day_of(through)
        ):
            changes = accrual_changes(
                partner=partner, cycle=cycle, price=price, since=summary.through, until=through
            )
            _summary_accrual_add(summary.pk, changes)
            rewritten = False
        else:
            # Afresh once a day: a change committed later than ACCRUAL_LAG after its
            # instant (a transaction that long) is missed by the sums for a day at most.
            _summary_accrual_rebuild(summary.pk, partner, cycle, price, key["invoice_id"], through)
            rewritten = True
        key.pop("partner_id")
        SummaryAccrual.objects.filter(pk=summary.pk).update(**key, through=through)
    return rewritten


def _summary_accrual_add(summary_id: int, changes: dict[int, tuple[int, int]]) -> None:
    """Adds ``changes`` (``{sub-account: (minor units, items)}``) to a summary's rows:
    per batch, which rows exist, one ``UPDATE`` of those and one ``INSERT`` of the others;
    then the rows without a section whose items all went (a move undone) are deleted."""
    rows = SummaryAccrualRow.objects.filter(summary_id=summary_id)
    pending = list(changes.items())
    for k in range(0, len(pending), _CHANGES_BATCH):
        batch = dict(pending[k : k + _CHANGES_BATCH])
        found = set(rows.filter(sub_account_id__in=batch).values_list("sub_account_id", flat=True))
        if found:

            def by_row(part: int, found: set[int] = found, batch: dict = batch) -> Case:
                whens = [When(sub_account_id=pk, then=Value(batch[pk][part])) for pk in found]
                return Case(*whens, default=Value(0), output_field=BigIntegerField())

            rows.filter(sub_account_id__in=found).update(
                accruing_units=F("accruing_units") + by_row(0),
                accruing_items=F("accruing_items") + by_row(1),
            )
        # A sub-account absent had no items: it gains some (never fewer than none).
        SummaryAccrualRow.objects.bulk_create(
            [
                SummaryAccrualRow(
                    summary_id=summary_id, sub_account_id=pk, accruing_units=u, accruing_items=n
                )
                for pk, (u, n) in batch.items()
                if pk not in found and n > 0
            ]
        )
    if changes:
        rows.filter(position__isnull=True, accruing_items__lte=0).delete()


def _summary_accrual_rebuild(
    summary_id: int,
    partner: Partner,
    cycle: Cycle,
    price: Decimal,
    invoice_id: int | None,
    through: dt.datetime,
) -> None:
    """Rewrites a summary's rows: a delete, then one ``INSERT … SELECT`` of the invoice's
    sections (in their order) with every change of the cycle through ``through`` summed
    per sub-account (:func:`~portal.billing.accruals.proration_parts_sql`), and a row per
    other sub-account with items."""
    SummaryAccrualRow.objects.filter(summary_id=summary_id).delete()
    found = proration_parts_sql(partner=partner, cycle=cycle, price=price, until=through)
    if found is None:  # through the cycle's start: nothing accrues
        return
    parts, params = found
    qn = connection.ops.quote_name
    rows = qn(SummaryAccrualRow._meta.db_table)
    sections = qn(InvoiceSection._meta.db_table)
    columns = ", ".join(
        qn(c)
        for c in (
            *("summary_id", "position", "sub_account_id", "name", "line_quantity"),
            *("recurring", "prorations", "discounts", "credits"),
            *("accruing_units", "accruing_items"),
        )
    )
    sql = f"""
        {parts},
        invoiced AS (
            SELECT ROW_NUMBER() OVER (ORDER BY {qn("position")}, id) AS ordinal, sub_account_id,
                   name, line_quantity, recurring, prorations, discounts, credits
            FROM {sections} WHERE invoice_id = %s
        )
        INSERT INTO {rows} ({columns})
        SELECT %s, s.ordinal, s.sub_account_id, s.name, s.line_quantity, s.recurring,
               s.prorations, s.discounts, s.credits, COALESCE(p.units, 0), COALESCE(p.items, 0)
        FROM invoiced s LEFT JOIN parts p ON p.sub_account_id = s.sub_account_id
        UNION ALL
        SELECT %s, NULL, p.sub_account_id, '', 0, 0, 0, 0, 0, p.units, p.items
        FROM parts p
        WHERE p.items > 0
          AND NOT EXISTS (SELECT 1 FROM invoiced s WHERE s.sub_account_id = p.sub_account_id)
    """  # noqa: S608 (only the statement's own text and quoted names are formatted in)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, invoice_id, summary_id, summary_id])
