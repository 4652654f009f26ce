"""Writes for merge and deletion requests: one function per transition (SPEC §5).

Every transition locks the request row (``SELECT … FOR NO KEY UPDATE``; SQLite's
IMMEDIATE transaction serialises writers anyway) and then moves the status with a
conditional ``UPDATE … WHERE status = <expected>``, so of two approvers exactly one
wins and the other gets 409. After the request row, locks follow the one order of
docs/architecture.md: the partner, the lines (id order), the sub-accounts (id order);
a transaction the database still ends as a race's loser is run again
(``retry_on_lost_race``), so no request is left pending for that.

Sub-accounts are locked for a request by a conditional update of their
``lock_reason`` from empty to the request's own text: two requests that reach for
the same sub-account cannot both take it, whatever the interleaving.

Merge processing runs in a task, in batches: each batch is one short transaction
that moves the next lines still in a source and adds them to ``lines_moved``. The
lines still to move are exactly the active lines still in a source (nothing else
may move them while the sources are locked), so a run that died at any point
resumes by simply continuing, never moving a line twice or losing one.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Greatest
from django.template.loader import render_to_string

from portal.accounts.models import ApiKey
from portal.accounts.policies import require
from portal.accounts.principal import Principal
from portal.analytics.rollups import line_days_rejudge
from portal.audit.services import audit_record
from portal.billing.services import credit_balances_transfer
from portal.core import clock
from portal.core.errors import Conflict, Invalid, NotFound
from portal.core.localtime import format_local
from portal.core.retry import retry_on_lost_race
from portal.core.tenancy import db_id
from portal.core.text import clean_text
from portal.lines.models import Line, LineStatus
from portal.lines.relocation import MovingLine, lines_relocate
from portal.partners.models import Partner, SubAccount, SubAccountStatus
from portal.partners.policies import (
    ensure_can_hold_lines,
    ensure_editable,
    ensure_standard,
    ensure_unlocked,
)
from portal.partners.selectors import partner_for
from portal.partners.services import sub_accounts_lock
from portal.workflows.models import (
    DeletionRequest,
    DeletionStatus,
    LineDisposition,
    MergeRequest,
    MergeRequestSource,
    MergeStatus,
    RequestBase,
)
from portal.workflows.policies import (
    can_cancel_request,
    can_make_requests,
    can_restore,
    require_can_decide,
)

logger = logging.getLogger("portal.workflows")

MAX_MERGE_SOURCES = 50
CONTACT_FIELDS = ("contact_name", "contact_email", "contact_phone", "internal_reference", "notes")


# --- shared helpers ---------------------------------------------------------------------


def _clean_reason(value: Any, *, required: bool = False, label: str = "Reason") -> str:
    if value is not None and not isinstance(value, str):
        raise Invalid(f"{label} must be text.", field="reason")
    return clean_text(
        value, field="reason", label=label, max_length=2000, required=required, multiline=True
    )


def _requester_email(principal: Principal) -> str:
    """Where notifications go: the user, or the person who created the API key."""
    if principal.kind == "user":
        return principal.label
    if principal.kind == "api_key" and principal.id is not None:
        email = (
            ApiKey.objects.filter(pk=principal.id)
            .values_list("created_by__email", flat=True)
            .first()
        )
        return email or ""
    return ""


def _requester_fields(principal: Principal) -> dict[str, Any]:
    return {
        "requested_by_type": principal.kind,
        "requested_by_id": principal.id,
        "requested_by_label": principal.label[:200],
        "requester_email": _requester_email(principal),
    }


def _lock_request[R: RequestBase](
    model: type[R], principal: Principal, request_id: Any, *, what: str
) -> R:
    """The request row, locked, if the principal may see it (404 otherwise)."""
    key = db_id(request_id)
    row = (
        model.objects.visible_to(principal).select_for_update(no_key=True).filter(pk=key).first()
        if key is not None
        else None
    )
    if row is None:
        raise NotFound(f"{what} {request_id} not found.")
    return row


def _status_conflict(request: RequestBase, doing: str) -> Conflict:
    state = request.get_status_display().lower()  # type: ignore[attr-defined]
    return Conflict(f"{request} is {state}; it cannot be {doing}.")


def _transition(
    model: type[RequestBase], request: RequestBase, expected: str, doing: str, **changes: Any
) -> None:
    """Move ``request`` from ``expected`` with a conditional UPDATE; 409 when it moved on."""
    updated = model.objects.filter(pk=request.pk, status=expected).update(**changes)
    if updated != 1:
        raise _status_conflict(request, doing)
    for name, value in changes.items():
        setattr(request, name, value)


def _take_locks(request: RequestBase, sub_account_ids: Sequence[int]) -> None:
    """Lock the sub-accounts for ``request``: all of them, or none and 409."""
    wanted = sorted(set(sub_account_ids))
    taken = SubAccount.objects.filter(
        pk__in=wanted, lock_reason="", status=SubAccountStatus.ACTIVE
    ).update(lock_reason=request.lock_text)  # type: ignore[attr-defined]
    if taken != len(wanted):
        raise Conflict("A sub-account of this request is locked by another request; retry later.")


def _release_locks(request: RequestBase, sub_account_ids: Sequence[int]) -> None:
    sub_accounts_lock(sub_account_ids)  # in id order: the UPDATE alone takes them in any
    SubAccount.objects.filter(
        pk__in=list(sub_account_ids),
        lock_reason=request.lock_text,  # type: ignore[attr-defined]
    ).update(lock_reason="")


def _notify(kind: str, request_id: int, event: str) -> None:
    """Email the requester about ``event``; runs after commit, and never fails the change."""
    model = MergeRequest if kind == "merge" else DeletionRequest
    try:
        request = model.objects.select_related("partner").get(pk=request_id)
        if not request.requester_email:
            return
        context: dict[str, Any] = {"request": request, "event": event, "kind": kind}
        if isinstance(request, MergeRequest):
            context["sources"] = [
                s.sub_account.name for s in request.sources.select_related("sub_account")
            ]
            context["target"] = request.target.name
        else:
            context["sub_account"] = request.sub_account.name
            if request.purge_after:
                context["purge_after"] = format_local(request.purge_after, request.partner.timezone)
        subject = render_to_string("workflows/email/subject.txt", context).strip()
        body = render_to_string("workflows/email/notification.txt", context)
        send_mail(subject, body, None, [request.requester_email])
    except Exception:
        logger.exception("Could not email the requester of %s request %s", kind, request_id)


def _notify_on_commit(kind: str, request_id: int, event: str) -> None:
    transaction.on_commit(lambda: _notify(kind, request_id, event))


# --- merge: preview and request ---------------------------------------------------------


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
    reason_text = _clean_reason(reason)
    with transaction.atomic():
        parties = _merge_parties(principal, partner.pk, source_ids, target_id, lock=True)
        at = clock.now()
        request = MergeRequest.objects.create(
            partner=partner,
            target=parties.target,
            reason=reason_text,
            created_at=at,
            lines_total=parties.lines_total,
            **_requester_fields(principal),
        )
        MergeRequestSource.objects.bulk_create(
            MergeRequestSource(
                partner=partner, merge_request=request, sub_account=sa, line_count=sa.line_count
            )
            for sa in parties.sources
        )
        _take_locks(request, [*(s.pk for s in parties.sources), parties.target.pk])
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


def _source_ids(request: MergeRequest) -> list[int]:
    return list(
        MergeRequestSource.objects.filter(merge_request_id=request.pk)
        .order_by("sub_account_id")
        .values_list("sub_account_id", flat=True)
    )


def _lines_in(partner_id: int, sub_account_ids: Sequence[int]) -> QuerySet[Line]:
    return Line.objects.filter(
        partner_id=partner_id, status=LineStatus.ACTIVE, sub_account_id__in=list(sub_account_ids)
    )


# --- merge: decisions -------------------------------------------------------------------


@retry_on_lost_race
def merge_request_approve(
    *, principal: Principal, request_id: Any, reason: Any = None
) -> MergeRequest:
    """Approve a pending merge and queue its processing (after commit, exactly once)."""
    note = _clean_reason(reason)
    with transaction.atomic():
        request = _lock_request(MergeRequest, principal, request_id, what="Merge request")
        require_can_decide(principal, request, Partner.objects.get(pk=request.partner_id))
        if request.status != MergeStatus.PENDING_APPROVAL:
            raise _status_conflict(request, "approved")
        at = clock.now()
        lines_total = _lines_in(request.partner_id, _source_ids(request)).count()
        _transition(
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
        _notify_on_commit("merge", pk, "approved")
    return request


def _enqueue_merge(merge_request_id: int) -> None:
    from portal.workflows.tasks import process_merge_request

    process_merge_request.enqueue(merge_request_id)


@retry_on_lost_race
def merge_request_reject(*, principal: Principal, request_id: Any, reason: Any) -> MergeRequest:
    """Refuse a pending merge, with the reason the requester will read; unlocks."""
    note = _clean_reason(reason, required=True, label="A reason for the rejection")
    return _close_pending(
        MergeRequest, principal=principal, request_id=request_id, verb="reject", note=note
    )


@retry_on_lost_race
def merge_request_cancel(
    *, principal: Principal, request_id: Any, reason: Any = None
) -> MergeRequest:
    """Withdraw a merge that is still pending approval; unlocks."""
    note = _clean_reason(reason)
    return _close_pending(
        MergeRequest, principal=principal, request_id=request_id, verb="cancel", note=note
    )


def _close_pending[R: (MergeRequest, DeletionRequest)](
    model: type[R],
    *,
    principal: Principal,
    request_id: Any,
    verb: Literal["reject", "cancel"],
    note: str,
) -> R:
    """Close a request still pending approval: ``reject`` (a decider, who gives the reason
    the requester is emailed) or ``cancel`` (withdrawn). Either way the request's
    sub-accounts are unlocked and one event records it at ``decided_at``."""
    merge = model is MergeRequest
    status = MergeStatus if merge else DeletionStatus
    closed, doing = (
        (status.REJECTED, "rejected") if verb == "reject" else (status.CANCELLED, "cancelled")
    )
    with transaction.atomic():
        request = _lock_request(
            model, principal, request_id, what="Merge request" if merge else "Deletion request"
        )
        if verb == "reject":
            require_can_decide(principal, request, Partner.objects.get(pk=request.partner_id))
        else:
            require(can_cancel_request(principal), "Your role may not cancel requests.")
        if request.status != status.PENDING_APPROVAL:
            raise _status_conflict(request, doing)
        at = clock.now()
        _transition(
            model,
            request,
            status.PENDING_APPROVAL,
            doing,
            status=closed,
            decided_by_label=principal.label[:200],
            decided_at=at,
            decision_reason=note,
        )
        if isinstance(request, MergeRequest):
            sub_account_id = request.target_id
            _release_locks(request, [*_source_ids(request), sub_account_id])
        else:
            sub_account_id = request.sub_account_id
            _release_locks(request, [sub_account_id])
        audit_record(
            principal=principal,
            partner_id=request.partner_id,
            action=f"{request.kind}_request.{verb}",
            object_type=f"{request.kind}_request",
            object_id=request.pk,
            sub_account_id=sub_account_id,
            at=at,
            data={
                "before": {"status": status.PENDING_APPROVAL},
                "after": {"status": closed},
                "reason": note,
            },
        )
        if verb == "reject":
            _notify_on_commit(request.kind, request.pk, doing)
    return request


@retry_on_lost_race
def merge_request_resume(*, principal: Principal, request_id: Any) -> MergeRequest:
    """Queue a failed merge again (staff); it continues where it stopped."""
    with transaction.atomic():
        request = _lock_request(MergeRequest, principal, request_id, what="Merge request")
        require(principal.is_staff, "Only provider staff resume a failed merge.")
        if request.status != MergeStatus.FAILED:
            raise _status_conflict(request, "resumed")
        _transition(
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


# --- merge: processing (called by the task) ----------------------------------------------


@retry_on_lost_race
def merge_request_start(*, principal: Principal, request_id: int) -> MergeRequest | None:
    """approved → processing. A request already processing is resumed as it is.

    Returns None when there is nothing to process (completed, rejected, …).
    """
    with transaction.atomic():
        request = _lock_request(MergeRequest, principal, request_id, what="Merge request")
        if request.status == MergeStatus.PROCESSING:
            return request
        if request.status != MergeStatus.APPROVED:
            return None
        at = clock.now()
        _transition(
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
    """
    with transaction.atomic():
        request = _lock_request(MergeRequest, principal, request_id, what="Merge request")
        if request.status != MergeStatus.PROCESSING:
            return 0
        # The batch in index order of (partner, sub_account, number), locked in id order
        # like every path that locks lines (ingestion's batches lock them too).
        sources = _source_ids(request)
        batch = _lines_in(request.partner_id, sources).order_by("sub_account_id", "number")
        lines = list(
            _lines_in(request.partner_id, sources)
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
    opens ``via_merge`` periods in the target (billing does not prorate them, SPEC §3)
    with one ``line.merge`` audit event per line; on the merge day a line's rows in the
    source and the target are one line-day (SPEC §4), so analytics re-judges them.
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
        request = _lock_request(MergeRequest, principal, request_id, what="Merge request")
        if request.status != MergeStatus.PROCESSING:
            return request
        source_ids = _source_ids(request)
        if _lines_in(request.partner_id, source_ids).exists():
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
        _release_locks(request, [request.target_id])
        _transition(
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
                # The sources' credit balances, now the target's (SPEC §3).
                **({"credit_moved": credit_moved} if credit_moved else {}),
            },
        )
        _notify_on_commit("merge", request.pk, "completed")
    return request


