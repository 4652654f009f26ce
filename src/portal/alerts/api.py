"""REST endpoints for alert rules and alerts (domain §8.4)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Status

from portal.alerts import selectors, services
from portal.alerts.models import FRACTION_METRICS, Alert, AlertRule
from portal.alerts.schemas import (
    AlertListOut,
    AlertRuleIn,
    AlertRuleListOut,
    AlertRuleOut,
    AlertRulePatchIn,
)
from portal.core.api import MAX_LIMIT, MAX_OFFSET, page, principal_of

router = Router(tags=["alerts"])


def number(metric: str, value: Decimal | None) -> int | float | None:
    """A threshold or value as a JSON number: a fraction for rates and usage, a count
    otherwise."""
    if value is None:
        return None
    return float(value) if metric in FRACTION_METRICS else int(value)


def rule_out(rule: AlertRule) -> dict[str, Any]:
    return {
        "id": rule.pk,
        "metric": rule.metric,
        "comparator": rule.comparator,
        "threshold": number(rule.metric, rule.threshold),
        "window_days": rule.window_days,
        "sub_account_id": rule.sub_account_id,
        "enabled": rule.enabled,
        "created_at": rule.created_at,
        "updated_at": rule.updated_at,
    }


def alert_out(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.pk,
        "rule_id": alert.rule_id,
        "sub_account_id": alert.sub_account_id,
        "metric": alert.metric,
        "comparator": alert.comparator,
        "value": number(alert.metric, alert.value),
        "threshold": number(alert.metric, alert.threshold),
        "window_days": alert.window_days,
        "status": alert.status,
        "fired_at": alert.fired_at,
        "resolved_at": alert.resolved_at,
        "resolved_value": number(alert.metric, alert.resolved_value),
        "resolved_because": alert.resolved_because,
    }


@router.get("/alert-rules", response=AlertRuleListOut)
def list_alert_rules(
    request: HttpRequest,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    rules = selectors.alert_rule_list(principal=principal_of(request))
    return page(rules, limit=limit, offset=offset, shape=lambda rows: [rule_out(r) for r in rows])


@router.post("/alert-rules", response={201: AlertRuleOut})
def create_alert_rule(request: HttpRequest, payload: AlertRuleIn) -> Status:
    rule = services.alert_rule_create(principal=principal_of(request), **payload.model_dump())
    return Status(201, rule_out(rule))


@router.get("/alert-rules/{alert_rule_id}", response=AlertRuleOut)
def get_alert_rule(request: HttpRequest, alert_rule_id: int) -> dict[str, Any]:
    return rule_out(
        selectors.alert_rule_get(principal=principal_of(request), rule_id=alert_rule_id)
    )


@router.patch("/alert-rules/{alert_rule_id}", response=AlertRuleOut)
def update_alert_rule(
    request: HttpRequest, alert_rule_id: int, payload: AlertRulePatchIn
) -> dict[str, Any]:
    rule = services.alert_rule_update(
        principal=principal_of(request),
        rule_id=alert_rule_id,
        **payload.model_dump(exclude_unset=True),
    )
    return rule_out(rule)


@router.delete("/alert-rules/{alert_rule_id}", response={204: None})
def delete_alert_rule(request: HttpRequest, alert_rule_id: int) -> Status:
    services.alert_rule_delete(principal=principal_of(request), rule_id=alert_rule_id)
    return Status(204, None)


@router.get("/alerts", response=AlertListOut)
def list_alerts(
    request: HttpRequest,
    status: str | None = None,
    rule_id: int | None = None,
    sub_account_id: int | None = None,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    alerts = selectors.alert_list(
        principal=principal_of(request),
        status=status,
        rule_id=rule_id,
        sub_account_id=sub_account_id,
    )
    return page(alerts, limit=limit, offset=offset, shape=lambda rows: [alert_out(a) for a in rows])
