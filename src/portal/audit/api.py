"""REST endpoint for the audit log."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router

from portal.audit.schemas import AuditEventListOut
from portal.audit.selectors import audit_event_list
from portal.core.api import MAX_LIMIT, MAX_OFFSET, page, principal_of

router = Router(tags=["audit"])


@router.get("/audit-events", response=AuditEventListOut)
def list_audit_events(
    request: HttpRequest,
    sub_account_id: int | None = None,
    line_id: int | None = None,
    action: str | None = None,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    qs = audit_event_list(
        principal=principal_of(request),
        sub_account_id=sub_account_id,
        line_id=line_id,
        action=action,
    )
    return page(qs, limit=limit, offset=offset)
