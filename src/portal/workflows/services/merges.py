"""Writes for merge requests (domain §5): preview, request, decisions and processing.

One function per transition, each through the shared request transitions
(``workflows.services.transitions``). Merge processing runs in a task, in batches:
each batch is one short transaction that moves the next lines still in a source with
the one relocation of the lines app (``lines.relocation``, ``via_merge`` periods) and
adds them to ``lines_moved``. The lines still to move are exactly the active lines
still in a source (nothing else may move them while the sources are locked), so a run
that died at any point resumes by simply continuing, never moving a line twice or
losing one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest

from portal.accounts.policies import require
from portal.analytics.rollups import line_days_rejudge
from portal.audit.services import audit_record
from portal.billing.transfers import credit_balances_transfer
from portal.core import clock
from portal.core.bulk import commit_without_flush_wait
from portal.core.errors import Conflict, Invalid, NotFound
from portal.core.principal import Principal
from portal.core.retry import retry_on_lost_race
from portal.core.tenancy import db_id
from portal.lines.relocation import MovingLine, lines_relocate
from portal.partners.models import Partner, SubAccount, SubAccountStatus
from portal.partners.policies import (
    ensure_editable,
    ensure_standard,
    ensure_unlocked,
)
from portal.partners.selectors import partner_for
from portal.partners.services import sub_accounts_lock
from portal.workflows.models import (
    MergeRequest,
    MergeRequestSource,
    MergeStatus,
)
from portal.workflows.policies import (
    can_make_requests,
    require_can_decide,
)
from portal.workflows.services.transitions import (
    active_lines_in,
    clean_reason,
    close_pending,
    lock_request,
    merge_source_ids,
    notify_on_commit,
    release_locks,
    requester_fields,
    status_conflict,
    take_locks,
    transition,
)

logger = logging.getLogger("portal.workflows")

MAX_MERGE_SOURCES = 50


# --- preview and request ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MergePreview:
    """What a merge would do, shown before the request is made."""

    target: SubAccount
    sources: list[SubAccount]

    @property
    def lines_total(self) -> int:
        return sum(s.line_count for s in self.sources)

    @property
    def billing_effect(self) -> str:
        return (
            f"No prorations: the {self.lines_total} lines stay billed to their current "
            "sub-accounts for the rest of this cycle (already invoiced in advance); from the "
            f"next cycle they are billed in {self.target.name}. Each source's invoice section "
            f"keeps its name with “(merged into {self.target.name})”."
        )

    @property
    def analytics_effect(self) -> str:
        names = ", ".join(s.name for s in self.sources)
        return (
            f"{self.target.name}'s analytics will include the whole history of {names}; "
            "the merged sub-accounts stay visible, read-only."
        )


def _merge_parties(
    principal: Principal, partner_id: int, source_ids: Any, target_id: Any, *, lock: bool
) -> MergePreview:
    """Check and load the sources and target; lock them in id order when ``lock``."""
    if not isinstance(source_ids, list | tuple) or not source_ids:
        raise Invalid("Choose at least one sub-account to merge.", field="source_ids")
    if len(source_ids) > MAX_MERGE_SOURCES:
        raise Invalid(
            f"At most {MAX_MERGE_SOURCES} sub-accounts merge at once.", field="source_ids"
        )
    ids: list[int] = []
    for raw in [*source_ids, target_id]:
        key = db_id(raw)
        if key is None:
            raise NotFound(f"Sub-account {raw} not found.")
        ids.append(key)
    *sources_ids, target_key = ids
    if len(set(sources_ids)) != len(sources_ids):
        raise Invalid("A sub-account is listed twice among the sources.", field="source_ids")
    if target_key in sources_ids:
        raise Invalid("The target cannot also be one of the sources.", field="target_id")
    qs = SubAccount.objects.visible_to(principal).filter(partner_id=partner_id, pk__in=ids)
    if lock:
        qs = qs.select_for_update(no_key=True)
    found = {sa.pk: sa for sa in qs.order_by("pk")}
    for key in ids:
        if key not in found:
            raise NotFound(f"Sub-account {key} not found.")
    sources = [found[key] for key in sources_ids]
    target = found[target_key]
    for sa in sources:
        ensure_standard(sa, action="merged")
        ensure_editable(sa)
        ensure_unlocked(sa)
    ensure_standard(target, action="merged into")
    ensure_editable(target)
    ensure_unlocked(target)
    return MergePreview(target=target, sources=sources)


def merge_request_preview(*, principal: Principal, source_ids: Any, target_id: Any) -> MergePreview:
    """What would move, per source, with the same checks as the request itself."""
    require(can_make_requests(principal), "Your role may not request merges.")
    partner = partner_for(principal)
    return _merge_parties(principal, partner.pk, source_ids, target_id, lock=False)


@retry_on_lost_race
def merge_request_create(
    *, principal: Principal, source_ids: Any, target_id: Any, reason: Any = None
) -> MergeRequest:
    """Ask for a merge; the sources and the target are locked until it is decided."""
    require(can_make_requests(principal), "Your role may not request merges.")
    partner = partner_for(principal)
    reason_text = clean_reason(reason)
    with transaction.atomic():
        parties = _merge_parties(principal, partner.pk, source_ids, target_id, lock=True)
        at = clock.now()
        request = MergeRequest.objects.create(
            partner=partner,
            target=parties.target,
            reason=reason_text,
            created_at=at,
            lines_total=parties.lines_total,
            **requester_fields(principal),
        )
        MergeRequestSource.objects.bulk_create(
            MergeRequestSource(
                partner=partner, merge_request=request, sub_account=sa, line_count=sa.line_count
            )
            for sa in parties.sources
        )
        take_locks(request, [*(s.pk for s in parties.sources), parties.target.pk])
        audit_record(
            principal=principal,
            partner_id=partner.pk,
            action="merge_request.create",
            object_type="merge_request",
            object_id=request.pk,
            sub_account_id=parties.target.pk,
            at=at,
            data={
                "after": {
                    "status": request.status,
                    "source_ids": [s.pk for s in parties.sources],
                    "source_names": [s.name for s in parties.sources],
                    "target_id": parties.target.pk,
                    "target_name": parties.target.name,
                    "lines_total": request.lines_total,
                    "reason": reason_text,
                }
            },
        )
    return request


# --- decisions -------------------------------------------------------------------------


@retry_on_lost_race
def merge_request_approve(
    *, principal: Principal, request_id: Any, reason: Any = None
) -> MergeRequest:
    """Approve a pending merge and queue its processing (after commit, exactly once)."""
    note = clean_reason(reason)
    with transaction.atomic():
        request = lock_request(MergeRequest, principal, request_id, what="Merge request")
        require_can_decide(principal, request, Partner.objects.get(pk=request.partner_id))
        if request.status != MergeStatus.PENDING_APPROVAL:
            raise status_conflict(request, "approved")
        at = clock.now()
        lines_total = active_lines_in(request.partner_id, merge_source_ids(request)).count()
        transition(
            MergeRequest,
            request,
            MergeStatus.PENDING_APPROVAL,
            "approved",
            status=MergeStatus.APPROVED,
            decided_by_label=principal.label[:200],
            decided_at=at,
            decision_reason=note,
            lines_total=lines_total,
        )
        audit_record(
            principal=principal,
            partner_id=request.partner_id,
            action="merge_request.approve",
            object_type="merge_request",
            object_id=request.pk,
            sub_account_id=request.target_id,
            at=at,
            data={
                "before": {"status": MergeStatus.PENDING_APPROVAL},
                "after": {"status": MergeStatus.APPROVED, "lines_total": lines_total},
                "reason": note,
            },
        )
        pk = request.pk
        transaction.on_commit(lambda: _enqueue_merge(pk))
        notify_on_commit("merge", pk, "approved")
    return request


def _enqueue_merge(merge_request_id: int) -> None:
    from portal.workflows.tasks import process_merge_request

    process_merge_request.enqueue(merge_request_id)


@retry_on_lost_race
def merge_request_reject(*, principal: Principal, request_id: Any, reason: Any) -> MergeRequest:
    """Refuse a pending merge, with the reason the requester will read; unlocks."""
    note = clean_reason(reason, required=True, label="A reason for the rejection")
    return close_pending(
        MergeRequest, principal=principal, request_id=request_id, verb="reject", note=note
    )


@retry_on_lost_race
def merge_request_cancel(
    *, principal: Principal, request_id: Any, reason: Any = None
) -> MergeRequest:
    """Withdraw a merge that is still pending approval; unlocks."""
    note = clean_reason(reason)
    return close_pending(
        MergeRequest, principal=principal, request_id=request_id, verb="cancel", note=note
    )


@retry_on_lost_race
def merge_request_resume(*, principal: Principal, request_id: Any) -> MergeRequest:
    """Queue a failed merge again (staff); it continues where it stopped."""
    with transaction.atomic():
        request = lock_request(MergeRequest, principal, request_id, what="Merge request")
        require(principal.is_staff, "Only provider staff resume a failed merge.")
        if request.status != MergeStatus.FAILED:
            raise status_conflict(request, "resumed")
        transition(
            MergeRequest, request, MergeStatus.FAILED, "resumed", status=MergeStatus.APPROVED
        )
        audit_record(
            principal=principal,
            partner_id=request.partner_id,
            action="merge_request.resume",
            object_type="merge_request",
            object_id=request.pk,
            sub_account_id=request.target_id,
            data={
                "before": {"status": MergeStatus.FAILED, "failure": request.failure},
                "after": {"status": MergeStatus.APPROVED},
            },
        )
        pk = request.pk
        transaction.on_commit(lambda: _enqueue_merge(pk))
    return request


# --- processing (called by the task) ----------------------------------------------------


@retry_on_lost_race
def merge_request_start(*, principal: Principal, request_id: int) -> MergeRequest | None:
    """approved → processing. A request already processing is resumed as it is.

    Returns None when there is nothing to process (completed, rejected, …).
    """
    with transaction.atomic():
        request = lock_request(MergeRequest, principal, request_id, what="Merge request")
        if request.status == MergeStatus.PROCESSING:
            return request
        if request.status != MergeStatus.APPROVED:
            return None
        at = clock.now()
        transition(
            MergeRequest,
            request,
            MergeStatus.APPROVED,
            "started",
            status=MergeStatus.PROCESSING,
            started_at=request.started_at or at,
            failure="",
        )
        audit_record(
            principal=principal,
            partner_id=request.partner_id,
            action="merge_request.start",
            object_type="merge_request",
            object_id=request.pk,
            sub_account_id=request.target_id,
            at=at,
            data={
                "before": {"status": MergeStatus.APPROVED},
                "after": {"status": MergeStatus.PROCESSING},
                "lines_total": request.lines_total,
                "lines_moved": request.lines_moved,
            },
        )
    return request


@retry_on_lost_race
def merge_request_move_batch(*, principal: Principal, request_id: int, batch_size: int) -> int:
    """Move the next ``batch_size`` lines still in a source into the target.

    One short transaction: lock the request (so two runners take turns), lock the
    batch's lines, relocate them set-based with ``via_merge`` periods and one audit
    event per line (:func:`_merge_lines`), and add them to ``lines_moved``. Returns how
    many moved; 0 when no line is left or the request is no longer processing.

    A batch's commit does not wait for the disk (``commit_without_flush_wait``): a
    server crash may undo the last batches, which the task moves again when it
    resumes, as it does a killed worker's; completing the request waits, and so makes
    every batch before it durable.
    """
    with transaction.atomic():
        commit_without_flush_wait()
        request = lock_request(MergeRequest, principal, request_id, what="Merge request")
        if request.status != MergeStatus.PROCESSING:
            return 0
        # The batch in index order of (partner, sub_account, number), locked in id order
        # like every path that locks lines (ingestion's batches lock them too).
        sources = merge_source_ids(request)
        batch = active_lines_in(request.partner_id, sources).order_by("sub_account_id", "number")
        lines = list(
            active_lines_in(request.partner_id, sources)
            .filter(pk__in=batch.values("pk")[:batch_size])
            .select_for_update(no_key=True)
            .order_by("pk")
            .values_list("pk", "sub_account_id", "number")
        )
        if not lines:
            return 0
        moved = _merge_lines(principal=principal, request=request, lines=lines)
        MergeRequest.objects.filter(pk=request.pk).update(
            lines_moved=F("lines_moved") + moved,
            lines_total=Greatest(F("lines_total"), F("lines_moved") + moved),
        )
    return moved


def _merge_lines(
    *, principal: Principal, request: MergeRequest, lines: Sequence[MovingLine]
) -> int:
    """Relocate one batch of locked lines, given as ``(id, sub_account_id, number)``, into
    the merge's target, inside the caller's transaction. Returns how many moved.

    The sources are locked by the request, so no lock checks: the sub-accounts are
    locked after the lines (id order), then :func:`~portal.lines.relocation.lines_relocate`
    opens ``via_merge`` periods in the target (billing does not prorate them, domain §3)
    with one ``line.merge`` audit event per line; on the merge day a line's rows in the
    source and the target are one line-day (domain §4), so analytics re-judges them.
    """
    locked = sub_accounts_lock([*(source_id for _, source_id, _ in lines), request.target_id])
    done = lines_relocate(
        principal=principal,
        partner_id=request.partner_id,
        lines=lines,
        target=locked[request.target_id],
        action="line.merge",
        via_merge=True,
        data={"merge_request_id": request.pk},
    )
    line_days_rejudge(
        partner_id=request.partner_id, line_ids=[pk for pk, _, _ in lines], since=done.at
    )
    return done.moved


@retry_on_lost_race
def merge_request_complete(*, principal: Principal, request_id: int) -> MergeRequest:
    """processing → completed once no line is left in a source: sources become merged."""
    with transaction.atomic():
        request = lock_request(MergeRequest, principal, request_id, what="Merge request")
        if request.status != MergeStatus.PROCESSING:
            return request
        source_ids = merge_source_ids(request)
        if active_lines_in(request.partner_id, source_ids).exists():
            raise Conflict(f"{request} still has lines to move.")
        at = clock.now()
        target_name = SubAccount.objects.values_list("name", flat=True).get(
            partner_id=request.partner_id, pk=request.target_id
        )
        credit_moved = credit_balances_transfer(
            principal=principal,
            partner_id=request.partner_id,
            sub_account_ids=source_ids,
            to_sub_account_id=request.target_id,
            event=f"merged into {target_name}",
            reference=f"merge request {request.pk}",
            at=at,
        )
        sub_accounts_lock([*source_ids, request.target_id])  # after the partner's row
        SubAccount.objects.filter(pk__in=source_ids).update(
            status=SubAccountStatus.MERGED, merged_into_id=request.target_id, lock_reason=""
        )
        release_locks(request, [request.target_id])
        transition(
            MergeRequest,
            request,
            MergeStatus.PROCESSING,
            "completed",
            status=MergeStatus.COMPLETED,
            completed_at=at,
        )
        request.refresh_from_db()
        audit_record(
            principal=principal,
            partner_id=request.partner_id,
            action="merge_request.complete",
            object_type="merge_request",
            object_id=request.pk,
            sub_account_id=request.target_id,
            at=at,
            data={
                "before": {"status": MergeStatus.PROCESSING},
                "after": {"status": MergeStatus.COMPLETED},
                "source_ids": source_ids,
                "source_names": list(
                    SubAccount.objects.filter(pk__in=source_ids)
                    .order_by("pk")
                    .values_list("name", flat=True)
                ),
                "target_id": request.target_id,
                "lines_moved": request.lines_moved,
                # The sources' credit balances, now the target's (domain §3).
                **({"credit_moved": credit_moved} if credit_moved else {}),
            },
        )
        notify_on_commit("merge", request.pk, "completed")
    return request


@retry_on_lost_race
def merge_request_fail(*, principal: Principal, request_id: int, error: str) -> MergeRequest:
    """processing → failed, keeping the locks: a resume continues where it stopped."""
    with transaction.atomic():
        request = lock_request(MergeRequest, principal, request_id, what="Merge request")
        if request.status not in (MergeStatus.PROCESSING, MergeStatus.APPROVED):
            return request
        before = request.status
        transition(
            MergeRequest,
            request,
            before,
            "failed",
            status=MergeStatus.FAILED,
            failure=error[:2000],
        )
        audit_record(
            principal=principal,
            partner_id=request.partner_id,
            action="merge_request.fail",
            object_type="merge_request",
            object_id=request.pk,
            sub_account_id=request.target_id,
            data={
                "before": {"status": before},
                "after": {"status": MergeStatus.FAILED},
                "error": error[:2000],
                "lines_moved": request.lines_moved,
            },
        )
    return request


def merge_request_run(
    *, principal: Principal, request_id: int, batch_size: int | None = None
) -> MergeRequest | None:
    """Process a merge to completion, batch by batch; safe to run again at any point."""
    size = batch_size or settings.MERGE_BATCH_SIZE
    pause = settings.MERGE_BATCH_PAUSE_SECONDS
    request = merge_request_start(principal=principal, request_id=request_id)
    if request is None:
        return MergeRequest.objects.filter(pk=request_id).first()
    try:
        while merge_request_move_batch(principal=principal, request_id=request_id, batch_size=size):
            if pause:
                time.sleep(pause)
        return merge_request_complete(principal=principal, request_id=request_id)
    except Exception as exc:
        try:
            merge_request_fail(principal=principal, request_id=request_id, error=str(exc))
        except Exception:
            logger.exception("Could not mark merge request %s failed", request_id)
        raise
