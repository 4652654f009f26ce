"""Raw-event retention: the worker prunes old days in batches, rollups stay, late events for
a pruned day are refused, and pairs whose history was pruned still classify correctly."""

from __future__ import annotations

import datetime as dt

import pytest

from portal.analytics.models import Conversation, MessageEvent, PartnerAnalyticsState
from portal.analytics.retention import message_events_prune
from portal.core import clock
from tests.analytics.support import (
    assign_at,
    event,
    ingest,
    lines_at,
    sub_rollups,
    sub_rollups_recounted,
    utc,
)
from tests.conftest import Api
from tests.factories import make_sub_account, make_tenant

DAY = dt.timedelta(days=1)
D0 = utc("2025-03-01 12:00")
NOW = D0 + 40 * DAY  # 10 April: with 10 days kept, days before 31 March are pruned
PERIOD = {"start": "2025-03-01", "end": "2025-04-10"}


@pytest.fixture(autouse=True)
def retention(settings):
    settings.EVENT_RETENTION_DAYS = 10


def _twin(name: str):
    tenant = make_tenant(name)
    line = lines_at(tenant.partner, 1, D0 - 10 * DAY)[0]
    sub_account = make_sub_account(tenant.partner, "Client – Outreach")
    assign_at(line, sub_account, D0 - 5 * DAY, daily_limit=3)
    return tenant, line, sub_account


def _history(line, tag):
    """Before the horizon (31 March) four pairs talked; one message is after it."""
    return [
        event(f"{tag}-1", line, "outbound", "+14155550101", D0 + 19 * DAY),  # 20 March
        event(f"{tag}-2", line, "outbound", "+14155550102", D0 + 24 * DAY),  # 25 March
        event(f"{tag}-3", line, "outbound", "+14155550103", D0),  # 1 March
        event(f"{tag}-4", line, "outbound", "+14155550103", D0 + 4 * DAY),  # 5 March
        event(f"{tag}-5", line, "inbound", "+14155550104", D0 + 31 * DAY),  # 1 April: kept
    ]


def _late(line, tag):
    """After the horizon, arriving once the history before it is gone."""
    return [
        # 16 days after its last (pruned) message: the same conversation, not a new one.
        event(f"{tag}-6", line, "outbound", "+14155550101", D0 + 35 * DAY),
        # A reply 12 days after the (pruned) outreach: it answers it.
        event(f"{tag}-7", line, "inbound", "+14155550102", D0 + 36 * DAY),
        # 35 days after its last (pruned) message: a new conversation.
        event(f"{tag}-8", line, "outbound", "+14155550103", D0 + 39 * DAY),
    ]


def _series(tenant, sub_account):
    with clock.frozen_at(NOW):
        body = Api(tenant.keys["viewer"]).get(f"/sub-accounts/{sub_account.pk}/analytics", **PERIOD)
    assert body.status_code == 200
    return body.json()


def test_pruned_history_still_classifies_late_events_as_the_full_history(db):
    pruned, line_p, sub_p = _twin("Pruned Partner")
    kept, line_k, sub_k = _twin("Kept Partner")
    with clock.frozen_at(NOW):
        ingest(*_history(line_p, "p"))
        ingest(*_history(line_k, "k"))
        before = _series(pruned, sub_p)
        assert message_events_prune(partner_id=pruned.partner.pk, batch_size=2) == 4
        assert _series(pruned, sub_p) == before  # rollups are kept
        assert MessageEvent.objects.filter(partner=pruned.partner).count() == 1
        assert Conversation.objects.filter(partner=pruned.partner).count() == 4
        report = ingest(*_late(line_p, "p"))
        assert (report.accepted, report.rejected) == (3, [])
        ingest(*_late(line_k, "k"))

    assert _series(pruned, sub_p)["days"] == _series(kept, sub_k)["days"]
    totals = _series(pruned, sub_p)["totals"]
    assert (totals["new_conversations"], totals["responded_conversations"]) == (4, 1)
    assert totals["inbound_conversations"] == 1
    assert totals["messages_sent"] == 6  # the pruned days' counts are kept
    shape = ("kind", "started_at", "local_day", "responded", "last_message_at", "first_reply_at")
    assert sorted(Conversation.objects.filter(partner=pruned.partner).values_list(*shape)) == (
        sorted(Conversation.objects.filter(partner=kept.partner).values_list(*shape))
    )
    assert sub_rollups(pruned.partner) == sub_rollups_recounted(pruned.partner)


def test_an_event_for_a_pruned_day_is_refused_by_index(db):
    tenant, line, _ = _twin("Pruned Partner")
    with clock.frozen_at(NOW):
        ingest(*_history(line, "p"))
        message_events_prune(partner_id=tenant.partner.pk)
        state = PartnerAnalyticsState.objects.get(partner=tenant.partner)
        assert state.events_pruned_before == dt.date(2025, 3, 31)
        report = ingest(
            event("ok", line, "outbound", "+14155550109", utc("2025-03-31 00:00")),
            event("old", line, "outbound", "+14155550109", utc("2025-03-30 23:59:59")),
            event("p-1", line, "outbound", "+14155550101", D0),  # a redelivery, too late
        )
    assert report.accepted == 1
    assert [r["index"] for r in report.rejected] == [1, 2]
    assert "2025-03-30" in report.rejected[0]["detail"]
    assert "pruned" in report.rejected[0]["detail"]


def test_pruning_is_batched_resumable_and_keeps_recent_days(db):
    tenant, line, _ = _twin("Pruned Partner")
    with clock.frozen_at(NOW):
        ingest(*_history(line, "p"))
        assert message_events_prune(partner_id=tenant.partner.pk, batch_size=3) == 4
        assert message_events_prune(partner_id=tenant.partner.pk, batch_size=3) == 0
    assert list(MessageEvent.objects.filter(partner=tenant.partner).values_list("event_id")) == [
        ("p-5",)
    ]
