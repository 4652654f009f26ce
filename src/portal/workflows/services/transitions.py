"""What merge and deletion requests share: one way to change a request's state.

Internal to ``workflows.services``: the merge and deletion services call these; nothing
else does. Every transition locks the request row (:func:`lock_request`, ``SELECT …
FOR NO KEY UPDATE``; SQLite's IMMEDIATE transaction serialises writers anyway) and then
moves the status with a conditional ``UPDATE … WHERE status = <expected>``
(:func:`transition`), so of two approvers exactly one wins and the other gets 409.
After the request row, locks follow the one order of docs/architecture.md: the
partner, the lines (id order), the sub-accounts (id order); a transaction the database
still ends as a race's loser is run again (``retry_on_lost_race``), so no request is
left pending for that.

Sub-accounts are locked for a request by a conditional update of their
``lock_reason`` from empty to the request's own text (:func:`take_locks`): two
requests that reach for the same sub-account cannot both take it, whatever the
interleaving. Closing a request still pending (reject, cancel: :func:`close_pending`)
and the requester's emails (:func:`notify_on_commit`) are the same for both kinds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

from django.core.mail import send_mail
from django.db import transaction
from django.db.models import QuerySet
from django.template.loader import render_to_string

from portal.accounts.models import ApiKey
from portal.accounts.policies import require
from portal.audit.services import audit_record
from portal.core import clock
from portal.core.errors import Conflict, Invalid, NotFound
from portal.core.localtime import format_local
from portal.core.principal import Principal
from portal.core.tenancy import db_id
from portal.core.text import clean_text
from portal.lines.models import Line, LineStatus
from portal.partners.models import Partner, SubAccount, SubAccountStatus
from portal.partners.services import sub_accounts_lock
from portal.workflows.models import (
    DeletionRequest,
    DeletionStatus,
    MergeRequest,
    MergeRequestSource,
    MergeStatus,
    RequestBase,
)
from portal.workflows.policies import (
    can_cancel_request,
    require_can_decide,
)

logger = logging.getLogger("portal.workflows")


def clean_reason(value: Any, *, required: bool = False, label: str = "Reason") -> str:
    """A request's or decision's reason as stored: text, trimmed, at most 2,000 characters."""
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


def requester_fields(principal: Principal) -> dict[str, Any]:
    """Who asked, as a new request row records it (and where its emails go)."""
    return {
        "requested_by_type": principal.kind,
        "requested_by_id": principal.id,
        "requested_by_label": principal.label[:200],
        "requester_email": _requester_email(principal),
    }


def lock_request[R: RequestBase](
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


def status_conflict(request: RequestBase, doing: str) -> Conflict:
    """The 409 for a request whose status does not allow ``doing`` (e.g. "approved")."""
    state = request.get_status_display().lower()  # type: ignore[attr-defined]
    return Conflict(f"{request} is {state}; it cannot be {doing}.")


def transition(
    model: type[RequestBase], request: RequestBase, expected: str, doing: str, **changes: Any
) -> None:
    """Move ``request`` from ``expected`` with a conditional UPDATE; 409 when it moved on."""
    updated = model.objects.filter(pk=request.pk, status=expected).update(**changes)
    if updated != 1:
        raise status_conflict(request, doing)
    for name, value in changes.items():
        setattr(request, name, value)


def take_locks(request: RequestBase, sub_account_ids: Sequence[int]) -> None:
    """Lock the sub-accounts for ``request``: all of them, or none and 409."""
    wanted = sorted(set(sub_account_ids))
    taken = SubAccount.objects.filter(
        pk__in=wanted, lock_reason="", status=SubAccountStatus.ACTIVE
    ).update(lock_reason=request.lock_text)  # type: ignore[attr-defined]
    if taken != len(wanted):
        raise Conflict("A sub-account of this request is locked by another request; retry later.")


def release_locks(request: RequestBase, sub_account_ids: Sequence[int]) -> None:
    """Unlock the sub-accounts ``request`` locked (those another request holds stay)."""
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


def notify_on_commit(kind: str, request_id: int, event: str) -> None:
    """Email the requester about ``event`` once the transaction commits (never if not)."""
    transaction.on_commit(lambda: _notify(kind, request_id, event))


def merge_source_ids(request: MergeRequest) -> list[int]:
    """The sub-accounts a merge empties, in id order."""
    return list(
        MergeRequestSource.objects.filter(merge_request_id=request.pk)
        .order_by("sub_account_id")
        .values_list("sub_account_id", flat=True)
    )


def active_lines_in(partner_id: int, sub_account_ids: Sequence[int]) -> QuerySet[Line]:
    """The active lines still in the given sub-accounts: what a merge or deletion moves."""
    return Line.objects.filter(
        partner_id=partner_id, status=LineStatus.ACTIVE, sub_account_id__in=list(sub_account_ids)
    )


def close_pending[R: (MergeRequest, DeletionRequest)](
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
        request = lock_request(
            model, principal, request_id, what="Merge request" if merge else "Deletion request"
        )
        if verb == "reject":
            require_can_decide(principal, request, Partner.objects.get(pk=request.partner_id))
        else:
            require(can_cancel_request(principal), "Your role may not cancel requests.")
        if request.status != status.PENDING_APPROVAL:
            raise status_conflict(request, doing)
        at = clock.now()
        transition(
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
            release_locks(request, [*merge_source_ids(request), sub_account_id])
        else:
            sub_account_id = request.sub_account_id
            release_locks(request, [sub_account_id])
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
            notify_on_commit(request.kind, request.pk, doing)
    return request
