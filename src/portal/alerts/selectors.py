"""Scoped reads of alert rules and alerts, for the API and the Alerts page.

Every read starts from ``visible_to(principal)``: another partner's rule or alert is as
missing as one that never existed. Deleted rules are history: their alerts are still
listed (naming the rule's id), the rules themselves are not.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from portal.accounts.policies import require
from portal.alerts.models import Alert, AlertEvaluation, AlertRule, AlertStatus
from portal.alerts.policies import can_read_alerts
from portal.core.errors import BadRequest
from portal.core.principal import Principal
from portal.partners.selectors import partner_for


def alert_rule_list(*, principal: Principal) -> QuerySet[AlertRule]:
    """The partner's rules (not deleted), oldest first."""
    require(can_read_alerts(principal), "Your role may not read alerts.")
    return (
        AlertRule.objects.visible_to(principal)
        .filter(deleted_at__isnull=True)
        .select_related("sub_account")
        .order_by("pk")
    )


def alert_rule_get(*, principal: Principal, rule_id: Any) -> AlertRule:
    require(can_read_alerts(principal), "Your role may not read alerts.")
    return (
        AlertRule.objects.visible_to(principal)
        .filter(deleted_at__isnull=True)
        .select_related("sub_account")
        .get_visible(principal, rule_id, what="Alert rule")
    )


def alert_list(
    *,
    principal: Principal,
    status: str | None = None,
    rule_id: Any = None,
    sub_account_id: Any = None,
) -> QuerySet[Alert]:
    """Alerts newest first, firing and resolved alike unless ``status`` says which (an
    unknown status is a bad request); ``rule_id`` / ``sub_account_id`` narrow the list
    (an id naming nothing of the partner's lists nothing)."""
    require(can_read_alerts(principal), "Your role may not read alerts.")
    qs = Alert.objects.visible_to(principal)
    if status:
        if status not in AlertStatus.values:
            raise BadRequest(
                f"Unknown status {status!r}; use one of {', '.join(AlertStatus.values)}."
            )
        qs = qs.filter(status=status)
    if rule_id is not None:
        qs = qs.filter_id("rule_id", rule_id)
    if sub_account_id is not None:
        qs = qs.filter_id("sub_account_id", sub_account_id)
    return qs.select_related("sub_account").order_by("-fired_at", "-pk")


def alert_counts(*, principal: Principal) -> dict[str, int]:
    """How many alerts are firing and resolved (the Alerts page's filter)."""
    require(can_read_alerts(principal), "Your role may not read alerts.")
    qs = Alert.objects.visible_to(principal)
    return {
        AlertStatus.FIRING: qs.filter(status=AlertStatus.FIRING).count(),
        AlertStatus.RESOLVED: qs.filter(status=AlertStatus.RESOLVED).count(),
    }


def alert_evaluation(*, principal: Principal) -> AlertEvaluation | None:
    """When the partner's rules were last evaluated (None: never)."""
    require(can_read_alerts(principal), "Your role may not read alerts.")
    partner_id = partner_for(principal).pk
    return AlertEvaluation.objects.filter(partner_id=partner_id).first()
