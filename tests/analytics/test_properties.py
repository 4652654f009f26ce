"""Property: the same events in any order, repeated, over any number of batches, and with
the line's history (limit changes, a return to Available, a merge) happening between any
two batches that causality allows, give the same conversations, line rollups (limits and
pressure included) and sub-account rollups as one in-order batch of each event once after
the whole history (and the sub-account rollups, kept by deltas, equal the line rollups'
sums; the pressure equals a recount from scratch, domain §4)."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.partners.models import SubAccount, SubAccountKind
from tests.analytics.support import (
    T0,
    assign_at,
    buckets,
    buckets_recounted,
    conversations,
    event,
    ingest,
    lines_at,
    merge_at,
    move_at,
    pressure_recounted,
    pressure_stored,
    rollups,
    sub_rollups,
    sub_rollups_recounted,
    update_limit_at,
)
from tests.factories import make_partner, make_sub_account

DAY = 24 * 3600
# Offsets (seconds after the first day) that straddle the 30-day edge and day boundaries.
EDGES = [0, 1, 3600, DAY - 1, DAY, 29 * DAY, 30 * DAY - 1, 30 * DAY, 30 * DAY + 1, 61 * DAY]
offsets = st.one_of(st.sampled_from(EDGES), st.integers(0, 90 * DAY))
message = st.tuples(
    st.integers(0, 2),  # line
    st.integers(0, 2),  # contact
    st.sampled_from(["outbound", "inbound"]),
    offsets,
)
CONTACTS = ["+14155550101", "+14155550102", "+1 (415) 555-0103"]
FIRST = T0 + dt.timedelta(days=1)


# The history that happens while events arrive, in time order (line 0 starts in Alpha with
# limit 2, line 2 in Gamma with limit 3): instants inside days, never at midnight.
HISTORY = [
    ("limit", 0, 1, FIRST + dt.timedelta(days=5, hours=7)),  # line 0: 2 -> 1
    ("merge", 2, None, FIRST + dt.timedelta(days=10, hours=5)),  # Gamma into Delta
    ("limit", 2, 5, FIRST + dt.timedelta(days=10, hours=9)),  # line 2: 3 -> 5, merge day
    ("limit", 2, 1, FIRST + dt.timedelta(days=29, hours=23)),  # line 2: 5 -> 1
    ("available", 0, None, FIRST + dt.timedelta(days=61, hours=2)),  # line 0: -> default
]


@st.composite
def deliveries(draw):
    """The events, then how they arrive: shuffled, some repeated, cut into batches; and
    before which batch each change of HISTORY happens (in order, and only once no batch
    still to come needs it not to have happened: an event is ingested after it occurs,
    so a change at ``at`` precedes every batch with an event at or after ``at``)."""
    messages = draw(st.lists(message, min_size=1, max_size=14))
    events = list(range(len(messages)))
    repeats = draw(st.lists(st.sampled_from(events), max_size=6))
    arrival = draw(st.permutations(events + repeats))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(arrival) - 1)), max_size=4)))
    batches = [arrival[a:b] for a, b in zip([0, *cuts], [*cuts, len(arrival)], strict=True)]
    batches = [b for b in batches if b]
    positions, low = [], 0
    for *_, at in HISTORY:
        high = next(
            (
                i
                for i, batch in enumerate(batches)
                if any(FIRST + dt.timedelta(seconds=messages[e][3]) >= at for e in batch)
            ),
            len(batches),
        )
        low = min(max(low, 0), high)
        positions.append(low := draw(st.integers(low, high)))
    return messages, batches, positions


def _apply(world, change) -> None:
    kind, line_index, value, at = change
    line = world["lines"][line_index]
    if kind == "limit":
        update_limit_at(line, value, at)
    elif kind == "merge":
        merge_at([world["gamma"]], world["delta"], at)
    else:
        move_at(line, world["available"], at)


def _outcome(world, messages, batches, positions):
    partner, lines = world["partner"], world["lines"]
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
        for i, batch in enumerate([*batches, []]):
            for change, position in zip(HISTORY, positions, strict=True):
                if position == i:
                    _apply(world, change)
            if not batch:
                continue
            report = ingest(*(payloads[i] for i in batch))
            assert report.rejected == []
            accepted += report.accepted
            duplicates += report.duplicates
        result = (rollups(partner), conversations(partner), sub_rollups(partner))
        assert result[2] == sub_rollups_recounted(partner)
        assert buckets(partner) == buckets_recounted(partner)
        assert pressure_stored(partner) == pressure_recounted(partner)
        transaction.set_rollback(True)
    assert accepted == len(messages)
    assert duplicates == sum(len(b) for b in batches) - len(messages)
    return result


@pytest.fixture
def world(db):
    partner = make_partner(timezone="Europe/Berlin")
    lines = lines_at(partner, 3)
    alpha = make_sub_account(partner, "Alpha – Sales")
    beta = make_sub_account(partner, "Beta – Support")
    gamma = make_sub_account(partner, "Gamma – Sales")
    delta = make_sub_account(partner, "Delta – Sales")
    # Line 0 changes hands in the middle of the events' span, at a non-midnight instant.
    assign_at(lines[0], alpha, T0 + dt.timedelta(hours=6), daily_limit=2)
    move_at(lines[0], beta, FIRST + dt.timedelta(days=30, hours=3))
    assign_at(lines[2], gamma, T0 + dt.timedelta(hours=6), daily_limit=3)
    available = SubAccount.objects.get(partner=partner, kind=SubAccountKind.AVAILABLE)
    return {
        "partner": partner,
        "lines": lines,
        "gamma": gamma,
        "delta": delta,
        "available": available,
    }


@settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(delivery=deliveries())
def test_order_repetition_and_batching_do_not_change_the_result(world, delivery):
    messages, batches, positions = delivery
    in_order = _outcome(world, messages, [list(range(len(messages)))], [0] * len(HISTORY))
    assert _outcome(world, messages, batches, positions) == in_order
    new = sum(row[5] for row in in_order[0])
    assert new == sum(1 for c in in_order[1] if c[2] == "new")
