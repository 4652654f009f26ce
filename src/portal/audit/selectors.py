"""Scoped reads of the audit log."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from portal.accounts.policies import can_read_audit, require
from portal.audit.models import AuditEvent
from portal.core.principal import Principal
from portal.core.tenancy import db_id
from portal.core.text import can_be_stored


def audit_event_list(
    *,
    principal: Principal,
    sub_account_id: int | None = None,
    line_id: int | None = None,
    action: str | None = None,
) -> QuerySet[AuditEvent]:
    require(can_read_audit(principal), "Your role may not read the audit log.")
    qs = AuditEvent.objects.visible_to(principal)
    if sub_account_id is not None:
        key = db_id(sub_account_id)
        qs = qs.filter(Q(sub_account_id=key) | Q(other_sub_account_id=key)) if key else qs.none()
    if line_id is not None:
        qs = qs.filter_id("line_id", line_id)
    if action:
        qs = qs.filter(action=action) if can_be_stored(action) else qs.none()
    return qs.order_by("-at", "-id")
