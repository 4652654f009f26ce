"""Writes for deletion requests (domain §5): request, decisions, restore and the purge.

One function per transition, each through the shared request transitions
(``workflows.services.transitions``). Approval disposes of the sub-account's lines
(moved or disconnected by the one relocation of the lines app, ``lines.relocation``),
hands its credit balance to the partner and sets the purge date; until then a restore
brings the sub-account back, empty; the retention job purges what is due.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import IntegrityError, transaction

from portal.accounts.policies import require
from portal.audit.services import audit_record
from portal.billing.transfers import credit_balances_transfer
from portal.core import clock
from portal.core.errors import Conflict, Invalid, NotFound
from portal.core.principal import Principal
from portal.core.retry import retry_on_lost_race
from portal.core.tenancy import db_id
from portal.lines.relocation import lines_relocate
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
)
from portal.workflows.policies import (
    can_make_requests,
    can_restore,
    require_can_decide,
)
from portal.workflows.services.transitions import (
    active_lines_in,
    clean_reason,
    close_pending,
    lock_request,
    notify_on_commit,
    requester_fields,
    status_conflict,
    take_locks,
    transition,
)

CONTACT_FIELDS = ("contact_name", "contact_email", "contact_phone", "internal_reference", "notes")


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
    reason_text = clean_reason(reason)
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
                    **requester_fields(principal),
                )
        except IntegrityError:
            raise Conflict(f"{sub_account.name} already has an open deletion request.") from None
        take_locks(request, [sub_account.pk])
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
    note = clean_reason(reason)
    with transaction.atomic():
        request = lock_request(DeletionRequest, principal, request_id, what="Deletion request")
        # The lock order of docs/architecture.md: the partner (the credit balance moved
        # below needs it, as issuing does), the lines (id order; ingestion locks them
        # too), the sub-accounts (id order). The sub-account's lines cannot change
        # before its row is locked: the request holds it locked against moves.
        partner = Partner.objects.select_for_update(no_key=True).get(pk=request.partner_id)
        require_can_decide(principal, request, partner)
        if request.status != DeletionStatus.PENDING_APPROVAL:
            raise status_conflict(request, "approved")
        lines = list(
            active_lines_in(request.partner_id, [request.sub_account_id])
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
        # sub-account back empty, of lines and of credit (domain §3, §5).
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
        transition(
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
                # Its credit balance, now the partner's (domain §3).
                **({"credit_moved": credit_moved} if credit_moved else {}),
            },
        )
        notify_on_commit("deletion", request.pk, "approved")
    return request


@retry_on_lost_race
def deletion_request_reject(
    *, principal: Principal, request_id: Any, reason: Any
) -> DeletionRequest:
    """Refuse a pending deletion, with the reason the requester will read; unlocks."""
    note = clean_reason(reason, required=True, label="A reason for the rejection")
    return close_pending(
        DeletionRequest, principal=principal, request_id=request_id, verb="reject", note=note
    )


@retry_on_lost_race
def deletion_request_cancel(
    *, principal: Principal, request_id: Any, reason: Any = None
) -> DeletionRequest:
    """Withdraw a deletion that is still pending approval; unlocks."""
    note = clean_reason(reason)
    return close_pending(
        DeletionRequest, principal=principal, request_id=request_id, verb="cancel", note=note
    )


@retry_on_lost_race
def deletion_request_restore(*, principal: Principal, request_id: Any) -> DeletionRequest:
    """Before the purge date: the sub-account is active again (empty: its lines stay where
    they were disposed)."""
    with transaction.atomic():
        request = lock_request(DeletionRequest, principal, request_id, what="Deletion request")
        require(can_restore(principal), "Only a partner admin or provider staff restore.")
        if request.status != DeletionStatus.SCHEDULED:
            raise status_conflict(request, "restored")
        at = clock.now()
        if request.purge_after is not None and at >= request.purge_after:
            raise Conflict(f"{request} passed its purge date; it can no longer be restored.")
        SubAccount.objects.filter(
            pk=request.sub_account_id, status=SubAccountStatus.PENDING_DELETION
        ).update(status=SubAccountStatus.ACTIVE, purge_after=None, lock_reason="")
        transition(
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
        request = lock_request(DeletionRequest, principal, request_id, what="Deletion request")
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
        transition(
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
        notify_on_commit("deletion", request.pk, "purged")
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
