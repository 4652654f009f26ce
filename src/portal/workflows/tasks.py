"""Merge processing and the retention purge, run by the worker.

Tasks are thin: they take ids and call the services, which are safe to run twice
(a recovered task may run beside a worker that was only paused).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.tasks import task

from portal.core.principal import Principal
from portal.jobs import periodic
from portal.workflows.services import deletions, merges


@task()
def process_merge_request(merge_request_id: int) -> dict[str, Any]:
    """Move a merge's lines in batches until it completes; resumes after a crash."""
    request = merges.merge_request_run(
        principal=Principal.system("task:merge"), request_id=merge_request_id
    )
    if request is None:
        return {"merge_request_id": merge_request_id, "status": "missing"}
    return {
        "merge_request_id": request.pk,
        "status": request.status,
        "lines_moved": request.lines_moved,
        "lines_total": request.lines_total,
    }


@periodic.register("purge_deleted_sub_accounts", every=dt.timedelta(minutes=10))
def purge_deleted_sub_accounts_job() -> None:
    """Retention: erase the sub-accounts whose purge date has passed."""
    deletions.deletion_requests_purge_due(principal=Principal.system("job:retention-purge"))
