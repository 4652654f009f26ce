"""Property: the same events in any order, repeated, over any number of batches, give the
same conversations, line rollups and sub-account rollups as one in-order batch of each
event once (and the sub-account rollups, kept by deltas, equal the line rollups' sums)."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.analytics.support import (
    T0,
    assign_at,
    buckets,
    buckets_recounted,
    conversations,
    event,
    ingest,
    lines_at,
    move_at,
    rollups,
    sub_rollups,
    sub_rollups_recounted,
)
from tests.factories import make_partner, make_sub_account

DAY = 24 * 3600
# Offsets (seconds after the first day) that straddle the 30-day edge and day boundaries.
EDGES = [0, 1, 3600, DAY - 1, DAY, 29 * DAY, 30 * DAY - 1, 30 * DAY, 30 * DAY + 1, 61 * DAY]
offsets = st.one_of(st.sampled_from(EDGES), st.integers(0, 90 * DAY))
message = st.tuples(
    st.integers(0, 1),  # line
    st.integers(0, 2),  # contact
    st.sampled_from(["outbound", "inbound"]),
    offsets,
)
CONTACTS = ["+14155550101", "+14155550102", "+1 (415) 555-0103"]
FIRST = T0 + dt.timedelta(days=1)


@st.composite
def deliveries(draw):
    """The events, then how they arrive: shuffled, some repeated, cut into batches."""
    messages = draw(st.lists(message, min_size=1, max_size=14))
    events = list(range(len(messages)))
    repeats = draw(st.lists(st.sampled_from(events), max_size=6))
    arrival = draw(st.permutations(events + repeats))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(arrival) - 1)), max_size=4)))
    batches = [arrival[a:b] for a, b in zip([0, *cuts], [*cuts, len(arrival)], strict=True)]
    return messages, [b for b in batches if b]


def _outcome(partner, lines, messages, batches):
    payloads = [
        event(
            f"evt-{i}",
            lines[line],
            direction,
            CONTACTS[contact],
            FIRST + dt.timedelta(seconds=offset),
        )
        for i, (line, contact, direction, offset) in enumerate(messages)
    ]
    with transaction.atomic():
        accepted = duplicates = 0
        for batch in batches:
            report = ingest(*(payloads[i] for i in batch))
            assert report.rejected == []
            accepted += report.accepted
            duplicates += report.duplicates
        result = (rollups(partner), conversations(partner), sub_rollups(partner))
        assert result[2] == sub_rollups_recounted(partner)
        assert buckets(partner) == buckets_recounted(partner)
        transaction.set_rollback(True)
    assert accepted == len(messages)
    assert duplicates == sum(len(b) for b in batches) - len(messages)
    return result


@pytest.fixture
def world(db):
    partner = make_partner(timezone="Europe/Berlin")
    lines = lines_at(partner, 2)
    alpha = make_sub_account(partner, "Alpha – Sales")
    beta = make_sub_account(partner, "Beta – Support")
    # Line 0 changes hands in the middle of the events' span, at a non-midnight instant.
    assign_at(lines[0], alpha, T0 + dt.timedelta(hours=6), daily_limit=2)
    move_at(lines[0], beta, FIRST + dt.timedelta(days=30, hours=3))
    return partner, lines


@settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(delivery=deliveries())
def test_order_repetition_and_batching_do_not_change_the_result(world, delivery):
    partner, lines = world
    messages, batches = delivery
    in_order = _outcome(partner, lines, messages, [list(range(len(messages)))])
    assert _outcome(partner, lines, messages, batches) == in_order
    new = sum(row[5] for row in in_order[0])
    assert new == sum(1 for c in in_order[1] if c[2] == "new")
