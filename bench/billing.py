"""Billing benchmark: issue the invoice of a partner with a million lines.

The data (:mod:`bench.data`): one partner, 1,000,000 lines in 10,000 sub-accounts,
100,000 moves in the previous cycle plus some activations and disconnections. The
measure is ``invoice_issue`` — the real service, computing from assignment history
and storing sections and items — against a baseline in the same run: one
hand-written SQL aggregate over the same rows giving the recurring lines per
sub-account and the proration day-sums (the least work any implementation must do
to read this history). Then the client statements of the same invoice (domain §8.1),
with every sub-account given a resale price, against that invoice in the same run.
``BENCH_SCALE`` (e.g. 0.1) scales lines, sub-accounts and moves for a quick run; the
default is the full size.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count

from bench.data import BENCH, History, make_partner_history
from bench.load import percentile
from bench.run import Report, Row, bench_scale, timed
from portal.billing.drafting import DraftInvoice, charged_price, invoice_draft, proration_items
from portal.billing.exports import invoice_document
from portal.billing.holders import holder_changes
from portal.billing.invoicing import invoice_issue
from portal.billing.models import (
    Invoice,
    InvoiceItem,
    InvoiceSection,
    ResalePriceChange,
    Statement,
    StatementItem,
)
from portal.billing.pdf import render_invoice_pdf
from portal.billing.periods import Cycle
from portal.billing.precompute import proration_accruals_precompute
from portal.billing.selectors import invoice_get
from portal.billing.statements import statements_store
from portal.billing.summary import billing_summary
from portal.core import clock
from portal.lines.models import AssignmentPeriod

TARGET_SECONDS = 60.0
PDF_TARGET_SECONDS = 10.0
PDF_ITEMS = 10_000
SUMMARY_RUNS = 40
SUMMARY_TARGET_RATIO = 3.0
STATEMENTS_TARGET_RATIO = 1.5
LINES, SUB_ACCOUNTS, MOVES = 1_000_000, 10_000, 100_000
# The interval of the worker's precompute_proration_accruals job (portal.billing.tasks).
PRECOMPUTE_EVERY = dt.timedelta(minutes=10)
# The invoice of July 2026 carries June's prorations (30 days).
INVOICE_CYCLE = Cycle(2026, 7, "UTC")


def raw_aggregate(*, partner_id: int, cycle: Cycle) -> tuple[int, int]:
    """The baseline: recurring lines per sub-account at ``cycle``'s start and, for the
    lines whose holder changed in the cycle before, the days each sub-account held
    them (a day belongs to the holder at its end), in one statement.

    Returns (sub-accounts with recurring lines, sub-accounts with day-sums).
    """
    previous = cycle.previous()
    periods = connection.ops.quote_name(AssignmentPeriod._meta.db_table)
    sql = f"""
        WITH recurring AS (
            SELECT sub_account_id, COUNT(*) AS lines
            FROM {periods}
            WHERE partner_id = %(p)s AND start <= %(s)s AND ("end" IS NULL OR "end" > %(s)s)
            GROUP BY sub_account_id
        ),
        changed AS (
            SELECT DISTINCT line_id FROM {periods}
            WHERE partner_id = %(p)s
              AND ((start > %(ps)s AND start < %(s)s) OR ("end" > %(ps)s AND "end" < %(s)s))
        ),
        day_sums AS (
            SELECT p.sub_account_id,
                   SUM(GREATEST(0,
                       LEAST(%(n)s, FLOOR(EXTRACT(EPOCH FROM (COALESCE(p."end", %(s)s) - %(ps)s))
                                          / 86400))
                       - GREATEST(0, FLOOR(EXTRACT(EPOCH FROM (p.start - %(ps)s)) / 86400))
                   )) AS days
            FROM {periods} p JOIN changed c ON c.line_id = p.line_id
            WHERE p.partner_id = %(p)s AND p.start < %(s)s
              AND (p."end" IS NULL OR p."end" > %(ps)s)
            GROUP BY p.sub_account_id
        )
        SELECT (SELECT COUNT(*) FROM recurring), (SELECT COUNT(*) FROM day_sums),
               (SELECT SUM(lines) FROM recurring), (SELECT SUM(days) FROM day_sums)
    """  # noqa: S608 (only a quoted table name is formatted in)
    with connection.cursor() as cursor:
        cursor.execute(
            sql, {"p": partner_id, "s": cycle.start, "ps": previous.start, "n": previous.days}
        )
        row = cursor.fetchone()
    return int(row[0]), int(row[1])


def run(report: Report) -> None:
    scale = bench_scale()
    lines, subs, moves = (max(1, round(x * scale)) for x in (LINES, SUB_ACCOUNTS, MOVES))
    label = f"{lines:,} lines, {subs:,} sub-accounts, {moves:,} moves"
    with timed() as generation:
        history = make_partner_history(
            lines=lines, sub_accounts=subs, moves=moves, cycle=INVOICE_CYCLE.previous()
        )
    report.add(
        Row(
            f"billing: generate {label} (COPY; {history.periods:,} periods)",
            generation(),
            "s",
        )
    )

    _summary(report, history, label)

    with timed() as baseline:
        recurring_subs, prorated_subs = raw_aggregate(
            partner_id=history.partner.pk, cycle=INVOICE_CYCLE
        )
    # The machine may be shared: the load average says how much of it the run had.
    load = os.getloadavg()[0]
    with (
        timed() as issuing,
        clock.frozen_at(INVOICE_CYCLE.start + dt.timedelta(hours=1)),
    ):
        invoice = invoice_issue(principal=BENCH, partner=history.partner, cycle=INVOICE_CYCLE)
    sections = InvoiceSection.objects.filter(invoice=invoice).count()
    items = InvoiceItem.objects.filter(section__invoice=invoice).count()
    assert sections >= recurring_subs, (sections, recurring_subs)
    report.add(
        Row(
            f"billing: invoice_issue, {label} ({sections:,} sections, {items:,} items; "
            f"load average {load:.1f})",
            issuing(),
            "s",
            baseline=baseline(),
            baseline_label=f"raw SQL aggregate, {prorated_subs:,} sub-accounts prorated",
            target=f"< {TARGET_SECONDS:.0f} s",
            met=issuing() < TARGET_SECONDS,
        )
    )
    # Where the time goes: the computation alone, without storing (run after issuing,
    # so on warm caches; issuing includes it).
    with timed() as drafting:
        draft = invoice_draft(partner=history.partner, cycle=INVOICE_CYCLE)
    report.add(Row("billing: of which invoice_draft (compute only, warm)", drafting(), "s"))
    _statements(report, history, invoice, draft, issuing())
    _pdf(report)


def _statements(
    report: Report, history: History, invoice: Invoice, draft: DraftInvoice, invoice_seconds: float
) -> None:
    """The client statements of the invoice just issued: every sub-account resold (a
    default, and its own price for every other one) since June, so each gets the July
    recurring charge and June's prorations, as ``invoice_issue`` issues them in its
    transaction: ``statements_store`` on the invoice's draft (its resale prices read,
    every item priced through the invoice's proration engine, statements and items
    stored by COPY), against ``invoice_issue`` of that invoice measured above (which
    issued none: no resale price was set then)."""
    partner = history.partner
    june = INVOICE_CYCLE.previous().first_day
    now = INVOICE_CYCLE.start
    ResalePriceChange.objects.bulk_create(
        [
            ResalePriceChange(
                partner=partner,
                sub_account_id=None,
                effective_month=june,
                price=Decimal("65.00"),
                created_at=now,
                created_by="bench",
            ),
            *(
                ResalePriceChange(
                    partner=partner,
                    sub_account_id=pk,
                    effective_month=june,
                    price=Decimal("80.00"),
                    created_at=now,
                    created_by="bench",
                )
                for pk in history.sub_account_ids[::2]
            ),
        ],
        batch_size=2000,
    )
    load = os.getloadavg()[0]
    with timed() as storing, transaction.atomic():
        issued = statements_store(partner=partner, invoice=invoice, draft=draft)
    items = StatementItem.objects.filter(statement__invoice=invoice).count()
    assert issued == Statement.objects.filter(invoice=invoice).count() > 0
    report.add(
        Row(
            f"billing: client statements of that invoice (statements_store on its draft: "
            f"{issued:,} statements, {items:,} items; load average {load:.1f})",
            storing(),
            "s",
            baseline=invoice_seconds,
            baseline_label="invoice_issue of the same invoice, above",
            target=f"<= {STATEMENTS_TARGET_RATIO}× the invoice",
            met=storing() <= STATEMENTS_TARGET_RATIO * invoice_seconds,
        )
    )


def _summary(report: Report, history: History, label: str) -> None:
    """``billing_summary`` late in the cycle that holds the moves (June, its invoice
    issued on June 1): what June's invoice charged per sub-account plus the prorations
    accruing for July, p95 over runs alternated with the baseline, a read of the same
    figures precomputed (one row per sub-account in a table filled once)."""
    cycle = INVOICE_CYCLE.previous()
    with clock.frozen_at(cycle.start + dt.timedelta(hours=1)):
        invoice_issue(principal=BENCH, partner=history.partner, cycle=cycle)
    principal = BENCH.acting_for(history.partner.pk)
    now = cycle.end - dt.timedelta(hours=1)
    # Without the worker's sums (every move of the cycle read), then with them as the
    # read finds them at worst: the job ran just under its interval ago and summed
    # through ACCRUAL_LAG before that, so the read adds the lines changed in 15 minutes.
    with timed() as uncached:
        summary = billing_summary(principal=principal, now=now)
    with timed() as precomputing:
        proration_accruals_precompute(principal=BENCH, now=now - PRECOMPUTE_EVERY)
    assert billing_summary(principal=principal, now=now).rows == summary.rows
    table = connection.ops.quote_name("bench_summary_precomputed")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""CREATE UNLOGGED TABLE {table} (
                partner_id bigint, position int, sub_account_id bigint, name text,
                line_count int, recurring numeric, prorations numeric,
                accruing_prorations numeric, discounts numeric, credits numeric, total numeric,
                PRIMARY KEY (partner_id, position))"""
        )
        cursor.executemany(
            f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",  # noqa: S608
            [
                (
                    *(history.partner.pk, k, r.sub_account_id, r.name, r.line_count),
                    *(r.recurring, r.prorations, r.accruing_prorations, r.discounts),
                    *(r.credits, r.total),
                )
                for k, r in enumerate(summary.rows)
            ],
        )
        cursor.execute(f"ANALYZE {table}")

    def precomputed() -> list[tuple[object, ...]]:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT sub_account_id, name, line_count, recurring, prorations, "  # noqa: S608
                f"accruing_prorations, discounts, credits, total FROM {table} "
                "WHERE partner_id = %s ORDER BY position",
                [history.partner.pk],
            )
            return cursor.fetchall()

    # Before: the accruing prorations as items (holder changes, names, rounded items).
    with timed() as items_path:
        changes = holder_changes(partner_id=history.partner.pk, cycle=cycle, until=now)
        proration_items(
            partner=history.partner,
            cycle=cycle,
            price=charged_price(history.partner, cycle),
            changes=changes,
            names=lambda pk, _day: str(pk),
        )
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(SUMMARY_RUNS):
        with timed() as t:
            billing_summary(principal=principal, now=now)
        ours.append(t() * 1000)
        with timed() as t:
            precomputed()
        theirs.append(t() * 1000)
    p95, base = percentile(ours, 95), percentile(theirs, 95)
    # The job's next run: its previous sums plus the lines changed in its interval.
    with timed() as incrementing:
        proration_accruals_precompute(principal=BENCH, now=now)
    accruing = sum(1 for r in summary.rows if r.accruing_prorations)
    report.add(
        Row(
            f"billing: billing_summary, {label} in the cycle, {len(summary.rows):,} rows "
            f"({accruing:,} accruing prorations; the worker's sums of 15 minutes before "
            f"and the lines changed since; p50 {statistics.median(ours):.0f} ms against "
            f"{statistics.median(theirs):.0f} ms, {SUMMARY_RUNS} runs alternated; load "
            f"average {os.getloadavg()[0]:.1f})",
            p95,
            "ms p95",
            baseline=base,
            baseline_label="the same figures precomputed, one SELECT, p95",
            target=f"<= {SUMMARY_TARGET_RATIO:.0f}× precomputed",
            met=p95 <= SUMMARY_TARGET_RATIO * base,
        )
    )
    report.add(
        Row(
            "billing: billing_summary before the worker's first sums of the cycle (every "
            "move of the cycle read by one SQL aggregate, once)",
            uncached() * 1000,
            "ms",
        )
    )
    report.add(
        Row(
            "billing: the worker's first summary of the cycle (proration_accruals_precompute "
            "with none before: one INSERT … SELECT of the sections and every move of the "
            "cycle)",
            precomputing() * 1000,
            "ms",
        )
    )
    report.add(
        Row(
            "billing: the worker's run every 10 minutes (the lines changed in 10 minutes "
            "added to its rows: one UPDATE of the rows they change, one INSERT of new ones)",
            incrementing() * 1000,
            "ms",
        )
    )
    report.add(
        Row(
            f"billing: the accruing prorations as before this change ({len(changes):,} "
            "holder changes and their rounded items in Python, once)",
            items_path() * 1000,
            "ms",
        )
    )


