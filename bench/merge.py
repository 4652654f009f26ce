"""Merge suite: a 100,000-line merge end to end beside one raw UPDATE of the same rows.

The partner's history is COPYed in (``bench.data``) with one source sub-account
holding exactly ``100,000 × BENCH_SCALE`` lines. The measured path is the portal's:
``merge_request_create`` → ``merge_request_approve`` → the worker's task
``process_merge_request`` run in this process (batches of ``MERGE_BATCH_SIZE`` lines,
each its own transaction: close periods, open ``via_merge`` ones, move the lines,
adjust counts, one audit event per line). The baseline, in the same run: raw SQL doing
the same steps for the same rows in one transaction (:mod:`bench.rawsql`, rolled back
so it does not disturb the checks); target at most 5 × that. The longest
batch transaction says how long a merge can hold the lines' row locks at a time.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db import transaction
from django.urls import get_resolver

from bench.data import BENCH, make_partner_history
from bench.rawsql import raw_move
from bench.run import Report, Row, bench_scale, timed
from portal.audit.models import AuditEvent
from portal.billing.periods import Cycle
from portal.lines.models import AssignmentPeriod, Line
from portal.partners.models import SubAccount
from portal.workflows.models import MergeRequest
from portal.workflows.services import merges
from portal.workflows.tasks import process_merge_request

MERGE_LINES = 100_000
SUB_ACCOUNTS = 3
HISTORY_CYCLE = Cycle(2026, 6, "UTC")
RATIO_TARGET = 5.0  # issue 7
LONGEST_BATCH_TARGET = 1.0  # seconds: short enough not to stall other writers


def _lines_for(source_lines: int) -> int:
    """Total lines such that the first sub-account holds exactly ``source_lines``.

    ``bench.data`` puts line ``i`` in Available when ``i % 100 == 0`` and otherwise in
    sub-account ``i % SUB_ACCOUNTS``; count the ones that land in the first.
    """
    total, held = 0, 0
    while held < source_lines:
        if total % 100 != 0 and total % SUB_ACCOUNTS == 0:
            held += 1
        total += 1
    return total


def run(report: Report) -> None:
    wanted = max(1, round(MERGE_LINES * bench_scale()))
    with timed() as setup:
        history = make_partner_history(
            lines=_lines_for(wanted),
            sub_accounts=SUB_ACCOUNTS,
            moves=0,
            activations=0,
            disconnections=0,
            cycle=HISTORY_CYCLE,
            name="Merge Bench Partner",
            number_base=9_000_000,
        )
    source_id, target_id = history.sub_account_ids[0], history.sub_account_ids[1]
    source_lines = SubAccount.objects.get(pk=source_id).line_count
    assert source_lines == wanted, (source_lines, wanted)
    print(f"  data: {history.lines:,} lines in {setup():.1f} s", flush=True)

    principal = BENCH.acting_for(history.partner.pk)
    # Warm up as a running worker is: the URL configuration, which the notifications'
    # links import on first use (every app's views and API, about 1 s), is loaded once
    # per process, not per merge.
    get_resolver().url_patterns  # noqa: B018
    batch_seconds: list[float] = []
    real_batch = merges.merge_request_move_batch

    def timed_batch(**kwargs: object) -> int:
        start = time.perf_counter()
        moved = real_batch(**kwargs)  # type: ignore[arg-type]
        if moved:  # the last call finds nothing left and only ends the loop
            batch_seconds.append(time.perf_counter() - start)
        return moved

    merges.merge_request_move_batch = timed_batch  # type: ignore[assignment]
    try:
        with timed() as end_to_end:
            request = merges.merge_request_create(
                principal=principal, source_ids=[source_id], target_id=target_id
            )
            merges.merge_request_approve(principal=BENCH, request_id=request.pk)
            result = process_merge_request.call(request.pk)
    finally:
        merges.merge_request_move_batch = real_batch  # type: ignore[assignment]
    elapsed = end_to_end()

    done = MergeRequest.objects.get(pk=request.pk)
    assert result["status"] == "completed", result
    assert done.lines_moved == done.lines_total == wanted
    moved_ids = list(
        Line.objects.filter(partner_id=history.partner.pk, sub_account_id=target_id)
        .filter(periods__via_merge=True, periods__end__isnull=True)
        .values_list("pk", flat=True)
    )
    assert len(moved_ids) == wanted
    assert AuditEvent.objects.filter(
        partner_id=history.partner.pk, action="line.merge"
    ).count() == (wanted)
    assert AssignmentPeriod.objects.filter(
        partner_id=history.partner.pk, via_merge=True
    ).count() == (wanted)

    # The baseline moves the same lines back with the same steps in raw SQL (set-based,
    # one transaction), rolled back so the checks above stay true.
    with transaction.atomic(), timed() as raw:
        raw_move(
            partner_id=history.partner.pk,
            line_ids=moved_ids,
            target_id=source_id,
            actor_id=0,
            via_merge=True,
        )
        transaction.set_rollback(True)
    raw_seconds = raw()

    report.add(
        Row(
            f"merge {wanted:,} lines end to end (request, approve, task)",
            elapsed,
            "s",
            baseline=raw_seconds,
            baseline_label="raw SQL: the same steps, set-based, one transaction",
            target=f"<= {RATIO_TARGET:.0f}× raw SQL",
            met=elapsed <= RATIO_TARGET * raw_seconds,
        )
    )
    report.add(
        Row(
            f"longest batch transaction ({len(batch_seconds)} batches of "
            f"{settings.MERGE_BATCH_SIZE:,})",
            max(batch_seconds),
            "s",
            target=f"< {LONGEST_BATCH_TARGET:.0f} s",
            met=max(batch_seconds) < LONGEST_BATCH_TARGET,
        )
    )
    report.add(Row("merge throughput", wanted / elapsed, "lines/s"))
