"""Concurrent requests (domain §7): no 500s, no lost or doubled changes, invariants intact.

These tests commit for real (``transaction=True``) and run requests from several
threads released together by a barrier, each with its own database connection. They
run on whichever database the suite runs on: SQLite (writers queue on the
IMMEDIATE transaction) and PostgreSQL (row locks).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.db.models import Sum
from django.test import Client

from portal.audit.models import AuditEvent
from portal.lines.models import AssignmentPeriod, Line, LineOrder
from portal.partners.models import SubAccount
from tests.factories import (
    assert_line_invariants,
    fresh_numbers,
    import_numbers,
    make_lines,
    make_sub_account,
    make_tenant,
)

pytestmark = pytest.mark.django_db(transaction=True)

# The generic answer api.py gives when the database itself refused a race (lock
# timeout, deadlock, "database is locked"): the services should queue instead.
DATABASE_RACE = "Another change to the same objects happened at the same time; retry."


def run_together(count: int, request: Callable[[int, Client], Any]) -> list[tuple[int, Any]]:
    """Run ``request(i, client)`` in ``count`` threads at once; (status, body) per thread."""
    barrier = threading.Barrier(count, timeout=30)
    results: list[Any] = [None] * count

    def worker(i: int) -> None:
        try:
            client = Client()
            barrier.wait()
            response = request(i, client)
            results[i] = (response.status_code, response.json())
        except BaseException as exc:  # reported below, with the thread's index
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a request never finished"
    errors = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert not errors, errors
    for status, body in results:
        assert status in {200, 201, 409}, (status, body)
        if status == 409:
            assert body["detail"] != DATABASE_RACE, "a lost race surfaced as a database error"
            assert "locked" not in body["detail"].lower() or "is locked:" in body["detail"]
    return results


def post(client: Client, key: str, path: str, body: dict[str, Any]):
    return client.post(
        "/api/v1" + path,
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def assert_periods_tile(line: Line) -> list[AssignmentPeriod]:
    periods = list(AssignmentPeriod.objects.filter(line=line).order_by("start", "pk"))
    for earlier, later in itertools.pairwise(periods):
        assert earlier.end is not None
        assert earlier.end == later.start
    assert [p.end is None for p in periods].count(True) == (1 if line.status == "active" else 0)
    return periods


def test_sixteen_moves_of_one_line_to_sixteen_sub_accounts():
    tenant = make_tenant("Racing Partner")
    targets = [make_sub_account(tenant.partner, f"Target {i:02d}") for i in range(16)]
    line = make_lines(tenant.partner, 1)[0]
    key = tenant.keys["manager"]

    results = run_together(
        16,
        lambda i, c: post(c, key, f"/lines/{line.pk}/move", {"sub_account_id": targets[i].pk}),
    )

    won = [i for i, (status, _) in enumerate(results) if status == 200]
    assert won, "no move succeeded"
    line.refresh_from_db()
    assert line.status == "active"
    moves = list(AuditEvent.objects.filter(action="line.move", line_id=line.pk).order_by("id"))
    assert len(moves) == len(won)
    assert {m.data["after"]["sub_account_id"] for m in moves} == {targets[i].pk for i in won}
    assert line.sub_account_id == moves[-1].data["after"]["sub_account_id"]
    # Each move started from where the previous one left the line.
    for earlier, later in itertools.pairwise(moves):
        assert later.data["before"]["sub_account_id"] == earlier.data["after"]["sub_account_id"]

    periods = assert_periods_tile(line)
    assert len(periods) == 1 + len(won)
    assert periods[-1].sub_account_id == line.sub_account_id
    counts = dict(SubAccount.objects.filter(partner=tenant.partner).values_list("pk", "line_count"))
    assert sum(counts.values()) == 1
    assert counts[line.sub_account_id] == 1
    assert_line_invariants([tenant.partner.pk])


def test_sixteen_moves_from_one_stale_view_exactly_one_wins():
    """domain §7: sixteen callers saw the line in Available and each moves it elsewhere.
    With from_sub_account_id the check rides on the move's own lock: one 200, fifteen
    409s that say where the line went, one move in the history."""
    tenant = make_tenant("Stale Partner")
    targets = [make_sub_account(tenant.partner, f"Target {i:02d}") for i in range(16)]
    line = make_lines(tenant.partner, 1)[0]
    seen = line.sub_account_id
    key = tenant.keys["manager"]

    results = run_together(
        16,
        lambda i, c: post(
            c,
            key,
            f"/lines/{line.pk}/move",
            {"sub_account_id": targets[i].pk, "from_sub_account_id": seen},
        ),
    )

    assert Counter(status for status, _ in results) == {200: 1, 409: 15}
    winner = next(i for i, (status, _) in enumerate(results) if status == 200)
    for status, body in results:
        if status == 409:
            assert body["detail"].startswith(
                f"Line {line.number} is no longer in “Available”: it was moved to "
                f"“{targets[winner].name}” at "
            ), body
    line.refresh_from_db()
    assert line.sub_account_id == targets[winner].pk
    moves = list(AuditEvent.objects.filter(action="line.move", line_id=line.pk))
    assert len(moves) == 1
    assert moves[0].data["before"] == {"sub_account_id": seen}
    assert moves[0].data["after"] == {"sub_account_id": targets[winner].pk}
    periods = assert_periods_tile(line)
    assert [p.sub_account_id for p in periods] == [seen, targets[winner].pk]
    counts = dict(SubAccount.objects.filter(partner=tenant.partner).values_list("pk", "line_count"))
    assert counts[targets[winner].pk] == 1
    assert sum(counts.values()) == 1
    assert_line_invariants([tenant.partner.pk])


def test_bulk_moves_from_one_stale_view_exactly_one_wins():
    """Six callers saw the same eight lines in Available (one shared with a single
    move): all or nothing, so exactly one request moves lines and the rest move none."""
    tenant = make_tenant("Stale Bulk Partner")
    targets = [make_sub_account(tenant.partner, f"Group {i}") for i in range(6)]
    lines = make_lines(tenant.partner, 8)
    ids = [line.pk for line in lines]
    seen = lines[0].sub_account_id
    key = tenant.keys["manager"]

    def request(i: int, c: Client) -> Any:
        chosen = ids if i % 2 else list(reversed(ids))
        return post(
            c,
            key,
            "/lines/move",
            {"line_ids": chosen, "sub_account_id": targets[i].pk, "from_sub_account_id": seen},
        )

    results = run_together(6, request)

    assert Counter(status for status, _ in results) == {200: 1, 409: 5}
    winner = next(i for i, (status, _) in enumerate(results) if status == 200)
    assert results[winner][1] == {"moved": 8, "already_there": 0}
    assert set(Line.objects.filter(pk__in=ids).values_list("sub_account_id", flat=True)) == {
        targets[winner].pk
    }
    assert AuditEvent.objects.filter(action="line.move").count() == 8
    assert AssignmentPeriod.objects.filter(line__in=ids).count() == 16
    assert_line_invariants([tenant.partner.pk])


def test_eight_assigns_of_one_line_exactly_one_wins():
    tenant = make_tenant("Assigning Partner")
    targets = [make_sub_account(tenant.partner, f"Client {i}") for i in range(8)]
    line = make_lines(tenant.partner, 1)[0]
    key = tenant.keys["admin"]

    results = run_together(
        8,
        lambda i, c: post(
            c,
            key,
            f"/lines/{line.pk}/assign",
            {"sub_account_id": targets[i].pk, "label": f"Desk {i}"},
        ),
    )

    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 1, 409: 7}
    winner = next(i for i, (status, _) in enumerate(results) if status == 200)
    line.refresh_from_db()
    assert line.sub_account_id == targets[winner].pk
    assert line.label == f"Desk {winner}"
    assert AuditEvent.objects.filter(action="line.assign").count() == 1
    assert len(assert_periods_tile(line)) == 2
    assert_line_invariants([tenant.partner.pk])


def test_eight_creates_with_one_name_exactly_one_wins():
    tenant = make_tenant("Naming Partner")
    key = tenant.keys["admin"]

    results = run_together(
        8, lambda i, c: post(c, key, "/sub-accounts", {"name": "Client X – Sales"})
    )

    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 1, 409: 7}
    for status, body in results:
        if status == 409:
            assert "already exists" in body["detail"]
    assert SubAccount.objects.filter(name__iexact="client x – sales").count() == 1
    assert AuditEvent.objects.filter(action="sub_account.create").count() == 1


def test_overlapping_bulk_moves_stay_consistent():
    tenant = make_tenant("Bulk Partner")
    targets = [make_sub_account(tenant.partner, f"Group {i}") for i in range(6)]
    lines = make_lines(tenant.partner, 12)
    ids = [line.pk for line in lines]
    key = tenant.keys["manager"]
    moved_total = 0

    for round_no in range(3):

        def request(i: int, c: Client, round_no: int = round_no) -> Any:
            start = (2 * i + round_no) % len(ids)
            chosen = [ids[(start + k) % len(ids)] for k in range(6)]
            # Reverse half of them so that the requests name shared lines in opposite orders.
            if i % 2:
                chosen.reverse()
            target = targets[(i + round_no) % len(targets)].pk
            return post(c, key, "/lines/move", {"line_ids": chosen, "sub_account_id": target})

        results = run_together(6, request)
        for status, body in results:
            if status == 200:
                moved_total += body["moved"]
        assert_line_invariants([tenant.partner.pk])

    assert AuditEvent.objects.filter(action="line.move").count() == moved_total
    assert AssignmentPeriod.objects.filter(line__in=ids).count() == len(ids) + moved_total
    total = SubAccount.objects.filter(partner=tenant.partner).aggregate(n=Sum("line_count"))
    assert total["n"] == len(ids)


def test_moves_and_disconnects_of_one_line_race_cleanly():
    tenant = make_tenant("Mixed Partner")
    targets = [make_sub_account(tenant.partner, f"Team {i}") for i in range(4)]
    line = make_lines(tenant.partner, 1)[0]
    key = tenant.keys["admin"]

    def request(i: int, c: Client) -> Any:
        if i % 2:
            return post(c, key, f"/lines/{line.pk}/disconnect", {})
        return post(c, key, f"/lines/{line.pk}/move", {"sub_account_id": targets[i // 2].pk})

    results = run_together(8, request)

    line.refresh_from_db()
    assert line.status == "disconnected"
    disconnects = [r for i, r in enumerate(results) if i % 2 and r[0] == 200]
    assert len(disconnects) == 1
    moves_won = sum(1 for i, r in enumerate(results) if not i % 2 and r[0] == 200)
    assert AuditEvent.objects.filter(action="line.move").count() == moves_won
    assert AuditEvent.objects.filter(action="line.disconnect").count() == 1
    assert len(assert_periods_tile(line)) == 1 + moves_won
    assert_line_invariants([tenant.partner.pk])


def test_parallel_orders_share_the_stock_without_doubling():
    tenants = [make_tenant(f"Ordering Partner {i}") for i in range(3)]
    numbers = fresh_numbers(12)
    import_numbers(*numbers)

    def request(i: int, c: Client) -> Any:
        tenant = tenants[i % 3]
        return post(c, tenant.keys["manager"], "/line-orders", {"quantity": 2})

    results = run_together(6, request)

    assert Counter(status for status, _ in results) == {201: 6}
    delivered = Line.objects.filter(order__isnull=False)
    assert delivered.count() == 12
    assert sorted(delivered.values_list("number", flat=True)) == sorted(numbers)
    assert set(LineOrder.objects.values_list("status", flat=True)) == {"fulfilled"}
    assert_line_invariants()


def test_one_idempotency_key_sent_eight_times_at_once_creates_one_object():
    tenant = make_tenant("Retrying Partner")
    key = tenant.keys["admin"]

    def request(i: int, c: Client) -> Any:
        return c.post(
            "/api/v1/sub-accounts",
            json.dumps({"name": "Only once"}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {key}",
            HTTP_IDEMPOTENCY_KEY="retry-storm-1",
        )

    results = run_together(8, request)

    created = [body for status, body in results if status == 201]
    assert created, results
    assert all(body == created[0] for body in created)  # replays repeat the first answer
    for status, body in results:
        if status == 409:
            assert "in progress" in body["detail"]
    assert SubAccount.objects.filter(name="Only once").count() == 1
    assert AuditEvent.objects.filter(action="sub_account.create").count() == 1


def test_only_lost_races_are_reported_as_conflicts():
    """The API and the pages turn lock give-ups and unique-key races into 409, and nothing
    else (core.retry.is_conflict)."""
    from django.db import DatabaseError, IntegrityError, OperationalError

    from portal.core.retry import is_conflict as _is_lost_race

    class FakeCause(Exception):
        def __init__(self, sqlstate: str) -> None:
            self.sqlstate = sqlstate

    def operational(message: str, sqlstate: str | None = None) -> OperationalError:
        exc = OperationalError(message)
        if sqlstate:
            exc.__cause__ = FakeCause(sqlstate)
        return exc

    assert _is_lost_race(IntegrityError("UNIQUE constraint failed"))
    assert _is_lost_race(operational("database is locked"))
    assert _is_lost_race(operational("deadlock detected", "40P01"))
    assert _is_lost_race(operational("could not serialize access", "40001"))
    assert _is_lost_race(operational("could not obtain lock", "55P03"))
    assert not _is_lost_race(operational("integer overflow"))
    assert not _is_lost_race(operational("server closed the connection", "08006"))
    assert not _is_lost_race(DatabaseError("something else"))