def _pdf(report: Report) -> None:
    """The PDF of an invoice whose one section holds 10,000 items, by the page's path:
    ``invoice_get`` (three queries), the document's formatting, fpdf2's drawing."""
    # Lines activated in the previous cycle, 99% of them in one sub-account (1% in
    # Available): one "New line" item each on that sub-account's section.
    history = make_partner_history(
        lines=PDF_ITEMS * 100 // 99 + 1,
        sub_accounts=1,
        moves=0,
        activations=PDF_ITEMS * 100 // 99 + 1,
        disconnections=0,
        cycle=INVOICE_CYCLE.previous(),
        name="Bench PDF Partner",
        number_base=5_000_000,
    )
    with clock.frozen_at(INVOICE_CYCLE.start + dt.timedelta(hours=1)):
        invoice = invoice_issue(principal=BENCH, partner=history.partner, cycle=INVOICE_CYCLE)
    largest = (
        InvoiceItem.objects.filter(section__invoice=invoice)
        .values("section_id")
        .annotate(n=Count("id"))
        .order_by("-n")
        .first()
    )
    with timed() as rendering:
        full = invoice_get(principal=BENCH.acting_for(history.partner.pk), invoice_id=invoice.pk)
        data = render_invoice_pdf(invoice_document(full))
    pages = data.count(b"/Type /Page\n")
    report.add(
        Row(
            f"billing: invoice PDF, largest section {largest['n'] if largest else 0:,} items "
            f"({len(data) / 1e6:.1f} MB, {pages} pages)",
            rendering(),
            "s",
            target=f"< {PDF_TARGET_SECONDS:.0f} s",
            met=rendering() < PDF_TARGET_SECONDS,
        )
    )
