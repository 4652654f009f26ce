"""Approvals, moves and merge batches racing message-event ingestion for the same lines
(issue 16.3): every change succeeds, none answers 409, nothing is left half-done.

Ingestion locks its batch's lines (``FOR NO KEY UPDATE``, id order) and, at commit,
PostgreSQL share-locks the line, sub-account and partner its new rollup rows name
(deferred foreign-key checks). A deletion approval that held its sub-account
``FOR UPDATE`` while waiting for the lines deadlocked with that commit. Every path
now takes its locks in the one order of docs/architecture.md, ``FOR NO KEY UPDATE``
(which foreign-key checks do not wait for), and a transaction that still loses a
race is run again. Real commits, one connection per thread, on SQLite (IMMEDIATE
transactions queue writers) and PostgreSQL (row locks).
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.db.models import Sum
from django.test import Client

from portal.analytics.models import DailyLineRollup, MessageEvent
from portal.core import clock
from portal.lines.models import Line
from portal.partners.models import SubAccount
from portal.workflows.models import DeletionRequest, MergeRequest
from portal.workflows.services.deletions import deletion_request_create
from portal.workflows.services.merges import (
    merge_request_approve,
    merge_request_create,
    merge_request_run,
)
from tests.factories import SYSTEM, assert_line_invariants, make_staff_key
from tests.test_concurrency import post, run_together
from tests.workflows.support import fill, merge_world

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_race_lost(caplog):
    """The lock order, not the retry, keeps these apart: no transaction had to run again."""
    caplog.set_level(logging.INFO, logger="portal.retry")
    yield
    lost = [r.getMessage() for r in caplog.get_records("call") if r.name == "portal.retry"]
    assert not lost, lost


_ids = itertools.count()
INGESTERS = 5
PER_LINE = 3


def _events(lines: list[Line], at: dt.datetime) -> list[dict[str, str]]:
    """New inbound and outbound events on every line, a few contacts each, at ``at``."""
    return [
        {
            "id": f"race-{next(_ids)}",
            "line": line.number,
            "direction": "inbound" if k % 2 else "outbound",
            "contact": f"+1415555{k:04d}",
            "occurred_at": (at + dt.timedelta(milliseconds=k)).isoformat(),
        }
        for line in lines
        for k in range(PER_LINE)
    ]


def _ingest(client: Client, staff: str, lines: list[Line], at: dt.datetime):
    return post(client, staff, "/message-events", {"events": _events(lines, at)})


def _assert_every_event_counted(partner_id: int, lines: list[Line]) -> None:
    """Each ingester's events were all accepted once, and the rollups hold them all."""
    expected = INGESTERS * PER_LINE * len(lines)
    assert MessageEvent.objects.filter(partner_id=partner_id).count() == expected
    totals = DailyLineRollup.objects.filter(partner_id=partner_id).aggregate(
        sent=Sum("messages_sent"), received=Sum("messages_received")
    )
    assert totals["sent"] + totals["received"] == expected


