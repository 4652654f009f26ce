"""REST endpoints for merge and deletion requests (domain §6)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Status

from portal.core.api import MAX_LIMIT, MAX_OFFSET, page, principal_of
from portal.workflows import selectors
from portal.workflows.models import DeletionRequest, MergeRequest
from portal.workflows.schemas import (
    DecisionIn,
    DeletionRequestIn,
    DeletionRequestListOut,
    DeletionRequestOut,
    MergePreviewOut,
    MergeRequestIn,
    MergeRequestListOut,
    MergeRequestOut,
    RejectionIn,
)
from portal.workflows.services import deletions, merges

router = Router(tags=["requests"])


def merge_out(request: MergeRequest) -> dict[str, Any]:
    sources = list(request.sources.all())
    return {
        "id": request.pk,
        "status": request.status,
        "source_ids": [s.sub_account_id for s in sources],
        "sources": [
            {
                "sub_account_id": s.sub_account_id,
                "name": s.sub_account.name,
                "line_count": s.line_count,
            }
            for s in sources
        ],
        "target_id": request.target_id,
        "target_name": request.target.name,
        "reason": request.reason,
        "requested_by": request.requested_by_label,
        "created_at": request.created_at,
        "decided_by": request.decided_by_label,
        "decided_at": request.decided_at,
        "decision_reason": request.decision_reason,
        "lines_total": request.lines_total,
        "lines_moved": request.lines_moved,
        "started_at": request.started_at,
        "completed_at": request.completed_at,
        "failure": request.failure,
    }


def deletion_out(request: DeletionRequest) -> dict[str, Any]:
    return {
        "id": request.pk,
        "status": request.status,
        "sub_account_id": request.sub_account_id,
        "sub_account_name": request.sub_account.name,
        "line_disposition": request.line_disposition or None,
        "move_to_id": request.move_to_id,
        "reason": request.reason,
        "requested_by": request.requested_by_label,
        "created_at": request.created_at,
        "decided_by": request.decided_by_label,
        "decided_at": request.decided_at,
        "decision_reason": request.decision_reason,
        "lines_disposed": request.lines_disposed,
        "purge_after": request.purge_after,
        "purged_at": request.purged_at,
        "restored_at": request.restored_at,
    }


def _merge(request: HttpRequest, request_id: int) -> dict[str, Any]:
    """Re-read through the selector so the answer shows the committed state."""
    return merge_out(
        selectors.merge_request_get(principal=principal_of(request), request_id=request_id)
    )


def _deletion(request: HttpRequest, request_id: int) -> dict[str, Any]:
    return deletion_out(
        selectors.deletion_request_get(principal=principal_of(request), request_id=request_id)
    )


def _reason(payload: DecisionIn | None) -> str | None:
    return payload.reason if payload is not None else None


# --- merge requests ----------------------------------------------------------------------


@router.get("/merge-requests", response=MergeRequestListOut)
def list_merge_requests(
    request: HttpRequest,
    status: str | None = None,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    qs = selectors.merge_request_list(principal=principal_of(request), status=status)
    return page(qs, limit=limit, offset=offset, shape=lambda rows: list(map(merge_out, rows)))


# Declared before /merge-requests/{merge_request_id} so "preview" is never read as an id.
@router.post("/merge-requests/preview", response=MergePreviewOut)
def preview_merge(request: HttpRequest, payload: MergeRequestIn) -> dict[str, Any]:
    preview = merges.merge_request_preview(
        principal=principal_of(request), source_ids=payload.source_ids, target_id=payload.target_id
    )
    return {
        "target": preview.target,
        "sources": [
            {"sub_account_id": s.pk, "name": s.name, "lines": s.line_count} for s in preview.sources
        ],
        "lines_total": preview.lines_total,
        "billing_effect": preview.billing_effect,
        "analytics_effect": preview.analytics_effect,
    }


@router.post("/merge-requests", response={201: MergeRequestOut})
def create_merge_request(request: HttpRequest, payload: MergeRequestIn) -> Status:
    created = merges.merge_request_create(
        principal=principal_of(request),
        source_ids=payload.source_ids,
        target_id=payload.target_id,
        reason=payload.reason,
    )
    return Status(201, _merge(request, created.pk))


@router.get("/merge-requests/{merge_request_id}", response=MergeRequestOut)
def get_merge_request(request: HttpRequest, merge_request_id: int) -> dict[str, Any]:
    return _merge(request, merge_request_id)


@router.post("/merge-requests/{merge_request_id}/approve", response=MergeRequestOut)
def approve_merge_request(
    request: HttpRequest, merge_request_id: int, payload: DecisionIn | None = None
) -> dict[str, Any]:
    merges.merge_request_approve(
        principal=principal_of(request), request_id=merge_request_id, reason=_reason(payload)
    )
    return _merge(request, merge_request_id)


@router.post("/merge-requests/{merge_request_id}/reject", response=MergeRequestOut)
def reject_merge_request(
    request: HttpRequest, merge_request_id: int, payload: RejectionIn
) -> dict[str, Any]:
    merges.merge_request_reject(
        principal=principal_of(request), request_id=merge_request_id, reason=payload.reason
    )
    return _merge(request, merge_request_id)


@router.post("/merge-requests/{merge_request_id}/cancel", response=MergeRequestOut)
def cancel_merge_request(
    request: HttpRequest, merge_request_id: int, payload: DecisionIn | None = None
) -> dict[str, Any]:
    merges.merge_request_cancel(
        principal=principal_of(request), request_id=merge_request_id, reason=_reason(payload)
    )
    return _merge(request, merge_request_id)


# --- deletion requests -------------------------------------------------------------------


@router.get("/deletion-requests", response=DeletionRequestListOut)
def list_deletion_requests(
    request: HttpRequest,
    status: str | None = None,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    qs = selectors.deletion_request_list(principal=principal_of(request), status=status)
    return page(qs, limit=limit, offset=offset, shape=lambda rows: list(map(deletion_out, rows)))


@router.post("/deletion-requests", response={201: DeletionRequestOut})
def create_deletion_request(request: HttpRequest, payload: DeletionRequestIn) -> Status:
    created = deletions.deletion_request_create(
        principal=principal_of(request),
        sub_account_id=payload.sub_account_id,
        line_disposition=payload.line_disposition,
        move_to_id=payload.move_to_id,
        reason=payload.reason,
    )
    return Status(201, _deletion(request, created.pk))


@router.get("/deletion-requests/{deletion_request_id}", response=DeletionRequestOut)
def get_deletion_request(request: HttpRequest, deletion_request_id: int) -> dict[str, Any]:
    return _deletion(request, deletion_request_id)


@router.post("/deletion-requests/{deletion_request_id}/approve", response=DeletionRequestOut)
def approve_deletion_request(
    request: HttpRequest, deletion_request_id: int, payload: DecisionIn | None = None
) -> dict[str, Any]:
    deletions.deletion_request_approve(
        principal=principal_of(request), request_id=deletion_request_id, reason=_reason(payload)
    )
    return _deletion(request, deletion_request_id)


@router.post("/deletion-requests/{deletion_request_id}/reject", response=DeletionRequestOut)
def reject_deletion_request(
    request: HttpRequest, deletion_request_id: int, payload: RejectionIn
) -> dict[str, Any]:
    deletions.deletion_request_reject(
        principal=principal_of(request), request_id=deletion_request_id, reason=payload.reason
    )
    return _deletion(request, deletion_request_id)


@router.post("/deletion-requests/{deletion_request_id}/cancel", response=DeletionRequestOut)
def cancel_deletion_request(
    request: HttpRequest, deletion_request_id: int, payload: DecisionIn | None = None
) -> dict[str, Any]:
    deletions.deletion_request_cancel(
        principal=principal_of(request), request_id=deletion_request_id, reason=_reason(payload)
    )
    return _deletion(request, deletion_request_id)


@router.post("/deletion-requests/{deletion_request_id}/restore", response=DeletionRequestOut)
def restore_deletion_request(request: HttpRequest, deletion_request_id: int) -> dict[str, Any]:
    deletions.deletion_request_restore(
        principal=principal_of(request), request_id=deletion_request_id
    )
    return _deletion(request, deletion_request_id)
