"""Evaluations of one partner at the same moment (the periodic job and the task after an
ingestion batch, on two workers): one set of alerts, none twice, nobody refused.

Commits for real and evaluates from several threads at once."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from portal.alerts.evaluation import EVALUATOR, alerts_evaluate
from portal.alerts.models import Alert
from portal.alerts.services import alert_rule_create
from portal.audit.models import AuditEvent
from portal.lines.services import line_assign
from tests.factories import SYSTEM, make_lines, make_sub_account, make_tenant

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = 4


def test_evaluations_at_once_fire_each_alert_once():
    partner = make_tenant("Concurrent Alerts").partner
    acting = SYSTEM.acting_for(partner.pk)
    for i, line in enumerate(make_lines(partner, 5)):
        sub = make_sub_account(partner, f"Quiet {i}")
        line_assign(principal=acting, line_id=line.pk, sub_account_id=sub.pk, label="Desk")
    # No traffic today: every sub-account with a line is below 50 %, and Available is empty.
    alert_rule_create(
        principal=acting,
        metric="volume_limit_usage",
        comparator="below",
        threshold="0.5",
        window_days=1,
    )
    alert_rule_create(principal=acting, metric="available_lines", comparator="below", threshold=1)
    barrier = threading.Barrier(THREADS, timeout=30)
    results: list = [None] * THREADS

    def evaluate(i: int) -> None:
        try:
            barrier.wait()
            results[i] = alerts_evaluate(principal=EVALUATOR.acting_for(partner.pk))
        except BaseException as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=evaluate, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    assert sum(r.fired for r in results) == 6
    assert Alert.objects.filter(partner=partner, status="firing").count() == 6
    assert AuditEvent.objects.filter(partner_id=partner.pk, action="alert.trigger").count() == 6
