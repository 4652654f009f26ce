"""The traffic simulator: repeatable, plausible, and fed through the real ingestion."""

from __future__ import annotations

import datetime as dt

from portal.analytics.models import MessageEvent
from portal.analytics.simulator import (
    TrafficModel,
    generate_events,
    generate_sub_account_days,
    partner_lines,
    simulate,
)
from portal.core import clock
from tests.analytics.support import assign_at, lines_at, sub_rollups, sub_rollups_recounted, utc
from tests.factories import make_sub_account, make_tenant

NOW = utc("2025-03-20 18:00")
MODEL = TrafficModel(seed=7, base_fraction=(0.2, 0.4), hot_share=0.5)
# Which lines run hot is drawn from their ids, which depend on the tests run before: with
# half of three lines hot, one run in eight had none (the near / over check then failed).
HOT = TrafficModel(seed=7, base_fraction=(0.2, 0.4), hot_share=1.0)


def _partner():
    tenant = make_tenant("Sim Partner", timezone="Europe/Berlin")
    lines = lines_at(tenant.partner, 4, NOW - dt.timedelta(days=30))
    subs = [make_sub_account(tenant.partner, f"Client {c} – Reminders") for c in "ABC"]
    for i, line in enumerate(lines[:3]):
        assign_at(line, subs[i], NOW - dt.timedelta(days=20), daily_limit=10)
    return tenant.partner, lines


def test_the_same_inputs_give_the_same_events(db):
    partner, _ = _partner()
    lines = partner_lines(partner.pk)
    first = list(generate_events(lines, timezone=partner.timezone, days=7, now=NOW, model=MODEL))
    again = list(generate_events(lines, timezone=partner.timezone, days=7, now=NOW, model=MODEL))
    assert first == again
    assert len({e["id"] for e in first}) == len(first)
    assert {e["direction"] for e in first} == {"outbound", "inbound"}
    at = [dt.datetime.fromisoformat(e["occurred_at"]) for e in first]
    assert max(at) <= NOW
    # The line left in Available has no traffic.
    assert {e["line"] for e in first} == {line.number for line in lines[:3]}


def test_simulated_traffic_goes_through_ingestion_in_batches(db):
    partner, _ = _partner()
    with clock.frozen_at(NOW):
        report = simulate(partner=partner, days=10, now=NOW, model=HOT, batch_size=100)
        assert report.batches > 1
        assert report.accepted == report.events == MessageEvent.objects.count()
        assert report.rejected == 0
        again = simulate(partner=partner, days=10, now=NOW, model=HOT, batch_size=100)
    assert again.duplicates == report.events
    rows = sub_rollups(partner)
    assert rows == sub_rollups_recounted(partner)
    # Some line-days run at or over their limit (limit 10, every line runs hot).
    assert sum(row[-2] for row in rows) > 0
    assert sum(row[-1] for row in rows) > 0


def test_weekends_are_quieter_and_one_sub_account_is_rarely_answered():
    days = list(
        generate_sub_account_days(
            [(pk, 10, 500) for pk in range(1, 8)], first_day=dt.date(2025, 3, 3), days=14
        )
    )
    weekday = [d.new_conversations for d in days if d.day.weekday() < 5]
    weekend = [d.new_conversations for d in days if d.day.weekday() >= 5]
    assert sum(weekend) / len(weekend) < 0.5 * sum(weekday) / len(weekday)
    rates = {}
    for d in days:
        new, responded = rates.get(d.sub_account_id, (0, 0))
        rates[d.sub_account_id] = (new + d.new_conversations, responded + d.responded_conversations)
    ratios = sorted(responded / new for new, responded in rates.values())
    assert ratios[0] < 0.5 * ratios[len(ratios) // 2]
