"""The worker: queued tasks, heartbeats, stalled-task recovery, periodic jobs."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import threading
import time
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from portal.accounts.idempotency import prune_idempotency_records
from portal.accounts.models import IdempotencyRecord
from portal.core.clock import frozen_at
from portal.jobs import periodic
from portal.jobs.models import PeriodicRun, WorkerHeartbeat
from portal.jobs.services import recover_stalled_tasks
from portal.jobs.tasks import ping
from tests.portal_process import PORTAL, portal_env

# The worker commits in its own transactions (claims, heartbeats, periodic claims).
pytestmark = pytest.mark.django_db(transaction=True)

STALE = dt.timedelta(seconds=settings.WORKER_STALE_AFTER_SECONDS)


def run_worker_once() -> str:
    out = StringIO()
    call_command("worker", "--once", "--interval", "0", stdout=out)
    return out.getvalue()


def running_task(worker_id: str, *, started: dt.datetime, value: str = "again") -> str:
    """A task claimed by ``worker_id`` at ``started`` and still marked running."""
    result = ping.enqueue(value)
    DBTaskResult.objects.filter(pk=result.id).update(
        status=TaskResultStatus.RUNNING, worker_ids=[worker_id], started_at=started
    )
    return result.id


def heartbeat(worker_id: str, at: dt.datetime) -> None:
    WorkerHeartbeat.objects.create(worker_id=worker_id, started_at=at, last_seen=at)


def test_once_runs_queued_tasks_and_exits():
    first, second = ping.enqueue("hello"), ping.enqueue({"n": 2})

    output = run_worker_once()

    rows = {str(r.pk): r for r in DBTaskResult.objects.all()}
    assert rows[first.id].status == TaskResultStatus.SUCCESSFUL
    assert rows[first.id].return_value == "hello"
    assert rows[second.id].return_value == {"n": 2}
    assert "Ran 2 tasks" in output
    # A clean stop removes the worker's heartbeat.
    assert not WorkerHeartbeat.objects.exists()


def test_once_runs_the_periodic_jobs_that_are_due():
    output = run_worker_once()

    assert "recover_stalled_tasks" in output
    assert "prune_idempotency_records" in output
    assert set(PeriodicRun.objects.values_list("name", flat=True)) >= {
        "recover_stalled_tasks",
        "prune_idempotency_records",
    }
    # Just ran: not due again for this second worker.
    assert "periodic jobs: none due" in run_worker_once()


def test_task_of_a_dead_worker_is_requeued_and_run():
    long_ago = timezone.now() - 3 * STALE
    heartbeat("dead-worker", long_ago)
    task_id = running_task("dead-worker", started=long_ago, value="recovered")

    run_worker_once()

    row = DBTaskResult.objects.get(pk=task_id)
    assert row.status == TaskResultStatus.SUCCESSFUL
    assert row.return_value == "recovered"
    assert row.worker_ids[0] == "dead-worker"
    assert len(row.worker_ids) == 2  # claimed again by the worker that ran it
    assert not WorkerHeartbeat.objects.filter(worker_id="dead-worker").exists()


def test_task_whose_worker_never_beat_is_requeued():
    task_id = running_task("no-heartbeat", started=timezone.now() - 2 * STALE)

    assert recover_stalled_tasks() == [task_id]
    assert DBTaskResult.objects.get(pk=task_id).status == TaskResultStatus.READY


def test_task_of_a_live_worker_is_left_alone():
    heartbeat("busy-worker", timezone.now())
    task_id = running_task("busy-worker", started=timezone.now() - 10 * STALE)

    assert recover_stalled_tasks() == []
    run_worker_once()

    row = DBTaskResult.objects.get(pk=task_id)
    assert row.status == TaskResultStatus.RUNNING
    assert row.worker_ids == ["busy-worker"]


def test_a_task_that_just_started_gets_time_to_be_seen():
    task_id = running_task("new-worker", started=timezone.now())

    assert recover_stalled_tasks() == []
    assert DBTaskResult.objects.get(pk=task_id).status == TaskResultStatus.RUNNING


def test_only_one_recovery_requeues_a_task():
    task_id = running_task("dead-worker", started=timezone.now() - 2 * STALE)

    assert recover_stalled_tasks() == [task_id]
    assert recover_stalled_tasks() == []


def test_recovery_leaves_a_task_that_was_claimed_again_meanwhile():
    """The requeue is conditional on the start time that was read."""
    task_id = running_task("dead-worker", started=timezone.now() - 2 * STALE)
    row = DBTaskResult.objects.get(pk=task_id)
    # Another worker recovered and claimed the task between our read and our update.
    heartbeat("second-worker", timezone.now())
    DBTaskResult.objects.filter(pk=task_id).update(
        worker_ids=["dead-worker", "second-worker"], started_at=timezone.now()
    )
    taken = DBTaskResult.objects.filter(
        pk=task_id, status=TaskResultStatus.RUNNING, started_at=row.started_at
    ).update(status=TaskResultStatus.READY)

    assert taken == 0
    assert recover_stalled_tasks() == []


# --- periodic jobs ---------------------------------------------------------------------


def counting_job(name: str, every: dt.timedelta) -> tuple[periodic.PeriodicJob, list[int]]:
    calls: list[int] = []
    return periodic.PeriodicJob(name=name, every=every, func=lambda: calls.append(1)), calls


def test_a_claimed_periodic_job_does_not_run_again_within_its_interval():
    job, calls = counting_job("test_every_ten_minutes", dt.timedelta(minutes=10))
    start = timezone.now()

    with frozen_at(start):
        assert periodic.run_due([job]) == [job.name]
    with frozen_at(start + dt.timedelta(minutes=9, seconds=59)):
        assert periodic.run_due([job]) == []
    with frozen_at(start + dt.timedelta(minutes=10)):
        assert periodic.run_due([job]) == [job.name]
    assert len(calls) == 2


def test_concurrent_workers_claim_a_periodic_job_once():
    job, _ = counting_job("test_contended", dt.timedelta(minutes=1))
    at = timezone.now()
    wins: list[bool] = []
    barrier = threading.Barrier(4)

    def contend() -> None:
        try:
            barrier.wait()
            wins.append(periodic.claim(job, at=at))
        finally:
            connection.close()

    threads = [threading.Thread(target=contend) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(wins) == [False, False, False, True]


def test_a_failing_periodic_job_does_not_stop_the_others():
    def broken() -> None:
        raise RuntimeError("boom")

    bad = periodic.PeriodicJob(name="test_broken", every=dt.timedelta(hours=1), func=broken)
    good, calls = counting_job("test_good", dt.timedelta(hours=1))

    assert periodic.run_due([bad, good]) == ["test_broken", "test_good"]
    assert calls == [1]


def test_builtin_periodic_jobs_are_registered():
    jobs = {job.name: job.every for job in periodic.registered_jobs()}

    assert jobs["recover_stalled_tasks"] == dt.timedelta(seconds=30)
    assert jobs["prune_idempotency_records"] == dt.timedelta(hours=1)


def test_register_refuses_a_second_function_under_the_same_name():
    with pytest.raises(ValueError, match="already registered"):
        periodic.register("recover_stalled_tasks", every=dt.timedelta(seconds=30))(lambda: None)
    with pytest.raises(ValueError, match="positive"):
        periodic.register("test_zero", every=dt.timedelta(0))


def test_prune_removes_idempotency_records_older_than_48_hours():
    old = IdempotencyRecord.objects.create(scope="s", key="old", fingerprint="f")
    kept = IdempotencyRecord.objects.create(scope="s", key="recent", fingerprint="f")
    IdempotencyRecord.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - dt.timedelta(hours=49)
    )
    IdempotencyRecord.objects.filter(pk=kept.pk).update(
        created_at=timezone.now() - dt.timedelta(hours=47)
    )

    assert prune_idempotency_records() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["recent"]


# --- the real process ------------------------------------------------------------------


def test_worker_process_beats_and_stops_cleanly_on_sigterm():
    process = subprocess.Popen(
        [PORTAL, "worker", "--interval", "0.2"],
        env=portal_env(PORTAL_WORKER_STALE_AFTER="4"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not WorkerHeartbeat.objects.exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the worker never wrote a heartbeat"
            time.sleep(0.1)
        first_seen = WorkerHeartbeat.objects.get().last_seen
        task = ping.enqueue("from a process")
        while DBTaskResult.objects.get(pk=task.id).status != TaskResultStatus.SUCCESSFUL:
            assert time.monotonic() < deadline, "the worker never ran the task"
            time.sleep(0.1)
        # The heartbeat thread keeps the row fresh (every second with a 4 s window).
        while WorkerHeartbeat.objects.get().last_seen == first_seen:
            assert time.monotonic() < deadline, "the heartbeat was never refreshed"
            time.sleep(0.1)

        process.send_signal(signal.SIGTERM)
        # Generous: a write may wait out SQLite's 30 s busy timeout on a loaded machine.
        try:
            output, _ = process.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGUSR1)  # every thread's stack, to see where it hangs
            time.sleep(1)
            process.kill()
            output, _ = process.communicate()
            pytest.fail(f"the worker did not stop within 90 s of SIGTERM:\n{output}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, output
    assert "Traceback" not in output
    assert not WorkerHeartbeat.objects.exists()
