"""Crash safety (issue 6, point 4): a real ``portal worker`` is SIGKILLed in the middle of
a merge; another worker recovers the stalled task and finishes it.

Asserts: completed, each line moved exactly once, exactly one audit event per line
moved, ``lines_moved == lines_total``, line counts right.

Runs on PostgreSQL (the production database). It SKIPS on SQLite — the only test of
this suite that does — because killing a writer of the embedded demo database while
the test process reads it adds nothing that the resumption tests in test_merge.py do
not already prove there.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import time

import pytest
from django.db import connection
from django.tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from portal.core.principal import Principal
from portal.jobs.models import PeriodicRun
from portal.lines.models import AssignmentPeriod, Line
from portal.workflows.models import MergeRequest, MergeStatus
from portal.workflows.services import merges
from tests.factories import assert_line_invariants
from tests.portal_process import PORTAL, portal_env
from tests.workflows.support import merge_events_per_line, merge_world, refreshed

pytestmark = pytest.mark.django_db(transaction=True)

LINES = 300
STALE_SECONDS = "2"


def _worker(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PORTAL, "worker", "--interval", "0.1", *args],
        env=portal_env(PORTAL_WORKER_STALE_AFTER=STALE_SECONDS, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_killed_worker_mid_merge_is_recovered_and_nothing_is_lost_or_doubled():
    if connection.vendor != "postgresql":
        pytest.skip("crash-safety test runs on PostgreSQL only (see the module docstring)")
    world = merge_world("Crashing Partner", counts=(LINES,), target_lines=2)
    source, target = world.sources[0], world.target
    moving = sorted(Line.objects.filter(sub_account=source).values_list("pk", flat=True))
    request = merges.merge_request_create(
        principal=world.principal("manager"), source_ids=[source.pk], target_id=target.pk
    )
    merges.merge_request_approve(principal=Principal.system("staff"), request_id=request.pk)
    task = DBTaskResult.objects.get(task_path__endswith="process_merge_request")

    first = _worker(PORTAL_MERGE_BATCH_SIZE="7", PORTAL_MERGE_BATCH_PAUSE="0.05")
    try:
        deadline = time.monotonic() + 60
        while MergeRequest.objects.get(pk=request.pk).lines_moved < LINES // 4:
            assert first.poll() is None, first.stdout.read()
            assert time.monotonic() < deadline, "the merge never started"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    halfway = MergeRequest.objects.get(pk=request.pk)
    assert halfway.status == MergeStatus.PROCESSING
    assert 0 < halfway.lines_moved < LINES, "the kill should land mid-merge"
    assert DBTaskResult.objects.get(pk=task.pk).status == TaskResultStatus.RUNNING
    # Committed batches are whole: what is counted moved is exactly what moved.
    moved_now = Line.objects.filter(pk__in=moving, sub_account=target).count()
    assert moved_now == halfway.lines_moved

    # Let the dead worker's heartbeat go stale, and let recovery run at the next start.
    time.sleep(float(STALE_SECONDS) + 1)
    PeriodicRun.objects.filter(name="recover_stalled_tasks").update(
        last_run_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    )
    second = _worker("--once", PORTAL_MERGE_BATCH_SIZE="50")
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 0, output
    assert "Traceback" not in output

    done = MergeRequest.objects.get(pk=request.pk)
    assert done.status == MergeStatus.COMPLETED, (done.status, done.failure, output)
    assert done.lines_moved == done.lines_total == LINES
    row = DBTaskResult.objects.get(pk=task.pk)
    assert row.status == TaskResultStatus.SUCCESSFUL
    assert len(row.worker_ids) == 2  # claimed by the killed worker, then the recovering one
    # Each line moved once: one audit event and one merge period per line, all in target.
    assert merge_events_per_line(request.pk) == dict.fromkeys(moving, 1)
    merge_periods = AssignmentPeriod.objects.filter(line_id__in=moving, via_merge=True)
    assert merge_periods.count() == LINES
    assert set(merge_periods.values_list("sub_account_id", flat=True)) == {target.pk}
    assert set(Line.objects.filter(pk__in=moving).values_list("sub_account_id", flat=True)) == {
        target.pk
    }
    assert refreshed(target).line_count == LINES + 2
    assert refreshed(source).line_count == 0
    assert refreshed(source).status == "merged"
    assert_line_invariants([world.partner.pk])
