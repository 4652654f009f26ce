"""Property (domain §8.4): over any series of daily traffic, evaluated any number of times a
day, an alert fires exactly when its condition becomes true, resolves exactly when it
becomes false, and never fires again while it stays true; each firing and resolution has
its one audit event. The figures are real: events ingested, rollups read back."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.alerts.evaluation import EVALUATOR, alerts_evaluate
from portal.alerts.figures import holds
from portal.alerts.models import Alert
from portal.alerts.services import alert_rule_create
from portal.analytics.periods import Metrics
from portal.audit.models import AuditEvent
from portal.core import clock
from tests.analytics.support import T0, assign_at, event, ingest, lines_at
from tests.factories import SYSTEM, make_partner, make_sub_account

LIMIT = 4
FIRST = dt.date(2025, 3, 10)
EXAMPLES = int(os.environ.get("ALERT_EXAMPLES", "20"))

day_traffic = st.tuples(st.integers(0, 6), st.integers(0, 6))  # new conversations of A and B
scenario = st.fixed_dictionaries(
    {
        "days": st.lists(day_traffic, min_size=2, max_size=8),
        "window": st.integers(1, 3),
        "comparator": st.sampled_from(["above", "below"]),
        "threshold": st.sampled_from(["0.25", "0.5", "0.75", "1"]),
        # How many evaluations each day (a periodic run, the task after ingestion, …).
        "runs": st.lists(st.integers(1, 3), min_size=8, max_size=8),
    }
)


def at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)


def expected_history(values: list[Decimal], comparator: str, threshold: Decimal) -> list[tuple]:
    """(day index fired, day index resolved or None) for each stretch the condition held."""
    stretches, opened = [], None
    for i, value in enumerate(values):
        true = holds(comparator, value, threshold)
        if true and opened is None:
            opened = i
        elif not true and opened is not None:
            stretches.append((opened, i))
            opened = None
    if opened is not None:
        stretches.append((opened, None))
    return stretches


@pytest.mark.django_db
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(plan=scenario)
def test_alerts_follow_their_condition_and_never_repeat(plan):
    with transaction.atomic():
        _check(plan)
        transaction.set_rollback(True)


def _check(plan: dict) -> None:
    partner = make_partner("Property Alerts")
    subs = [make_sub_account(partner, name) for name in ("A", "B")]
    lines = lines_at(partner, 2, T0)
    for line, sub in zip(lines, subs, strict=True):
        assign_at(line, sub, T0, daily_limit=LIMIT)
    threshold = Decimal(plan["threshold"])
    alert_rule_create(
        principal=SYSTEM.acting_for(partner.pk),
        metric="volume_limit_usage",
        comparator=plan["comparator"],
        threshold=plan["threshold"],
        window_days=plan["window"],
    )
    days = [FIRST + dt.timedelta(days=i) for i in range(len(plan["days"]))]
    values: dict[int, list[Decimal]] = {sub.pk: [] for sub in subs}
    for i, (day, counts) in enumerate(zip(days, plan["days"], strict=True)):
        events = [
            event(f"{day}-{s}-{n}", lines[s], "outbound", f"+1415{s}{i:02d}{n:04d}", at(day, 9))
            for s, count in enumerate(counts)
            for n in range(count)
        ]
        if events:
            with clock.frozen_at(at(day, 12)):
                assert not ingest(*events).rejected
        for s, sub in enumerate(subs):
            window = [c[s] for c in plan["days"][max(0, i - plan["window"] + 1) : i + 1]]
            usage = Metrics(
                new_conversations=sum(window), limit_line_days=LIMIT * plan["window"]
            ).volume_limit_usage
            values[sub.pk].append(Decimal(str(usage)))
        for run in range(plan["runs"][i]):
            with clock.frozen_at(at(day, 20 + run)):
                alerts_evaluate(principal=EVALUATOR.acting_for(partner.pk))

    fired = resolved = 0
    for sub in subs:
        expected = expected_history(values[sub.pk], plan["comparator"], threshold)
        alerts = Alert.objects.filter(partner=partner, sub_account=sub).order_by("fired_at")
        actual = [
            (
                days.index(a.fired_at.date()),
                None if a.resolved_at is None else days.index(a.resolved_at.date()),
            )
            for a in alerts
        ]
        assert actual == expected, (sub.name, values[sub.pk])
        for a, (start, end) in zip(alerts, expected, strict=True):
            # Fired and resolved by the day's first evaluation, with that day's figure.
            assert a.fired_at == at(days[start], 20)
            assert a.value == values[sub.pk][start]
            if end is not None:
                assert a.resolved_at == at(days[end], 20)
                assert a.resolved_value == values[sub.pk][end]
        fired += len(actual)
        resolved += sum(1 for _, end in actual if end is not None)
    events = AuditEvent.objects.filter(partner_id=partner.pk)
    assert events.filter(action="alert.trigger").count() == fired
    assert events.filter(action="alert.resolve").count() == resolved
