"""Writes of alert rules: create, change, delete (domain §8.4).

Each is one transaction with one ``alert_rule.*`` audit event. A change to a rule's
condition, pausing it or deleting it resolves its firing alerts in the same transaction
(each with its ``alert.resolve`` event, in the acting person's name): they were raised by
a condition that no longer exists. Once committed, the partner's rules are evaluated by
the worker (``alerts.evaluation.alert_evaluations_request``), so a new or changed rule
fires within moments, not at the next periodic run.

Bad input is refused whole, before anything is written: every invalid field at once
(422), another partner's sub-account as a missing one (404).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction

from portal.accounts.policies import require
from portal.alerts.evaluation import alert_evaluations_request, alerts_resolve, plain
from portal.alerts.models import (
    FRACTION_METRICS,
    PARTNER_METRICS,
    Alert,
    AlertEvaluation,
    AlertRule,
    AlertStatus,
    Comparator,
    Metric,
    ResolvedBecause,
)
from portal.alerts.policies import can_manage_alert_rules
from portal.audit.services import audit_record
from portal.core import clock
from portal.core.errors import Conflict, Invalid
from portal.core.principal import Principal
from portal.core.retry import retry_on_lost_race
from portal.partners.models import Partner, SubAccount, SubAccountKind, SubAccountStatus
from portal.partners.selectors import partner_for

MIN_WINDOW_DAYS, MAX_WINDOW_DAYS, DEFAULT_WINDOW_DAYS = 1, 90, 7
# The largest threshold of each metric: usage past 1 is possible (a platform that does
# not stop at the limit), a response rate is never past 1, counts are bounded for sanity.
MAX_THRESHOLD = {
    Metric.VOLUME_LIMIT_USAGE: Decimal(10),
    Metric.RESPONSE_RATE: Decimal(1),
    Metric.OVER_PRESSURED_LINE_DAYS: Decimal(1_000_000_000),
    Metric.AVAILABLE_LINES: Decimal(1_000_000_000),
}
FRACTION_PLACES = 4
MAX_RULES = 100  # per partner: each is evaluated every few minutes
CONDITION_FIELDS = ("metric", "comparator", "threshold", "window_days", "sub_account_id")


def _metric_words(metric: str) -> str:
    return Metric(metric).label.lower() if metric in Metric.values else metric


def _clean_threshold(metric: str | None, comparator: str | None, value: Any) -> Decimal:
    """The threshold as stored, or :class:`Invalid` saying why (field ``threshold``)."""
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        raise Invalid("Threshold must be a number such as 0.8 or 12.", field="threshold")
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise Invalid(f"Threshold {value!r} is not a number.", field="threshold") from None
    if not number.is_finite():
        raise Invalid("Threshold must be a finite number.", field="threshold")
    if metric not in Metric.values:
        return number  # the metric's own error is reported; no range to check against
    most = MAX_THRESHOLD[Metric(metric)]
    words = _metric_words(metric)
    if metric in FRACTION_METRICS:
        if not 0 <= number <= most:
            raise Invalid(
                f"A {words} threshold is a fraction from 0 to {most} (0.8 means 80 %).",
                field="threshold",
            )
        step = Decimal(1).scaleb(-FRACTION_PLACES)
        if number != number.quantize(step):
            raise Invalid(
                f"A {words} threshold has at most {FRACTION_PLACES} decimals.", field="threshold"
            )
        number = number.quantize(step)
    else:
        if number != number.to_integral_value() or not 0 <= number <= most:
            raise Invalid(
                f"A {words} threshold is a whole number from 0 to {most:,}.", field="threshold"
            )
        number = number.to_integral_value()
    if comparator == Comparator.BELOW and number == 0:
        raise Invalid(
            f"The {words} is never below 0: choose a larger threshold.", field="threshold"
        )
    if comparator == Comparator.ABOVE and metric == Metric.RESPONSE_RATE and number == most:
        raise Invalid(
            "The response rate is never above 1 (100 %): choose a smaller threshold.",
            field="threshold",
        )
    return number


def _clean_window(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("Window must be a whole number of days.", field="window_days")
    if not MIN_WINDOW_DAYS <= value <= MAX_WINDOW_DAYS:
        raise Invalid(
            f"Window must be {MIN_WINDOW_DAYS} to {MAX_WINDOW_DAYS} days.", field="window_days"
        )
    return value


def _watched(
    principal: Principal, partner: Partner, metric: Any, sub_account_id: Any
) -> int | None:
    """The sub-account a rule names (checked), or None for each one / the partner."""
    if sub_account_id is None:
        return None
    if metric in PARTNER_METRICS:
        raise Invalid(
            f"The {_metric_words(metric)} are the partner's: a rule on them names no "
            "sub-account (leave sub_account_id out).",
            field="sub_account_id",
        )
    # Another partner's sub-account is as missing as one that never existed (404).
    sub = (
        SubAccount.objects.visible_to(principal)
        .filter(partner_id=partner.pk)
        .get_visible(principal, sub_account_id, what="Sub-account")
    )
    if sub.kind == SubAccountKind.AVAILABLE:
        raise Invalid(
            "Available has no traffic to watch; watch the lines in it with available_lines.",
            field="sub_account_id",
        )
    if sub.status != SubAccountStatus.ACTIVE:
        raise Invalid(
            f"Sub-account {sub.name} is {sub.get_status_display().lower()}: choose an active one.",
            field="sub_account_id",
        )
    return sub.pk


def _clean(principal: Principal, partner: Partner, fields: dict[str, Any]) -> dict[str, Any]:
    """Every field of a rule checked at once: :class:`Invalid` naming each refused one
    (a sub-account the principal may not see answers 404 first)."""
    metric, comparator = fields.get("metric"), fields.get("comparator")
    sub_account_id = _watched(principal, partner, metric, fields.get("sub_account_id"))
    errors: dict[str, str] = {}
    if metric not in Metric.values:
        errors["metric"] = f"Unknown metric {metric!r}; use one of {', '.join(Metric.values)}."
    if comparator not in Comparator.values:
        errors["comparator"] = f"Comparator must be above or below, not {comparator!r}."
    clean: dict[str, Any] = {"sub_account_id": sub_account_id}
    for name, check in (
        ("threshold", lambda v: _clean_threshold(metric, comparator, v)),
        ("window_days", _clean_window),
    ):
        try:
            clean[name] = check(fields.get(name))
        except Invalid as exc:
            errors[name] = str(exc.detail)
    if errors:
        raise Invalid.of_fields(errors)
    return {**clean, "metric": metric, "comparator": comparator}


def _clean_enabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid("Enabled must be true or false.", field="enabled")
    return value


def rule_data(rule: AlertRule) -> dict[str, Any]:
    """What the audit log keeps of a rule (before and after a change)."""
    return {
        "metric": rule.metric,
        "comparator": rule.comparator,
        "threshold": plain(rule.threshold),
        "window_days": rule.window_days,
        "sub_account_id": rule.sub_account_id,
        "enabled": rule.enabled,
    }


def _evaluate_on_commit(partner_id: int) -> None:
    transaction.on_commit(lambda: alert_evaluations_request([partner_id]), robust=True)


@retry_on_lost_race
@transaction.atomic
def alert_rule_create(
    *,
    principal: Principal,
    metric: Any,
    comparator: Any,
    threshold: Any,
    window_days: Any = DEFAULT_WINDOW_DAYS,
    sub_account_id: Any = None,
    enabled: Any = True,
) -> AlertRule:
    """A rule on the principal's partner: ``metric`` ``comparator`` ``threshold`` over the
    last ``window_days`` days, for ``sub_account_id`` or each active sub-account."""
    require(can_manage_alert_rules(principal), "Your role may not change alert rules.")
    # The partner's lock (lock order 2) counts its rules one creation at a time.
    partner = partner_for(principal, lock=True)
    clean = _clean(
        principal,
        partner,
        {
            "metric": metric,
            "comparator": comparator,
            "threshold": threshold,
            "window_days": window_days,
            "sub_account_id": sub_account_id,
        },
    )
    clean["enabled"] = _clean_enabled(enabled)
    live = AlertRule.objects.filter(partner_id=partner.pk, deleted_at__isnull=True)
    if live.count() >= MAX_RULES:
        raise Conflict(f"A partner has at most {MAX_RULES} alert rules: delete one first.")
    at = clock.now()
    rule = AlertRule.objects.create(partner=partner, created_at=at, updated_at=at, **clean)
    AlertEvaluation.objects.get_or_create(partner_id=partner.pk)
    audit_record(
        principal=principal,
        partner_id=partner.pk,
        action="alert_rule.create",
        object_type="alert_rule",
        object_id=rule.pk,
        sub_account_id=rule.sub_account_id,
        at=at,
        data={"after": rule_data(rule)},
    )
    if rule.enabled:
        _evaluate_on_commit(partner.pk)
    return rule


def _locked_rule(principal: Principal, rule_id: Any) -> AlertRule:
    return (
        AlertRule.objects.visible_to(principal)
        .filter(deleted_at__isnull=True)
        .select_for_update(no_key=True)
        .get_visible(principal, rule_id, what="Alert rule")
    )


def _resolve_firing(principal: Principal, rule: AlertRule, because: str, at: Any) -> int:
    firing = list(
        Alert.objects.filter(partner_id=rule.partner_id, rule_id=rule.pk, status=AlertStatus.FIRING)
    )
    return alerts_resolve(
        principal=principal, partner_id=rule.partner_id, alerts=firing, because=because, at=at
    )


EDITABLE = (*CONDITION_FIELDS, "enabled")


@retry_on_lost_race
@transaction.atomic
def alert_rule_update(*, principal: Principal, rule_id: Any, **changes: Any) -> AlertRule:
    """Change some of a rule's fields (``EDITABLE``); the result is checked whole. A new
    condition resolves the alerts of the old one, and so does pausing (``enabled``
    false). Changing nothing records nothing."""
    require(can_manage_alert_rules(principal), "Your role may not change alert rules.")
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(unknown)}.", field=unknown[0])
    rule = _locked_rule(principal, rule_id)
    partner = Partner.objects.get(pk=rule.partner_id)
    current = {name: getattr(rule, name) for name in CONDITION_FIELDS}
    wanted = {**current, **{k: v for k, v in changes.items() if k in CONDITION_FIELDS}}
    if "threshold" not in changes:
        wanted["threshold"] = plain(rule.threshold)
    # A sub-account kept as it was may have stopped being active since (the rule then
    # watches nothing and its alerts resolve); only a newly chosen one must be active.
    keep = (
        rule.sub_account_id is not None
        and wanted["sub_account_id"] == rule.sub_account_id
        and wanted["metric"] not in PARTNER_METRICS
    )
    clean = _clean(principal, partner, {**wanted, "sub_account_id": None} if keep else wanted)
    if keep:
        clean["sub_account_id"] = rule.sub_account_id
    if "enabled" in changes:
        clean["enabled"] = _clean_enabled(changes["enabled"])
    before = rule_data(rule)
    condition_changed = any(clean[name] != current[name] for name in CONDITION_FIELDS)
    for name, value in clean.items():
        setattr(rule, name, value)
    after = rule_data(rule)
    if after == before:
        return rule
    at = clock.now()
    if not rule.enabled and before["enabled"]:
        _resolve_firing(principal, rule, ResolvedBecause.RULE_DISABLED, at)
    elif condition_changed:
        _resolve_firing(principal, rule, ResolvedBecause.RULE_CHANGED, at)
    rule.updated_at = at
    rule.save()
    changed = [name for name in after if after[name] != before[name]]
    audit_record(
        principal=principal,
        partner_id=rule.partner_id,
        action="alert_rule.update",
        object_type="alert_rule",
        object_id=rule.pk,
        sub_account_id=rule.sub_account_id,
        at=at,
        data={
            "before": {k: before[k] for k in changed},
            "after": {k: after[k] for k in changed},
        },
    )
    if rule.enabled:
        _evaluate_on_commit(rule.partner_id)
    return rule


@retry_on_lost_race
@transaction.atomic
def alert_rule_delete(*, principal: Principal, rule_id: Any) -> AlertRule:
    """Delete a rule: its firing alerts resolve; it and its alerts stay as history (the
    alerts keep naming it), but it is no longer listed, read or evaluated."""
    require(can_manage_alert_rules(principal), "Your role may not change alert rules.")
    rule = _locked_rule(principal, rule_id)
    at = clock.now()
    _resolve_firing(principal, rule, ResolvedBecause.RULE_DELETED, at)
    rule.deleted_at = at
    rule.updated_at = at
    rule.save(update_fields=["deleted_at", "updated_at"])
    audit_record(
        principal=principal,
        partner_id=rule.partner_id,
        action="alert_rule.delete",
        object_type="alert_rule",
        object_id=rule.pk,
        sub_account_id=rule.sub_account_id,
        at=at,
        data={"before": rule_data(rule)},
    )
    return rule
