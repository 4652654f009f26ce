"""Concurrent deliveries of overlapping batches: nothing lost, nothing counted twice.

Commits for real and posts from several threads at once (see tests/test_concurrency.py).
"""

from __future__ import annotations

import datetime as dt
import random

import pytest

from portal.analytics.models import Conversation, DailyLineRollup, MessageEvent
from tests.analytics.support import T0, conversations, event, ingest, lines_at, rollups
from tests.factories import make_staff_key, make_tenant
from tests.test_concurrency import post, run_together

pytestmark = pytest.mark.django_db(transaction=True)


def test_overlapping_batches_posted_at_once_count_each_event_once():
    partner = make_tenant("Concurrent Partner").partner
    lines = lines_at(partner, 2)
    key = make_staff_key()
    events = [
        event(
            f"e{i}",
            lines[i % 2],
            "inbound" if i % 3 == 0 else "outbound",
            f"+1415555{i % 5:04d}",
            T0 + dt.timedelta(days=1 + i * 2.5),
        )
        for i in range(30)
    ]
    rng = random.Random(3)
    batches = [rng.sample(events, 18) for _ in range(4)]

    results = run_together(
        4, lambda i, client: post(client, key, "/message-events", {"events": batches[i]})
    )

    assert [status for status, _ in results] == [200] * 4
    stored = {e["id"] for batch in batches for e in batch}
    assert sum(body["accepted"] for _, body in results) == len(stored)
    assert sum(body["duplicates"] for _, body in results) == 4 * 18 - len(stored)
    concurrent = (rollups(partner), conversations(partner))
    Conversation.objects.all().delete()
    DailyLineRollup.objects.all().delete()
    MessageEvent.objects.all().delete()
    ingest(*(e for e in events if e["id"] in stored))
    assert (rollups(partner), conversations(partner)) == concurrent
