"""Scoped reads of the audit log."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from portal.accounts.policies import can_read_audit, require
from portal.accounts.principal import Principal
from portal.audit.models import AuditEvent


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
        qs = qs.filter(Q(sub_account_id=sub_account_id) | Q(other_sub_account_id=sub_account_id))
    if line_id is not None:
        qs = qs.filter(line_id=line_id)
    if action:
        qs = qs.filter(action=action)
    return qs.order_by("-at", "-id")
