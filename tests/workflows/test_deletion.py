"""Deletion requests: disposition, approval, scheduling, restore, the retention purge."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail

from portal.audit.models import AuditEvent
from portal.core import clock
from portal.core.errors import Conflict, Forbidden, Invalid, NotFound
from portal.core.principal import Principal
from portal.jobs import periodic
from portal.lines.models import Line
from portal.lines.services import line_move
from portal.partners.models import Partner, SubAccount
from portal.partners.selectors import available_pool
from portal.workflows.models import DeletionRequest, DeletionStatus
from portal.workflows.services import deletions, merges
from tests.conftest import Api
from tests.factories import (
    SYSTEM,
    assert_line_invariants,
    db_snapshot,
    make_lines,
    make_sub_account,
    make_tenant,
    make_user,
)
from tests.workflows.support import fill, refreshed

pytestmark = pytest.mark.django_db

STAFF = Principal.system("staff-test")


@pytest.fixture
def world():
    tenant = make_tenant("Deleting Partner", deletion_retention_days=30)
    doomed = make_sub_account(
        tenant.partner,
        "Client Gone – Sales",
        contact_name="Ann Client",
        contact_email="ann@client.example",
        contact_phone="+14155550100",
        internal_reference="CRM-7",
    )
    keeper = make_sub_account(tenant.partner, "Client Kept – Sales")
    lines = fill(doomed, 3)
    manager = make_user(tenant.partner, "dora@deleting.example", "manager")
    return {
        "tenant": tenant,
        "doomed": refreshed(doomed),
        "keeper": keeper,
        "lines": lines,
        "requester": Principal.for_user(manager),
    }


def request_deletion(world, **kwargs) -> DeletionRequest:
    return deletions.deletion_request_create(
        principal=world["requester"], sub_account_id=world["doomed"].pk, **kwargs
    )


def test_a_sub_account_with_lines_needs_a_disposition(world):
    before = db_snapshot()
    with pytest.raises(Invalid, match="3 lines"):
        request_deletion(world)
    with pytest.raises(Invalid, match="move to"):
        request_deletion(world, line_disposition="move")
    with pytest.raises(Invalid):
        request_deletion(world, line_disposition="shred")
    with pytest.raises(Invalid):
        request_deletion(world, line_disposition="move", move_to_id=world["doomed"].pk)
    with pytest.raises(NotFound):
        request_deletion(world, line_disposition="move", move_to_id=987654321)
    assert db_snapshot() == before


def test_request_locks_the_sub_account_and_one_open_request_at_a_time(world):
    request = request_deletion(world, line_disposition="disconnect")
    assert refreshed(world["doomed"]).lock_reason == f"deletion request #{request.pk} is open"
    with pytest.raises(Conflict, match="locked"):
        line_move(principal=SYSTEM, line_id=world["lines"][0].pk, sub_account_id=world["keeper"].pk)
    with pytest.raises(Conflict):
        request_deletion(world, line_disposition="disconnect")
    with pytest.raises(Conflict, match="locked"):
        merges.merge_request_create(
            principal=world["requester"],
            source_ids=[world["doomed"].pk],
            target_id=world["keeper"].pk,
        )


def test_approve_moves_the_lines_and_schedules_the_purge(world, django_capture_on_commit_callbacks):
    request = request_deletion(world, line_disposition="move", move_to_id=world["keeper"].pk)
    with django_capture_on_commit_callbacks(execute=True):
        scheduled = deletions.deletion_request_approve(principal=STAFF, request_id=request.pk)

    assert scheduled.status == DeletionStatus.SCHEDULED
    assert scheduled.lines_disposed == 3
    doomed = refreshed(world["doomed"])
    assert doomed.status == "pending_deletion"
    assert doomed.line_count == 0
    assert doomed.purge_after == scheduled.purge_after
    assert scheduled.purge_after - scheduled.decided_at == dt.timedelta(days=30)
    assert refreshed(world["keeper"]).line_count == 3
    moves = AuditEvent.objects.filter(action="line.move", data__deletion_request_id=request.pk)
    assert moves.count() == 3
    assert mail.outbox[-1].to == ["dora@deleting.example"]
    assert "approved" in mail.outbox[-1].subject
    assert_line_invariants([world["tenant"].partner.pk])
    # Hidden from the default list, still listed with its status.
    api = Api(world["tenant"].keys["admin"])
    names = [i["name"] for i in api.get("/sub-accounts").json()["items"]]
    assert doomed.name not in names


def test_approve_disconnects_when_asked(world):
    request = request_deletion(world, line_disposition="disconnect")
    deletions.deletion_request_approve(principal=STAFF, request_id=request.pk)
    statuses = set(
        Line.objects.filter(pk__in=[x.pk for x in world["lines"]]).values_list("status", flat=True)
    )
    assert statuses == {"disconnected"}
    assert_line_invariants([world["tenant"].partner.pk])


def test_approval_refused_when_the_move_target_got_locked_changes_nothing(world):
    request = request_deletion(world, line_disposition="move", move_to_id=world["keeper"].pk)
    other = make_sub_account(world["tenant"].partner, "Merge Target – Sales")
    merges.merge_request_create(
        principal=world["requester"], source_ids=[world["keeper"].pk], target_id=other.pk
    )
    before = db_snapshot()
    with pytest.raises(Conflict, match="locked"):
        deletions.deletion_request_approve(principal=STAFF, request_id=request.pk)
    assert db_snapshot() == before


def test_restore_before_the_purge_date_makes_it_active_and_empty(world):
    request = request_deletion(world, line_disposition="move", move_to_id=world["keeper"].pk)
    deletions.deletion_request_approve(principal=STAFF, request_id=request.pk)
    with pytest.raises(Forbidden):
        deletions.deletion_request_restore(
            principal=world["tenant"].principal("manager"), request_id=request.pk
        )
    restored = deletions.deletion_request_restore(
        principal=world["tenant"].principal("admin"), request_id=request.pk
    )
    assert restored.status == DeletionStatus.RESTORED
    doomed = refreshed(world["doomed"])
    assert (doomed.status, doomed.line_count, doomed.lock_reason) == ("active", 0, "")
    assert doomed.purge_after is None
    assert doomed.contact_email == "ann@client.example"
    with pytest.raises(Conflict):
        deletions.deletion_request_restore(principal=STAFF, request_id=request.pk)
    # A new line can go in again.
    line = make_lines(world["tenant"].partner, 1)[0]
    line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=doomed.pk)


def test_the_purge_job_erases_contact_details_after_the_date(
    world, django_capture_on_commit_callbacks
):
    request = request_deletion(world, line_disposition="disconnect")
    deletions.deletion_request_approve(principal=STAFF, request_id=request.pk)
    assert deletions.deletion_requests_purge_due(principal=STAFF) == 0

    later = clock.now() + dt.timedelta(days=30, seconds=1)
    with clock.frozen_at(later):
        with pytest.raises(Conflict, match="purge date"):
            deletions.deletion_request_restore(principal=STAFF, request_id=request.pk)
        job = next(j for j in periodic.registered_jobs() if j.name == "purge_deleted_sub_accounts")
        with django_capture_on_commit_callbacks(execute=True):
            job.func()

    purged = DeletionRequest.objects.get(pk=request.pk)
    assert purged.status == DeletionStatus.PURGED
    doomed = refreshed(world["doomed"])
    assert doomed.status == "deleted"
    assert doomed.name == "Client Gone – Sales"
    assert (doomed.contact_name, doomed.contact_email, doomed.contact_phone) == ("", "", "")
    assert doomed.internal_reference == ""
    event = AuditEvent.objects.get(action="deletion_request.purge")
    assert event.data["sub_account_name"] == "Client Gone – Sales"
    assert "contact_email" in event.data["erased_fields"]
    assert "purged" in mail.outbox[-1].subject
    # The name is free again.
    make_sub_account(world["tenant"].partner, "Client Gone – Sales")


def test_reject_and_cancel(world, django_capture_on_commit_callbacks):
    request = request_deletion(world, line_disposition="disconnect")
    with pytest.raises(Invalid):
        deletions.deletion_request_reject(principal=STAFF, request_id=request.pk, reason=" ")
    with django_capture_on_commit_callbacks(execute=True):
        deletions.deletion_request_reject(principal=STAFF, request_id=request.pk, reason="Active")
    assert refreshed(world["doomed"]).lock_reason == ""
    assert "Active" in mail.outbox[-1].body
    second = request_deletion(world, line_disposition="disconnect")
    deletions.deletion_request_cancel(principal=world["requester"], request_id=second.pk)
    with pytest.raises(Conflict):
        deletions.deletion_request_approve(principal=STAFF, request_id=second.pk)
    assert refreshed(world["doomed"]).status == "active"


@pytest.mark.parametrize("verb", ["reject", "cancel"])
def test_closing_a_pending_request_records_it_at_its_decision(world, verb):
    request = request_deletion(world, line_disposition="disconnect")
    close = getattr(deletions, f"deletion_request_{verb}")
    principal = STAFF if verb == "reject" else world["requester"]
    mail.outbox.clear()

    closed = close(principal=principal, request_id=request.pk, reason="Not now")

    assert closed.status == {"reject": "rejected", "cancel": "cancelled"}[verb]
    assert (closed.decided_by_label, closed.decision_reason) == (principal.label, "Not now")
    assert refreshed(world["doomed"]).lock_reason == ""
    event = AuditEvent.objects.get(action=f"deletion_request.{verb}")
    assert event.at == closed.decided_at == DeletionRequest.objects.get(pk=request.pk).decided_at
    assert (event.object_type, event.object_id) == ("deletion_request", str(request.pk))
    assert event.sub_account_id == world["doomed"].pk
    assert event.data == {
        "before": {"status": "pending_approval"},
        "after": {"status": closed.status},
        "reason": "Not now",
    }


def test_empty_sub_account_and_available_pool(world):
    partner = world["tenant"].partner
    empty = make_sub_account(partner, "Empty – Ops")
    request = deletions.deletion_request_create(
        principal=world["requester"], sub_account_id=empty.pk
    )
    deletions.deletion_request_approve(principal=STAFF, request_id=request.pk)
    assert SubAccount.objects.get(pk=empty.pk).status == "pending_deletion"
    with pytest.raises(Conflict, match="Available"):
        deletions.deletion_request_create(
            principal=world["requester"], sub_account_id=available_pool(partner.pk).pk
        )


def test_self_service_admin_approves_over_the_api(world):
    Partner.objects.filter(pk=world["tenant"].partner.pk).update(self_service_requests=True)
    request = request_deletion(world, line_disposition="move", move_to_id=world["keeper"].pk)
    api = Api(world["tenant"].keys["admin"])
    response = api.post(f"/deletion-requests/{request.pk}/approve")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "scheduled"
    assert body["purge_after"]
    assert api.post(f"/deletion-requests/{request.pk}/approve").status_code == 409
    restored = api.post(f"/deletion-requests/{request.pk}/restore")
    assert restored.json()["status"] == "restored"
