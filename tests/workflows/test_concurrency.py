"""Concurrent decisions and requests (domain §5, §7): exactly one wins, the rest get 409.

Real commits and one database connection per thread, on SQLite (IMMEDIATE
transactions queue writers) and PostgreSQL (row locks).
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from django.test import Client
from django_tasks_db.models import DBTaskResult

from portal.audit.models import AuditEvent
from portal.billing.drafting import credit_balances
from portal.partners.models import SubAccount
from portal.workflows.models import DeletionRequest, MergeRequest
from portal.workflows.services.deletions import deletion_request_create
from portal.workflows.services.merges import merge_request_create
from tests.factories import make_staff_key
from tests.test_concurrency import post, run_together
from tests.workflows.support import merge_world

pytestmark = pytest.mark.django_db(transaction=True)


def test_ten_concurrent_approvals_make_one_transition_and_one_task():
    world = merge_world("Approving Partner", counts=(2,))
    request = merge_request_create(
        principal=world.principal("manager"),
        source_ids=[world.sources[0].pk],
        target_id=world.target.pk,
    )
    key = make_staff_key()

    results = run_together(
        10, lambda i, c: post(c, key, f"/merge-requests/{request.pk}/approve", {})
    )

    assert Counter(status for status, _ in results) == {200: 1, 409: 9}
    assert MergeRequest.objects.get(pk=request.pk).status == "approved"
    assert AuditEvent.objects.filter(action="merge_request.approve").count() == 1
    tasks = DBTaskResult.objects.filter(task_path__endswith="process_merge_request")
    assert tasks.count() == 1


def test_a_deletion_and_a_merge_of_one_sub_account_one_wins():
    world = merge_world("Racing Requests", counts=(1,))
    source = world.sources[0]
    key = world.tenant.keys["manager"]

    def request(i: int, c: Client):
        if i % 2:
            return post(
                c,
                key,
                "/deletion-requests",
                {"sub_account_id": source.pk, "line_disposition": "disconnect"},
            )
        return post(
            c, key, "/merge-requests", {"source_ids": [source.pk], "target_id": world.target.pk}
        )

    results = run_together(8, request)

    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 1, 409: 7}
    open_requests = MergeRequest.objects.count() + DeletionRequest.objects.count()
    assert open_requests == 1
    lock = SubAccount.objects.get(pk=source.pk).lock_reason
    assert lock.endswith("is open")


def test_credit_granted_while_a_deletion_is_approved_is_never_stranded():
    """Grants to a sub-account racing its deletion's approval: each grant either lands
    before the balance moves (and moves with it) or is refused (409) once the
    sub-account is pending deletion; the deleted sub-account keeps nothing."""
    world = merge_world("Racing Credit", counts=(1,))
    source = world.sources[0]
    slug = world.partner.slug
    request = deletion_request_create(
        principal=world.principal("manager"),
        sub_account_id=source.pk,
        line_disposition="move",
        move_to_id=world.target.pk,
    )
    key = make_staff_key()

    def race(i: int, c: Client):
        if i == 0:
            return post(c, key, f"/deletion-requests/{request.pk}/approve?partner={slug}", {})
        body = {"amount": "1.00", "reason": "Race", "sub_account_id": source.pk}
        return post(c, key, f"/credits?partner={slug}", body)

    results = run_together(6, race)

    assert results[0][0] == 200
    granted = sum(1 for status, _ in results[1:] if status == 201)
    balances = credit_balances(partner_id=world.partner.pk, keep_zero=True)
    assert balances.get(source.pk, Decimal(0)) == 0
    assert balances.get(None, Decimal(0)) == granted * Decimal("1.00")
