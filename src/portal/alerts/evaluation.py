"""Evaluating a partner's alert rules: alerts fire when a condition turns true and resolve
when it turns false (domain §8.4).

:func:`alerts_evaluate` is the one writer of firings. In one transaction it locks the
partner's rules (by id), reads each rule's figures for every sub-account it watches (one
statement per metric and window, ``alerts.figures``), compares them with the firing
alerts, then inserts the new firings in one multi-row INSERT and resolves the rest in
one UPDATE per batch, each with its audit event (``alert.trigger``, ``alert.resolve``)
recorded set-based. An alert that stays true is left as it is: it never fires twice.
The partial unique constraints on :class:`~portal.alerts.models.Alert` hold that even
against a bug; the rule locks keep two evaluations of one partner (the periodic job and
a task after ingestion) one after the other, the second seeing the first's alerts.

:func:`alerts_resolve` and :func:`alert_evaluations_request` take bare partner ids: they
are internal, called by the rule services and the evaluation (whose principal gave the
partner) and by the commit of an ingestion batch.

When: after every ingestion batch that stored events for the partner
(:func:`alert_evaluations_request`, called once the batch has committed, queues
``alerts.tasks.evaluate_partner_alerts`` unless an evaluation is already pending) and
every five minutes for every partner with rules (``alerts.tasks``), since windows slide
with the clock and line-days change with moves.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F

from portal.accounts.policies import require
from portal.alerts.figures import figures, holds
from portal.alerts.models import (
    Alert,
    AlertEvaluation,
    AlertRule,
    AlertStatus,
    ResolvedBecause,
)
from portal.audit.services import Change, audit_record_bulk
from portal.core import clock
from portal.core.principal import Principal
from portal.core.retry import retry_on_lost_race
from portal.partners.selectors import partner_for

logger = logging.getLogger("portal.alerts")

# Who evaluates: the worker, in the audit log's words "the alert checks".
EVALUATOR = Principal.system("job:evaluate_alerts")
BATCH = 1000


def plain(value: Decimal | None) -> str | None:
    """A decimal as the API and the audit data write it: "0.8", "12" (no exponent)."""
    if value is None:
        return None
    return format(value.normalize(), "f")


@dataclass
class EvaluationReport:
    rules: int = 0
    fired: int = 0
    resolved: int = 0


def _trigger_data(alert: Alert) -> dict[str, Any]:
    return {
        "rule_id": alert.rule_id,
        "metric": alert.metric,
        "comparator": alert.comparator,
        "threshold": plain(alert.threshold),
        "window_days": alert.window_days,
        "value": plain(alert.value),
        "fired_at": alert.fired_at.isoformat(),
    }


def alerts_resolve(
    *,
    principal: Principal,
    partner_id: int,
    alerts: list[Alert],
    because: str,
    at: dt.datetime,
    values: dict[int, Decimal | None] | None = None,
) -> int:
    """Resolve firing ``alerts`` (already read in this transaction, their rules locked) at
    ``at``: one UPDATE per batch and one ``alert.resolve`` event each. ``values``: the
    figure that resolved each (by alert id), when a figure did."""
    if not alerts:
        return 0
    values = values or {}
    ids = [a.pk for a in alerts]
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        Alert.objects.filter(partner_id=partner_id, pk__in=chunk, status=AlertStatus.FIRING).update(
            status=AlertStatus.RESOLVED, resolved_at=at, resolved_because=because
        )
    # The resolving figures differ alert by alert: one CASE per batch (bulk_update).
    valued = [a for a in alerts if values.get(a.pk) is not None]
    for alert in valued:
        alert.resolved_value = values[alert.pk]
    Alert.objects.bulk_update(valued, ["resolved_value"], batch_size=BATCH)
    audit_record_bulk(
        principal=principal,
        partner_id=partner_id,
        action="alert.resolve",
        changes=(
            Change(
                "alert",
                a.pk,
                {
                    "rule_id": a.rule_id,
                    "metric": a.metric,
                    "comparator": a.comparator,
                    "threshold": plain(a.threshold),
                    "window_days": a.window_days,
                    "value": plain(values.get(a.pk)),
                    "because": because,
                    "fired_at": a.fired_at.isoformat(),
                    "resolved_at": at.isoformat(),
                },
                sub_account_id=a.sub_account_id,
            )
            for a in alerts
        ),
        at=at,
    )
    return len(alerts)


def _mark_started(partner_id: int, *, only_if_pending: bool) -> bool:
    """Note that an evaluation begins now (committed before it reads a figure, so a request
    made after this sees a pending-free state and queues its own). False when asked only
    if one is pending and none is."""
    at = clock.now()
    pending = AlertEvaluation.objects.filter(partner_id=partner_id)
    if only_if_pending:
        pending = pending.filter(requests__gt=F("started_for"))
    started = pending.update(started_for=F("requests"), started_at=at)
    if not started and not only_if_pending:
        AlertEvaluation.objects.get_or_create(partner_id=partner_id, defaults={"started_at": at})
        return True
    return bool(started)


@retry_on_lost_race
def alerts_evaluate(
    *,
    principal: Principal,
    rule_ids: Collection[int] | None = None,
    only_if_pending: bool = False,
) -> EvaluationReport | None:
    """Evaluate the enabled rules (or only ``rule_ids``) of the partner the principal acts
    for (the worker: ``EVALUATOR.acting_for(partner_id)``): fire the alerts whose
    condition has turned true, resolve those whose condition has turned false or whose
    sub-account is no longer watched (merged, pending deletion). Returns what changed;
    None when ``only_if_pending`` and no evaluation was pending (a queued task that
    another evaluation already covered).

    Figures are those of the Analytics comparison for the rule's window; a condition
    on an undefined figure (a response rate without conversations) is false.
    """
    require(principal.is_staff, "Alert rules are evaluated by the worker.")
    partner = partner_for(principal)
    partner_id = partner.pk
    if not _mark_started(partner_id, only_if_pending=only_if_pending):
        return None
    report = EvaluationReport()
    with transaction.atomic():
        rules = AlertRule.objects.filter(
            partner_id=partner_id, enabled=True, deleted_at__isnull=True
        )
        if rule_ids is not None:
            rules = rules.filter(pk__in=sorted(rule_ids))
        rules = list(rules.select_for_update(no_key=True).order_by("pk"))
        report.rules = len(rules)
        at = clock.now()
        if rules:
            firing: dict[int, dict[int | None, Alert]] = {}
            for alert in Alert.objects.filter(
                partner_id=partner_id, status=AlertStatus.FIRING, rule_id__in=[r.pk for r in rules]
            ):
                firing.setdefault(alert.rule_id, {})[alert.sub_account_id] = alert
            read: dict[tuple[str, int, int | None], dict[int | None, Decimal | None]] = {}
            new: list[Alert] = []
            ended: dict[str, list[Alert]] = {}
            ending_values: dict[int, Decimal | None] = {}
            for rule in rules:
                key = (rule.metric, rule.window_days, rule.sub_account_id)
                if key not in read:
                    read[key] = figures(
                        partner=partner,
                        metric=rule.metric,
                        window_days=rule.window_days,
                        sub_account_id=rule.sub_account_id,
                    )
                values = read[key]
                open_alerts = firing.get(rule.pk, {})
                for sub_account_id, value in values.items():
                    alert = open_alerts.get(sub_account_id)
                    true = holds(rule.comparator, value, rule.threshold)
                    if true and alert is None:
                        new.append(_fired(rule, sub_account_id, value, at))
                    elif not true and alert is not None:
                        ended.setdefault(ResolvedBecause.CONDITION, []).append(alert)
                        ending_values[alert.pk] = value
                for sub_account_id, alert in open_alerts.items():
                    if sub_account_id not in values:
                        ended.setdefault(ResolvedBecause.SUB_ACCOUNT_GONE, []).append(alert)
            if new:
                Alert.objects.bulk_create(new, batch_size=BATCH)
                audit_record_bulk(
                    principal=principal,
                    partner_id=partner_id,
                    action="alert.trigger",
                    changes=(
                        Change("alert", a.pk, _trigger_data(a), sub_account_id=a.sub_account_id)
                        for a in new
                    ),
                    at=at,
                )
                report.fired = len(new)
            for because, alerts in ended.items():
                report.resolved += alerts_resolve(
                    principal=principal,
                    partner_id=partner_id,
                    alerts=alerts,
                    because=because,
                    at=at,
                    values=ending_values,
                )
        AlertEvaluation.objects.filter(partner_id=partner_id).update(finished_at=at)
    if report.fired or report.resolved:
        logger.info(
            "alerts of partner %s: %d rules, %d fired, %d resolved",
            partner_id,
            report.rules,
            report.fired,
            report.resolved,
        )
    return report


def _fired(rule: AlertRule, sub_account_id: int | None, value: Decimal | None, at: dt.datetime):
    assert value is not None  # a condition on an undefined figure never holds
    return Alert(
        partner_id=rule.partner_id,
        rule_id=rule.pk,
        sub_account_id=sub_account_id,
        metric=rule.metric,
        comparator=rule.comparator,
        threshold=rule.threshold,
        window_days=rule.window_days,
        value=value,
        status=AlertStatus.FIRING,
        fired_at=at,
    )


def partners_with_rules(partner_ids: Iterable[int] | None = None) -> list[int]:
    """The partners (of ``partner_ids``, or all) with at least one rule to evaluate."""
    rules = AlertRule.objects.filter(enabled=True, deleted_at__isnull=True)
    if partner_ids is not None:
        rules = rules.filter(partner_id__in=sorted(set(partner_ids)))
    return sorted(set(rules.values_list("partner_id", flat=True)))


def alert_evaluations_request(partner_ids: Iterable[int]) -> list[int]:
    """Queue an evaluation of each partner's rules, after a commit that may have changed
    its figures (an ingestion batch, a rule change), unless one is pending already: that
    one has read nothing yet, so it will see what committed. Returns the partners queued.

    The request and its task are one transaction (django-tasks-db queues in the same
    database), so a request is never marked pending without a task to run it.
    """
    from portal.alerts.tasks import evaluate_partner_alerts

    queued = []
    for partner_id in partners_with_rules(partner_ids):
        with transaction.atomic():
            AlertEvaluation.objects.get_or_create(partner_id=partner_id)
            took = AlertEvaluation.objects.filter(
                partner_id=partner_id, requests=F("started_for")
            ).update(requests=F("requests") + 1)
            if took:
                evaluate_partner_alerts.enqueue(partner_id)
                queued.append(partner_id)
    return queued