@retry_on_lost_race
def merge_request_fail(*, principal: Principal, request_id: int, error: str) -> MergeRequest:
    """processing → failed, keeping the locks: a resume continues where it stopped."""
    with transaction.atomic():
        request = _lock_request(MergeRequest, principal, request_id, what="Merge request")
        if request.status not in (MergeStatus.PROCESSING, MergeStatus.APPROVED):
            return request
        before = request.status
        _transition(
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


# --- deletion ----------------------------------------------------------------------------


def _deletion_move_to(principal: Principal, partner_id: int, move_to_id: Any) -> SubAccount:
    key = db_id(move_to_id)
    target = (
        SubAccount.objects.visible_to(principal).filter(partner_id=partner_id, pk=key).first()
        if key is not None
        else None
    )
    if target is None:
        raise NotFound(f"Sub-account {move_to_id} not found.")
    return target


@retry_on_lost_race
def deletion_request_create(
    *,
    principal: Principal,
    sub_account_id: Any,
    line_disposition: Any = None,
    move_to_id: Any = None,
    reason: Any = None,
) -> DeletionRequest:
    """Ask to delete an active standard sub-account, naming what happens to its lines."""
    require(can_make_requests(principal), "Your role may not request deletions.")
    partner = partner_for(principal)
    reason_text = _clean_reason(reason)
    with transaction.atomic():
        key = db_id(sub_account_id)
        sub_account = (
            SubAccount.objects.visible_to(principal)
            .select_for_update(no_key=True)
            .filter(partner_id=partner.pk, pk=key)
            .first()
            if key is not None
            else None
        )
        if sub_account is None:
            raise NotFound(f"Sub-account {sub_account_id} not found.")
        move_to = None
        if move_to_id is not None:
            move_to = _deletion_move_to(principal, partner.pk, move_to_id)
        ensure_standard(sub_account, action="deleted")
        ensure_editable(sub_account)
        ensure_unlocked(sub_account)
        disposition = line_disposition or ""
        if disposition and disposition not in LineDisposition.values:
            raise Invalid(
                "Line disposition must be 'move' or 'disconnect'.", field="line_disposition"
            )
        if sub_account.line_count and not disposition:
            raise Invalid(
                f"{sub_account.name} holds {sub_account.line_count} lines: choose to move them "
                "to another sub-account or to disconnect them.",
                field="line_disposition",
            )
        if disposition == LineDisposition.MOVE:
            if move_to is None:
                raise Invalid("Choose the sub-account the lines move to.", field="move_to_id")
            if move_to.pk == sub_account.pk:
                raise Invalid(
                    "The lines cannot move to the sub-account being deleted.", field="move_to_id"
                )
            ensure_can_hold_lines(move_to)
        elif move_to is not None:
            raise Invalid(
                "Name a sub-account to move to only when the lines move.", field="move_to_id"
            )
        at = clock.now()
        try:
            with transaction.atomic():
                request = DeletionRequest.objects.create(
                    partner=partner,
                    sub_account=sub_account,
                    line_disposition=disposition,
                    move_to=move_to,
                    reason=reason_text,
                    created_at=at,
                    **_requester_fields(principal),
                )
        except IntegrityError:
            raise Conflict(f"{sub_account.name} already has an open deletion request.") from None
        _take_locks(request, [sub_account.pk])
        audit_record(
            principal=principal,
            partner_id=partner.pk,
            action="deletion_request.create",
            object_type="deletion_request",
            object_id=request.pk,
            sub_account_id=sub_account.pk,
            other_sub_account_id=move_to.pk if move_to else None,
            at=at,
            data={
                "after": {
                    "status": request.status,
                    "sub_account_name": sub_account.name,
                    "line_count": sub_account.line_count,
                    "line_disposition": disposition,
                    "move_to_id": move_to.pk if move_to else None,
                    "reason": reason_text,
                }
            },
        )
    return request


@retry_on_lost_race
def deletion_request_approve(
    *, principal: Principal, request_id: Any, reason: Any = None
) -> DeletionRequest:
    """Approve: dispose of the lines, mark the sub-account pending deletion, set the purge date.

    All in one transaction: a refusal (the move target was locked meanwhile, say)
    changes nothing.
    """
    note = _clean_reason(reason)
    with transaction.atomic():
        request = _lock_request(DeletionRequest, principal, request_id, what="Deletion request")
        # The lock order of docs/architecture.md: the partner (the credit balance moved
        # below needs it, as issuing does), the lines (id order; ingestion locks them
        # too), the sub-accounts (id order). The sub-account's lines cannot change
        # before its row is locked: the request holds it locked against moves.
        partner = Partner.objects.select_for_update(no_key=True).get(pk=request.partner_id)
        require_can_decide(principal, request, partner)
        if request.status != DeletionStatus.PENDING_APPROVAL:
            raise _status_conflict(request, "approved")
        lines = list(
            _lines_in(request.partner_id, [request.sub_account_id])
            .select_for_update(no_key=True)
            .order_by("pk")
            .values_list("pk", "sub_account_id", "number")
        )
        locked = sub_accounts_lock(filter(None, [request.sub_account_id, request.move_to_id]))
        sub_account = locked[request.sub_account_id]
        disposed = 0
        if lines:
            if request.line_disposition == LineDisposition.MOVE and request.move_to_id:
                ensure_can_hold_lines(locked[request.move_to_id])
                disposed = lines_relocate(
                    principal=principal,
                    partner_id=request.partner_id,
                    lines=lines,
                    target=locked[request.move_to_id],
                    action="line.move",
                    data={"deletion_request_id": request.pk},
                ).moved
            elif request.line_disposition == LineDisposition.DISCONNECT:
                disposed = lines_relocate(
                    principal=principal,
                    partner_id=request.partner_id,
                    lines=lines,
                    target=None,
                    action="line.disconnect",
                    data={"deletion_request_id": request.pk},
                ).moved
            else:
                raise Conflict(
                    f"{sub_account.name} now holds lines but the request names no disposition; "
                    "reject it and request again."
                )
        at = clock.now()
        purge_after = at + dt.timedelta(days=partner.deletion_retention_days)
        # Its credit balance goes to the partner's, for good: a restore brings the
        # sub-account back empty, of lines and of credit (SPEC §3, §5).
        credit_moved = credit_balances_transfer(
            principal=principal,
            partner_id=request.partner_id,
            sub_account_ids=[sub_account.pk],
            to_sub_account_id=None,
            event="deleted",
            reference=f"deletion request {request.pk}",
            at=at,
        )
        SubAccount.objects.filter(pk=sub_account.pk).update(
            status=SubAccountStatus.PENDING_DELETION, purge_after=purge_after, lock_reason=""
        )
        _transition(
            DeletionRequest,
            request,
            DeletionStatus.PENDING_APPROVAL,
            "approved",
            status=DeletionStatus.SCHEDULED,
            decided_by_label=principal.label[:200],
            decided_at=at,
            decision_reason=note,
            purge_after=purge_after,
            lines_disposed=disposed,
        )
        audit_record(
            principal=principal,
            partner_id=request.partner_id,
            action="deletion_request.approve",
            object_type="deletion_request",
            object_id=request.pk,
            sub_account_id=sub_account.pk,
            other_sub_account_id=request.move_to_id,
            at=at,
            data={
                "before": {"status": DeletionStatus.PENDING_APPROVAL},
                "after": {
                    "status": DeletionStatus.SCHEDULED,
                    "purge_after": purge_after,
                    "lines_disposed": disposed,
                },
                "sub_account_name": sub_account.name,
                "reason": note,
                # Its credit balance, now the partner's (SPEC §3).
                **({"credit_moved": credit_moved} if credit_moved else {}),
            },
        )
        _notify_on_commit("deletion", request.pk, "approved")
    return request


@retry_on_lost_race
def deletion_request_reject(
    *, principal: Principal, request_id: Any, reason: Any
) -> DeletionRequest:
    """Refuse a pending deletion, with the reason the requester will read; unlocks."""
    note = _clean_reason(reason, required=True, label="A reason for the rejection")
    return _close_pending(
        DeletionRequest, principal=principal, request_id=request_id, verb="reject", note=note
    )


@retry_on_lost_race
def deletion_request_cancel(
    *, principal: Principal, request_id: Any, reason: Any = None
) -> DeletionRequest:
    """Withdraw a deletion that is still pending approval; unlocks."""
    note = _clean_reason(reason)
    return _close_pending(
        DeletionRequest, principal=principal, request_id=request_id, verb="cancel", note=note
    )


@retry_on_lost_race
def deletion_request_restore(*, principal: Principal, request_id: Any) -> DeletionRequest:
    """Before the purge date: the sub-account is active again (empty: its lines stay where
    they were disposed)."""
    with transaction.atomic():
        request = _lock_request(DeletionRequest, principal, request_id, what="Deletion request")
        require(can_restore(principal), "Only a partner admin or provider staff restore.")
        if request.status != DeletionStatus.SCHEDULED:
            raise _status_conflict(request, "restored")
        at = clock.now()
        if request.purge_after is not None and at >= request.purge_after:
            raise Conflict(f"{request} passed its purge date; it can no longer be restored.")
        SubAccount.objects.filter(
            pk=request.sub_account_id, status=SubAccountStatus.PENDING_DELETION
        ).update(status=SubAccountStatus.ACTIVE, purge_after=None, lock_reason="")
        _transition(
            DeletionRequest,
            request,
            DeletionStatus.SCHEDULED,
            "restored",
            status=DeletionStatus.RESTORED,
            restored_at=at,
            restored_by_label=principal.label[:200],
        )
        audit_record(
            principal=principal,
            partner_id=request.partner_id,
            action="deletion_request.restore",
            object_type="deletion_request",
            object_id=request.pk,
            sub_account_id=request.sub_account_id,
            at=at,
            data={
                "before": {"status": DeletionStatus.SCHEDULED},
                "after": {"status": DeletionStatus.RESTORED},
            },
        )
    return request


@retry_on_lost_race
def deletion_request_purge(*, principal: Principal, request_id: int) -> DeletionRequest | None:
    """Purge one due sub-account: contact details erased, status ``deleted``.

    The name stays on the row: invoices snapshot it and audit events quote it.
    Returns None when the request is not (or no longer) due.
    """
    with transaction.atomic():
        request = _lock_request(DeletionRequest, principal, request_id, what="Deletion request")
        at = clock.now()
        if request.status != DeletionStatus.SCHEDULED or (
            request.purge_after is not None and request.purge_after > at
        ):
            return None
        sub_account = sub_accounts_lock([request.sub_account_id])[request.sub_account_id]
        erased = {f: getattr(sub_account, f) for f in CONTACT_FIELDS if getattr(sub_account, f)}
        SubAccount.objects.filter(pk=sub_account.pk).update(
            status=SubAccountStatus.DELETED, lock_reason="", **dict.fromkeys(CONTACT_FIELDS, "")
        )
        _transition(
            DeletionRequest,
            request,
            DeletionStatus.SCHEDULED,
            "purged",
            status=DeletionStatus.PURGED,
            purged_at=at,
        )
        audit_record(
            principal=principal,
            partner_id=request.partner_id,
            action="deletion_request.purge",
            object_type="deletion_request",
            object_id=request.pk,
            sub_account_id=sub_account.pk,
            at=at,
            data={
                "before": {"status": DeletionStatus.SCHEDULED},
                "after": {"status": DeletionStatus.PURGED},
                "sub_account_name": sub_account.name,
                "erased_fields": sorted(erased),
            },
        )
        _notify_on_commit("deletion", request.pk, "purged")
    return request


def deletion_requests_purge_due(*, principal: Principal) -> int:
    """Purge every scheduled deletion whose date has passed, one transaction each."""
    due = list(
        DeletionRequest.objects.filter(
            status=DeletionStatus.SCHEDULED, purge_after__lte=clock.now()
        )
        .order_by("purge_after", "pk")
        .values_list("pk", flat=True)
    )
    return sum(
        1 for pk in due if deletion_request_purge(principal=principal, request_id=pk) is not None
    )
