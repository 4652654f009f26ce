"""Scoped reads of merge and deletion requests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Prefetch, Q, QuerySet
from django.db.models.functions import Lower

from portal.accounts.policies import require
from portal.audit.models import AuditEvent
from portal.core.errors import BadRequest
from portal.core.principal import Principal
from portal.core.text import can_be_stored
from portal.partners.models import SubAccount, SubAccountKind, SubAccountStatus
from portal.workflows.models import (
    DeletionRequest,
    DeletionStatus,
    MergeRequest,
    MergeRequestSource,
    MergeStatus,
)
from portal.workflows.policies import can_read_requests

_READ_REFUSED = "Your role may not see merge and deletion requests."


def _merge_qs(principal: Principal) -> QuerySet[MergeRequest]:
    return (
        MergeRequest.objects.visible_to(principal)
        .select_related("target", "partner")
        .prefetch_related(
            Prefetch(
                "sources",
                queryset=MergeRequestSource.objects.select_related("sub_account").order_by("pk"),
            )
        )
    )


def _deletion_qs(principal: Principal) -> QuerySet[DeletionRequest]:
    return DeletionRequest.objects.visible_to(principal).select_related(
        "sub_account", "move_to", "partner"
    )


def merge_request_list(
    *, principal: Principal, status: str | None = None, sub_account_id: int | None = None
) -> QuerySet[MergeRequest]:
    """Merge requests, newest first; with ``sub_account_id``, those it is a source or the
    target of."""
    require(can_read_requests(principal), _READ_REFUSED)
    qs = _merge_qs(principal)
    if sub_account_id is not None:
        sources = MergeRequestSource.objects.visible_to(principal).filter(
            sub_account_id=sub_account_id
        )
        qs = qs.filter(Q(target_id=sub_account_id) | Q(pk__in=sources.values("merge_request_id")))
    if status:
        if status not in MergeStatus.values:
            raise BadRequest(
                f"Unknown status {status!r}; use one of {', '.join(MergeStatus.values)}."
            )
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-id")


def merge_request_get(*, principal: Principal, request_id: Any) -> MergeRequest:
    require(can_read_requests(principal), _READ_REFUSED)
    return _merge_qs(principal).get_visible(principal, request_id, what="Merge request")


def deletion_request_list(
    *, principal: Principal, status: str | None = None, sub_account_id: int | None = None
) -> QuerySet[DeletionRequest]:
    """Deletion requests, newest first; with ``sub_account_id``, those of it."""
    require(can_read_requests(principal), _READ_REFUSED)
    qs = _deletion_qs(principal)
    if sub_account_id is not None:
        qs = qs.filter(sub_account_id=sub_account_id)
    if status:
        if status not in DeletionStatus.values:
            raise BadRequest(
                f"Unknown status {status!r}; use one of {', '.join(DeletionStatus.values)}."
            )
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-id")


def scheduled_deletion_ids(
    *, principal: Principal, sub_account_ids: Iterable[int]
) -> dict[int, int]:
    """Sub-account id -> its scheduled deletion request's id, for those of ``sub_account_ids``
    pending deletion (one query): where a list's **Restore** posts."""
    require(can_read_requests(principal), _READ_REFUSED)
    rows = DeletionRequest.objects.visible_to(principal).filter(
        sub_account_id__in=list(sub_account_ids), status=DeletionStatus.SCHEDULED
    )
    return dict(rows.values_list("sub_account_id", "pk"))


def deletion_request_get(*, principal: Principal, request_id: Any) -> DeletionRequest:
    require(can_read_requests(principal), _READ_REFUSED)
    return _deletion_qs(principal).get_visible(principal, request_id, what="Deletion request")


def request_history(*, principal: Principal, kind: str, request_id: int) -> QuerySet[AuditEvent]:
    """The request's own audit events, oldest first (the per-line events are in the log)."""
    object_type = "merge_request" if kind == "merge" else "deletion_request"
    return (
        AuditEvent.objects.visible_to(principal)
        .filter(object_type=object_type, object_id=str(request_id))
        .order_by("at", "id")
    )


def approval_queue(*, principal: Principal) -> dict[str, Any]:
    """For staff: what waits for a decision, and merges that are running or failed."""
    require(principal.is_staff, "Only provider staff see the approval queue.")
    return {
        "merges": list(
            _merge_qs(principal)
            .filter(status=MergeStatus.PENDING_APPROVAL)
            .order_by("created_at", "id")
        ),
        "deletions": list(
            _deletion_qs(principal)
            .filter(status=DeletionStatus.PENDING_APPROVAL)
            .order_by("created_at", "id")
        ),
        "running": list(
            _merge_qs(principal)
            .filter(status__in=[MergeStatus.APPROVED, MergeStatus.PROCESSING, MergeStatus.FAILED])
            .order_by("created_at", "id")
        ),
    }


def _named(qs: QuerySet[SubAccount], search: str | None) -> QuerySet[SubAccount]:
    if search:
        term = search.strip()
        qs = qs.filter(name__icontains=term) if can_be_stored(term) else qs.none()
    return qs


def merge_candidates(
    *, principal: Principal, exclude_id: int | None = None, search: str | None = None
) -> QuerySet[SubAccount]:
    """Sub-accounts that may be merged or merged into: active, standard, not locked, by
    name (``search``: part of it). Callers slice: a partner may have 10,000."""
    qs = SubAccount.objects.visible_to(principal).filter(
        kind=SubAccountKind.STANDARD, status=SubAccountStatus.ACTIVE, lock_reason=""
    )
    if exclude_id is not None:
        qs = qs.exclude(pk=exclude_id)
    return _named(qs, search).order_by(Lower("name"), "id")


def line_destinations(
    *, principal: Principal, exclude_id: int | None = None, search: str | None = None
) -> QuerySet[SubAccount]:
    """Where a deleted sub-account's lines may go: active, unlocked, Available first."""
    qs = SubAccount.objects.visible_to(principal).filter(
        status=SubAccountStatus.ACTIVE, lock_reason=""
    )
    if exclude_id is not None:
        qs = qs.exclude(pk=exclude_id)
    return _named(qs, search).listed_order()


def choices_or_none(qs: QuerySet[SubAccount], limit: int) -> list[SubAccount] | None:
    """The sub-accounts for a select, or None when there are more than ``limit`` (one
    query either way): the page then asks for a name with suggestions instead."""
    rows = list(qs[: limit + 1])
    return None if len(rows) > limit else rows
