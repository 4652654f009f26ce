"""Evaluating alert rules over real rollups (domain §8.4): an alert fires once when its
condition becomes true, never again while it stays true, resolves when it becomes false;
its value is the figure the Analytics comparison shows for the rule's window; the worker
is asked after each ingestion batch (once while one is pending) and every few minutes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django_tasks_db.models import DBTaskResult

from portal.alerts import services
from portal.alerts.evaluation import EVALUATOR, alerts_evaluate
from portal.alerts.models import Alert, AlertEvaluation, AlertStatus
from portal.alerts.tasks import EVERY, evaluate_alerts_job, evaluate_partner_alerts
from portal.analytics.selectors import sub_account_analytics_list
from portal.audit.models import AuditEvent
from portal.core import clock
from portal.jobs.periodic import registered_jobs
from tests.analytics.support import T0, assign_at, event, ingest, lines_at, merge_at, utc
from tests.factories import SYSTEM, make_sub_account

pytestmark = pytest.mark.django_db

DAY = "2025-03-05"


def outbound(tag: str, line, count: int, at: str, answered: int = 0) -> list[dict]:
    """``count`` new conversations on ``line`` at ``at``, the first ``answered`` answered."""
    events = []
    for i in range(count):
        contact = f"+1415{abs(hash((tag, i))) % 10**7:07d}"
        events.append(event(f"{tag}-o{i}", line, "outbound", contact, utc(at)))
        if i < answered:
            reply = utc(at) + dt.timedelta(minutes=30)
            events.append(event(f"{tag}-r{i}", line, "inbound", contact, reply))
    return events


@pytest.fixture
def busy(tenant):
    """Alpha (one line, limit 4) starts 4 conversations on 5 March, 1 answered; Beta (limit
    10) starts 1, answered."""
    partner = tenant.partner
    alpha, beta = make_sub_account(partner, "Alpha"), make_sub_account(partner, "Beta")
    line_a, line_b = lines_at(partner, 2, T0)
    assign_at(line_a, alpha, T0, daily_limit=4)
    assign_at(line_b, beta, T0, daily_limit=10)
    with clock.frozen_at(utc(f"{DAY} 12:00")):
        assert not ingest(
            *outbound("a", line_a, 4, f"{DAY} 09:00", answered=1),
            *outbound("b", line_b, 1, f"{DAY} 09:00", answered=1),
        ).rejected
    return {"partner": partner, "alpha": alpha, "beta": beta, "lines": (line_a, line_b)}


def evaluate(partner, at: str):
    with clock.frozen_at(utc(at)):
        return alerts_evaluate(principal=EVALUATOR.acting_for(partner.pk))


def rule(partner, **fields):
    principal = SYSTEM.acting_for(partner.pk)
    return services.alert_rule_create(principal=principal, **fields)


def test_an_alert_fires_once_and_resolves_when_the_figure_falls(busy):
    partner, alpha = busy["partner"], busy["alpha"]
    usage = rule(
        partner, metric="volume_limit_usage", comparator="above", threshold="0.8", window_days=1
    )
    report = evaluate(partner, f"{DAY} 15:00")
    assert (report.fired, report.resolved) == (1, 0)
    alert = Alert.objects.get()
    assert (alert.sub_account_id, alert.value, alert.status) == (alpha.pk, Decimal("1"), "firing")
    assert alert.threshold == Decimal("0.8") and alert.window_days == 1
    trigger = AuditEvent.objects.get(action="alert.trigger")
    assert trigger.sub_account_id == alpha.pk and trigger.object_id == str(alert.pk)
    assert trigger.data["value"] == "1" and trigger.data["rule_id"] == usage.pk
    assert trigger.actor_label == "job:evaluate_alerts"

    # Still true: nothing new, however often it is evaluated.
    for hour in ("16:00", "17:00"):
        assert evaluate(partner, f"{DAY} {hour}").fired == 0
    assert Alert.objects.count() == 1

    # The next day has no traffic: usage 0 over its one day, and the alert resolves.
    report = evaluate(partner, "2025-03-06 15:00")
    assert (report.fired, report.resolved) == (0, 1)
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED and alert.resolved_value == Decimal("0")
    assert alert.resolved_at == utc("2025-03-06 15:00") and alert.resolved_because == "condition"
    assert AuditEvent.objects.filter(action="alert.resolve").count() == 1
    assert evaluate(partner, "2025-03-06 16:00").resolved == 0


def test_values_are_the_comparisons_figures(busy):
    partner = busy["partner"]
    for metric in ("volume_limit_usage", "response_rate", "over_pressured_line_days"):
        # "Above 0" fires for every sub-account with a figure, so each value shows.
        rule(partner, metric=metric, comparator="above", threshold=0, window_days=3)
    evaluate(partner, f"{DAY} 15:00")
    with clock.frozen_at(utc(f"{DAY} 15:00")):
        rows = sub_account_analytics_list(
            principal=SYSTEM.acting_for(partner.pk),
            start=dt.date(2025, 3, 3),
            end=dt.date(2025, 3, 5),
        ).rows
    expected = {
        (row["sub_account_id"], metric): row[metric]
        for row in rows
        for metric in ("volume_limit_usage", "response_rate", "over_pressured_line_days")
        if row[metric]
    }
    fired = {(a.sub_account_id, a.metric): float(a.value) for a in Alert.objects.all()}
    assert fired == pytest.approx(expected)
    # Alpha: 4 of 3 days × 4; 1 answered of 4; one day at its limit.
    alpha = busy["alpha"].pk
    assert fired[(alpha, "volume_limit_usage")] == pytest.approx(4 / 12, abs=1e-4)
    assert fired[(alpha, "response_rate")] == 0.25
    assert fired[(alpha, "over_pressured_line_days")] == 1


def test_a_rule_on_one_sub_account_and_a_partner_wide_one(busy):
    partner, beta = busy["partner"], busy["beta"]
    rule(
        partner,
        metric="response_rate",
        comparator="above",
        threshold="0.5",
        window_days=2,
        sub_account_id=beta.pk,
    )
    rule(partner, metric="available_lines", comparator="below", threshold=1)
    evaluate(partner, f"{DAY} 15:00")
    alerts = {(a.metric, a.sub_account_id): a.value for a in Alert.objects.all()}
    # Beta answered its one conversation (1.0); Alpha is not watched; Available is empty.
    assert alerts == {("response_rate", beta.pk): Decimal("1"), ("available_lines", None): 0}
    # A line back in Available: no longer below 1.
    lines_at(partner, 1, utc(f"{DAY} 15:30"))
    assert evaluate(partner, f"{DAY} 16:00").resolved == 1


def test_a_merged_sub_account_stops_being_watched(tenant):
    partner = tenant.partner
    gamma, delta = make_sub_account(partner, "Gamma"), make_sub_account(partner, "Delta")
    (line,) = lines_at(partner, 1, T0)
    assign_at(line, gamma, T0, daily_limit=2)
    with clock.frozen_at(utc(f"{DAY} 12:00")):
        ingest(*outbound("g", line, 2, f"{DAY} 09:00"))
    rule(partner, metric="over_pressured_line_days", comparator="above", threshold=0, window_days=7)
    evaluate(partner, f"{DAY} 13:00")
    assert Alert.objects.get().sub_account_id == gamma.pk
    merge_at([gamma], delta, utc(f"{DAY} 14:00"))
    report = evaluate(partner, f"{DAY} 15:00")
    # Gamma's alert resolves; its history is Delta's now, so Delta's fires.
    assert (report.fired, report.resolved) == (1, 1)
    gone = Alert.objects.get(sub_account=gamma)
    assert gone.status == "resolved" and gone.resolved_because == "sub_account_gone"
    assert Alert.objects.get(status="firing").sub_account_id == delta.pk


def test_undefined_figures_never_hold(busy):
    partner = busy["partner"]
    quiet = make_sub_account(partner, "Quiet")  # no lines, no conversations
    rule(partner, metric="response_rate", comparator="below", threshold="0.5", window_days=1)
    rule(partner, metric="volume_limit_usage", comparator="below", threshold="0.5", window_days=1)
    evaluate(partner, f"{DAY} 15:00")
    assert not Alert.objects.filter(sub_account=quiet).exists()


def test_one_firing_alert_per_rule_and_sub_account_is_held_by_the_database(busy):
    partner = busy["partner"]
    rule(partner, metric="volume_limit_usage", comparator="above", threshold="0.8", window_days=1)
    rule(partner, metric="available_lines", comparator="below", threshold=1)
    evaluate(partner, f"{DAY} 15:00")
    for alert in Alert.objects.all():
        copy = Alert.objects.get(pk=alert.pk)
        copy.pk = None
        with pytest.raises(IntegrityError), transaction.atomic():
            copy.save()


def test_ingestion_asks_for_one_evaluation_at_a_time(
    busy, django_capture_on_commit_callbacks, other_tenant
):
    partner, (line_a, _) = busy["partner"], busy["lines"]
    queued = DBTaskResult.objects.filter(task_path__endswith="evaluate_partner_alerts")

    def batch(tag: str) -> None:
        with clock.frozen_at(utc(f"{DAY} 12:00")), django_capture_on_commit_callbacks(execute=True):
            ingest(*outbound(tag, line_a, 1, f"{DAY} 10:00"))

    batch("no-rules")
    assert not queued.exists()  # no rule, nothing to evaluate
    rule(partner, metric="volume_limit_usage", comparator="above", threshold="0.8", window_days=1)
    batch("first")
    assert queued.count() == 1
    batch("second")  # the first is still pending: it will see this batch too
    assert queued.count() == 1
    with clock.frozen_at(utc(f"{DAY} 15:00")):
        result = evaluate_partner_alerts.call(partner.pk)
        assert result["fired"] == 1
        # The same task again (a retry, or a second one) finds nothing pending.
        assert evaluate_partner_alerts.call(partner.pk)["skipped"]
    batch("third")
    assert queued.count() == 2
    state = AlertEvaluation.objects.get(partner=partner)
    assert state.requests == 2 and state.started_for == 1


def test_the_periodic_job_evaluates_every_partner_with_rules(busy):
    partner = busy["partner"]
    job = next(j for j in registered_jobs() if j.name == "evaluate_alerts")
    assert job.every == EVERY <= dt.timedelta(minutes=10)
    rule(partner, metric="volume_limit_usage", comparator="above", threshold="0.8", window_days=1)
    with clock.frozen_at(utc(f"{DAY} 15:00")):
        evaluate_alerts_job()
    assert Alert.objects.filter(status="firing").count() == 1
    assert AlertEvaluation.objects.get(partner=partner).finished_at == utc(f"{DAY} 15:00")