def run_threads(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads released together; their results, or the first error."""
    barrier = threading.Barrier(len(calls), timeout=30)
    results: list[Any] = [None] * len(calls)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = calls[i]()
        except BaseException as exc:  # reported below
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a call never finished"
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    return results


def test_deletion_approvals_racing_ingestion_all_succeed():
    world = merge_world("Deleting Under Traffic", counts=(4, 4, 4, 4, 4))
    manager = world.principal("manager")
    requests = [
        deletion_request_create(
            principal=manager,
            sub_account_id=source.pk,
            line_disposition="move" if i % 2 else "disconnect",
            move_to_id=world.other.pk if i % 2 else None,
        )
        for i, source in enumerate(world.sources)
    ]
    lines = list(Line.objects.filter(sub_account__in=world.sources).order_by("?"))
    staff = make_staff_key()
    slug = world.partner.slug
    at = clock.now()

    def race(i: int, c: Client):
        if i < len(requests):
            return post(c, staff, f"/deletion-requests/{requests[i].pk}/approve?partner={slug}", {})
        return _ingest(c, staff, lines, at)

    results = run_together(len(requests) + INGESTERS, race)

    assert Counter(status for status, _ in results) == {200: len(results)}
    assert set(DeletionRequest.objects.values_list("status", flat=True)) == {"scheduled"}
    assert not SubAccount.objects.exclude(lock_reason="").exists()
    assert sum(r.lines_disposed for r in DeletionRequest.objects.all()) == len(lines)
    assert_line_invariants([world.partner.pk])
    _assert_every_event_counted(world.partner.pk, lines)


def test_single_and_bulk_moves_racing_ingestion_all_succeed():
    world = merge_world("Moving Under Traffic", counts=(6, 6))
    first, second = world.sources
    singles = list(Line.objects.filter(sub_account=first).order_by("pk"))
    bulk = list(Line.objects.filter(sub_account=second).order_by("pk"))
    lines = singles + bulk
    admin = world.tenant.keys["admin"]
    staff = make_staff_key()
    at = clock.now()
    # Bulk moves of overlapping halves in both directions would refuse each other
    # by design; these take disjoint thirds to different sub-accounts.
    thirds = [bulk[0:2], bulk[2:4], bulk[4:6]]
    targets = [world.target, world.other, first]

    def race(i: int, c: Client):
        if i < len(singles):
            body = {"sub_account_id": world.other.pk, "from_sub_account_id": first.pk}
            return post(c, admin, f"/lines/{singles[i].pk}/move", body)
        i -= len(singles)
        if i < len(thirds):
            body = {
                "line_ids": [line.pk for line in reversed(thirds[i])],
                "sub_account_id": targets[i].pk,
                "from_sub_account_id": second.pk,
            }
            return post(c, admin, "/lines/move", body)
        return _ingest(c, staff, lines, at)

    results = run_together(len(singles) + len(thirds) + INGESTERS, race)

    assert Counter(status for status, _ in results) == {200: len(results)}
    assert SubAccount.objects.get(pk=second.pk).line_count == 0
    assert_line_invariants([world.partner.pk])
    _assert_every_event_counted(world.partner.pk, lines)


def test_merge_batches_racing_ingestion_complete_the_merge():
    world = merge_world("Merging Under Traffic", counts=(1, 1, 1))
    # Later sources get the lower line ids: a batch taken in (sub-account, number) order
    # then spans sub-accounts against id order, as ingestion locks them.
    for source in reversed(world.sources):
        fill(source, 4)
    request = merge_request_create(
        principal=world.principal("manager"),
        source_ids=[s.pk for s in world.sources],
        target_id=world.target.pk,
    )
    merge_request_approve(principal=SYSTEM, request_id=request.pk)
    lines = list(Line.objects.filter(sub_account__in=world.sources).order_by("?"))
    staff = make_staff_key()
    at = clock.now()

    def ingest() -> int:
        response = _ingest(Client(), staff, lines, at)
        return response.status_code

    def merge() -> str:
        done = merge_request_run(principal=SYSTEM, request_id=request.pk, batch_size=2)
        return done.status if done else "missing"

    results = run_threads([merge, *([ingest] * INGESTERS)])

    assert results == ["completed", *([200] * INGESTERS)]
    request.refresh_from_db()
    assert request.lines_moved == request.lines_total == len(lines)
    assert not Line.objects.filter(sub_account__in=world.sources).exists()
    assert set(
        SubAccount.objects.filter(pk__in=[s.pk for s in world.sources]).values_list(
            "status", flat=True
        )
    ) == {"merged"}
    assert not SubAccount.objects.exclude(lock_reason="").exists()
    assert MergeRequest.objects.get(pk=request.pk).status == "completed"
    assert_line_invariants([world.partner.pk])
    _assert_every_event_counted(world.partner.pk, lines)
