"""``retry_on_lost_race``: a transaction the database ended as a race's loser runs again.

Real transactions on the real database: on PostgreSQL two transactions lock two rows
in opposite order (a true deadlock, which the server breaks by ending one); on SQLite
a writer finds the database held by another past its busy timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import OperationalError, connection, transaction

from portal.audit.models import AuditEvent
from portal.audit.services import audit_record
from portal.core.errors import Conflict
from portal.core.retry import RETRIES, retry_on_lost_race
from portal.partners.models import SubAccount
from tests.factories import SYSTEM, make_sub_account, make_tenant

pytestmark = pytest.mark.django_db(transaction=True)

sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's busy wait")


def _in_threads(calls: list[Callable[[], Any]]) -> list[Any]:
    results: list[Any] = [None] * len(calls)

    def worker(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # returned, to be asserted on
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a transaction never finished"
    return results


class _Recorder:
    """Attempts per caller and the on-commit callbacks that ran."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}
        self.committed: list[str] = []

    def attempt(self, name: str) -> int:
        self.attempts[name] = self.attempts.get(name, 0) + 1
        return self.attempts[name]

    def record(self, name: str, sub_account: SubAccount) -> None:
        """The change's one audit event, and a callback that runs only on commit."""
        audit_record(
            principal=SYSTEM,
            partner_id=sub_account.partner_id,
            action="test.race",
            object_type="sub_account",
            object_id=sub_account.pk,
            data={"caller": name},
        )
        transaction.on_commit(lambda: self.committed.append(name))


@pytest.mark.postgres_only
def test_the_loser_of_a_deadlock_runs_again_and_both_commit_once():
    partner = make_tenant("Deadlocking Partner").partner
    one, two = make_sub_account(partner, "One"), make_sub_account(partner, "Two")
    both_hold_one = threading.Barrier(2, timeout=30)
    seen = _Recorder()

    @retry_on_lost_race
    def lock_both(name: str, first: int, second: int) -> int:
        attempt = seen.attempt(name)
        with transaction.atomic():
            SubAccount.objects.select_for_update().get(pk=first)
            if attempt == 1:
                both_hold_one.wait()  # each holds one row and reaches for the other's
            locked = SubAccount.objects.select_for_update().get(pk=second)
            seen.record(name, locked)
        return attempt

    results = _in_threads(
        [lambda: lock_both("a", one.pk, two.pk), lambda: lock_both("b", two.pk, one.pk)]
    )

    assert sorted(results) == [1, 2], results  # one won at once, the loser on its retry
    assert sorted(seen.committed) == ["a", "b"]  # the lost attempt's callback never ran
    events = AuditEvent.objects.filter(action="test.race")
    assert sorted(e.data["caller"] for e in events) == ["a", "b"]  # one event per change


def test_inside_a_callers_transaction_the_error_goes_up_unretried():
    seen = _Recorder()

    @retry_on_lost_race
    def refused() -> None:
        seen.attempt("inner")
        raise OperationalError("database is locked")

    with pytest.raises(OperationalError), transaction.atomic():
        refused()
    assert seen.attempts == {"inner": 1}


def test_a_refusal_is_not_a_lost_race():
    seen = _Recorder()

    @retry_on_lost_race
    def refused() -> None:
        seen.attempt("refused")
        with transaction.atomic():
            raise Conflict("Line 1 is disconnected.")

    with pytest.raises(Conflict):
        refused()
    assert seen.attempts == {"refused": 1}


def test_a_lost_race_in_an_on_commit_callback_does_not_run_the_committed_change_again():
    partner = make_tenant("Committed Partner").partner
    sub_account = make_sub_account(partner, "Committed")
    seen = _Recorder()

    def enqueue() -> None:
        raise OperationalError("database is locked")  # as a busy queue table would

    @retry_on_lost_race
    def change() -> None:
        seen.attempt("change")
        with transaction.atomic():
            seen.record("change", SubAccount.objects.get(pk=sub_account.pk))
            transaction.on_commit(enqueue)

    with pytest.raises(OperationalError):
        change()
    assert seen.attempts == {"change": 1}
    assert AuditEvent.objects.filter(action="test.race").count() == 1


def _holding_the_database(release: threading.Event, holding: threading.Event) -> None:
    """A writer that keeps SQLite's write lock until ``release`` is set."""
    with transaction.atomic():
        SubAccount.objects.update(notes="held")
        holding.set()
        release.wait(timeout=30)


def _impatient() -> None:
    """This connection gives up on a held database at once instead of after 30 s."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout = 0")


@sqlite_only
def test_a_writer_that_found_sqlite_busy_runs_again_once_it_is_free():
    partner = make_tenant("Busy Partner").partner
    sub_account = make_sub_account(partner, "Busy")
    holding, retrying = threading.Event(), threading.Event()
    seen = _Recorder()

    @retry_on_lost_race
    def write() -> int:
        attempt = seen.attempt("writer")
        if attempt > 1:
            retrying.set()
        with transaction.atomic():
            seen.record("writer", SubAccount.objects.get(pk=sub_account.pk))
        return attempt

    def writer() -> int:
        _impatient()
        holding.wait(timeout=30)
        return write()

    # The holder lets go once the writer, having found the database held, runs again.
    results = _in_threads([lambda: _holding_the_database(retrying, holding), writer])

    assert results[1] > 1, results  # the first attempt found the database busy
    assert seen.committed == ["writer"]  # one commit, one callback
    assert AuditEvent.objects.filter(action="test.race").count() == 1


@sqlite_only
def test_a_writer_still_losing_after_the_retries_gets_the_error():
    partner = make_tenant("Held Partner").partner
    sub_account = make_sub_account(partner, "Held")
    release, holding = threading.Event(), threading.Event()
    seen = _Recorder()

    @retry_on_lost_race
    def write() -> None:
        seen.attempt("writer")
        with transaction.atomic():
            seen.record("writer", SubAccount.objects.get(pk=sub_account.pk))

    def writer() -> None:
        _impatient()
        holding.wait(timeout=30)
        try:
            write()
        finally:
            release.set()

    results = _in_threads([lambda: _holding_the_database(release, holding), writer])

    assert isinstance(results[1], OperationalError), results
    assert seen.attempts == {"writer": RETRIES + 1}
    assert seen.committed == []
    assert not AuditEvent.objects.filter(action="test.race").exists()
