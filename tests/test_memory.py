"""Memory: a batch of message events costs a bounded amount and leaves nothing behind;
large requests hand their freed memory back to the allocator's owner, the kernel."""

from __future__ import annotations

import datetime as dt
import gc
import sys
import tracemalloc

import pytest

from portal.core import memory
from tests.analytics.support import T0, event, lines_at
from tests.conftest import Api

BATCH = 10_000
LINES = 100
CONTACTS = 2_000
# What the second and third batches may leave behind (the caches the first batch filled
# are full by then): 22 and 30 KB measured; a retained batch would be megabytes.
RETAINED_BOUND = 1_000_000
# Python objects alive at once while one batch is handled (the body, its parsed JSON, the
# checked events, the rows to store, the derived rollups): 18 MB measured here.
PEAK_BOUND = 40_000_000


def _batch(lines, k: int) -> dict:
    """The ``k``-th batch: ten thousand events after those of batch ``k - 1``."""
    start = T0 + dt.timedelta(days=1 + k)
    return {
        "events": [
            event(
                f"b{k}-{i}",
                lines[i % len(lines)],
                "outbound" if i % 3 else "inbound",
                f"+1415{5_550_000 + i % CONTACTS}",
                start + dt.timedelta(seconds=8 * i),
            )
            for i in range(BATCH)
        ]
    }


def _traced_after(post, body) -> int:
    post(body)
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_a_batch_of_events_leaves_no_memory_behind_and_peaks_within_a_bound(tenant, staff_key):
    lines = lines_at(tenant.partner, LINES)
    platform = Api(staff_key)
    bodies = [_batch(lines, k) for k in range(3)]

    def post(body: dict) -> None:
        answer = platform.ok_post("/message-events", body)
        assert answer["accepted"] == BATCH, answer["rejected"][:3]

    post(bodies[0])  # first use: imports, the line-number cache, compiled queries
    gc.collect()
    tracemalloc.start(1)
    try:
        before = tracemalloc.get_traced_memory()[0]
        after_second = _traced_after(post, bodies[1])
        tracemalloc.reset_peak()
        after_third = _traced_after(post, bodies[2])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The request's body and parsed events are gone with the request: what stays is
    # the same whether one batch or two went through.
    assert after_second - before < RETAINED_BOUND, after_second - before
    assert after_third - before < RETAINED_BOUND, after_third - before
    assert peak - before < PEAK_BOUND, peak - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_trim_and_arena_limit_are_safe_to_call():
    assert memory.limit_malloc_arenas(0) is False  # 0: glibc's default is left alone
    memory.release_free_memory()  # returns whether anything was released; never raises


def test_large_requests_release_memory_after_the_response(monkeypatch, tenant, staff_key):
    calls: list[str] = []
    monkeypatch.setattr(memory, "release_free_memory", lambda: calls.append("trim"))
    lines = lines_at(tenant.partner, 2)
    platform = Api(staff_key)
    small = {"events": [event("s1", lines[0], "outbound", "+14155550100", T0)]}
    platform.ok_post("/message-events", small)
    assert calls == []
    padded = {
        "events": [
            event(f"p{i}", lines[i % 2], "outbound", "+14155550100", T0 + dt.timedelta(seconds=i))
            for i in range(memory.LARGE_BYTES // 100)
        ]
    }
    platform.ok_post("/message-events", padded)
    assert calls == ["trim"]
