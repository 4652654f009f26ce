"""Approvals, moves and merge batches racing message-event ingestion for the same lines.

Ingestion locks the lines of its batch (``FOR NO KEY UPDATE``, id order) and then
inserts rollup rows whose foreign keys make PostgreSQL share-lock the line, the
sub-account and the partner they name. Every other path takes its locks in the one
order written in docs/architecture.md, so none of them waits for ingestion while
holding something ingestion waits for: every change succeeds, none answers 409.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter

import pytest
from django.test import Client

from portal.core import clock
from portal.lines.models import Line
from portal.partners.models import SubAccount
from portal.workflows.models import DeletionRequest
from portal.workflows.services import deletion_request_create
from tests.factories import assert_line_invariants, make_staff_key
from tests.test_concurrency import post, run_together
from tests.workflows.support import merge_world

pytestmark = pytest.mark.django_db(transaction=True)

_ids = itertools.count()


def _events(lines: list[Line], at: dt.datetime, per_line: int = 3) -> list[dict[str, str]]:
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
        for k in range(per_line)
    ]


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
        return post(c, staff, "/message-events", {"events": _events(lines, at)})

    results = run_together(len(requests) + 5, race)

    assert Counter(status for status, _ in results) == {200: len(results)}
    statuses = set(DeletionRequest.objects.values_list("status", flat=True))
    assert statuses == {"scheduled"}
    assert not SubAccount.objects.exclude(lock_reason="").exists()
    assert_line_invariants([world.partner.pk])
