"""The worker's side of alerts: the evaluation queued after an ingestion batch or a rule
change, and the periodic evaluation of every partner with rules.

Tasks are thin: they take a partner id and call ``alerts.evaluation``, which is safe to
run twice (a second run finds the alerts the first fired and changes nothing).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.tasks import task

from portal.alerts.evaluation import EVALUATOR, alerts_evaluate, partners_with_rules
from portal.jobs import periodic

logger = logging.getLogger("portal.alerts")

# "At least every 10 minutes" (domain §8.4), with room for a slow run or a busy worker.
EVERY = dt.timedelta(minutes=5)


@task()
def evaluate_partner_alerts(partner_id: int) -> dict[str, Any]:
    """Evaluate one partner's rules, unless another evaluation began since it was queued."""
    report = alerts_evaluate(principal=EVALUATOR.acting_for(partner_id), only_if_pending=True)
    if report is None:
        return {"partner_id": partner_id, "skipped": True}
    return {
        "partner_id": partner_id,
        "rules": report.rules,
        "fired": report.fired,
        "resolved": report.resolved,
    }


@periodic.register("evaluate_alerts", every=EVERY)
def evaluate_alerts_job() -> None:
    """Every partner's rules, each partner in its own transaction; one failing partner is
    logged and the others still run."""
    for partner_id in partners_with_rules():
        try:
            alerts_evaluate(principal=EVALUATOR.acting_for(partner_id))
        except Exception:
            logger.exception("Evaluating the alert rules of partner %s failed", partner_id)
