"""Merge requests: preview, request, decisions, locks, processing in batches, resumption."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core import mail
from django.db import transaction
from django.tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from portal.audit.models import AuditEvent
from portal.audit.services import Change, audit_record_bulk, audit_record_many
from portal.core.context import request_context
from portal.core.errors import Conflict, Forbidden, Invalid, NotFound
from portal.core.principal import Principal
from portal.lines.models import AssignmentPeriod, Line
from portal.lines.services import line_disconnect, line_move, line_move_bulk
from portal.partners.models import Partner
from portal.workflows.models import MergeRequest, MergeStatus
from portal.workflows.services import deletions, merges
from tests.conftest import Api
from tests.factories import (
    SYSTEM,
    assert_line_invariants,
    db_snapshot,
    make_lines,
    make_sub_account,
    make_user,
)
from tests.workflows.support import (
    fill,
    merge_events_per_line,
    merge_periods,
    merge_world,
    refreshed,
)

pytestmark = pytest.mark.django_db

STAFF = Principal.system("staff-test")
RUNNER = Principal.system("task:merge")


def request_merge(world, role: str = "manager", principal: Principal | None = None) -> MergeRequest:
    return merges.merge_request_create(
        principal=principal or world.principal(role),
        source_ids=[s.pk for s in world.sources],
        target_id=world.target.pk,
        reason="One client",
    )


# --- preview and request -------------------------------------------------------------------


def test_preview_counts_lines_per_source_and_explains_billing():
    world = merge_world(counts=(3, 2))
    preview = merges.merge_request_preview(
        principal=world.principal("manager"),
        source_ids=[s.pk for s in world.sources],
        target_id=world.target.pk,
    )
    assert [(s.pk, s.line_count) for s in preview.sources] == [
        (world.sources[0].pk, 3),
        (world.sources[1].pk, 2),
    ]
    assert preview.lines_total == 5
    assert "No prorations" in preview.billing_effect
    assert "next cycle" in preview.billing_effect
    assert world.target.name in preview.analytics_effect


def test_request_locks_sources_and_target_and_records_one_event():
    world = merge_world()
    before = AuditEvent.objects.count()
    request = request_merge(world)

    assert request.status == MergeStatus.PENDING_APPROVAL
    assert request.lines_total == 5
    for sa in [*world.sources, world.target]:
        assert refreshed(sa).lock_reason == f"merge request #{request.pk} is open"
    assert refreshed(world.other).lock_reason == ""
    assert AuditEvent.objects.count() == before + 1
    assert AuditEvent.objects.latest("id").action == "merge_request.create"


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda w: ([], w.target.pk), Invalid),
        (lambda w: ([w.target.pk], w.target.pk), Invalid),
        (lambda w: ([w.sources[0].pk, w.sources[0].pk], w.target.pk), Invalid),
        (lambda w: ([w.sources[0].pk], 987654321), NotFound),
        (lambda w: ([987654321], w.target.pk), NotFound),
        (lambda w: ([w.pool.pk], w.target.pk), Conflict),
        (lambda w: ([w.sources[0].pk], w.pool.pk), Conflict),
    ],
    ids=["no source", "target is source", "repeated", "no target", "no source id", "pool", "pool"],
)
def test_bad_requests_change_nothing(build, error):
    world = merge_world()
    world.pool = world.partner.sub_accounts.get(kind="available")
    source_ids, target_id = build(world)
    before = db_snapshot()
    with pytest.raises(error):
        merges.merge_request_create(
            principal=world.principal(), source_ids=source_ids, target_id=target_id
        )
    assert db_snapshot() == before


def test_viewer_and_billing_may_not_request():
    world = merge_world()
    for role in ("viewer", "billing"):
        with pytest.raises(Forbidden):
            request_merge(world, role)


# --- locks -----------------------------------------------------------------------------


def test_lines_cannot_move_into_or_out_of_locked_sub_accounts():
    world = merge_world()
    free = make_lines(world.partner, 1)[0]
    request_merge(world)
    inside = Line.objects.filter(sub_account=world.sources[0]).first()

    with pytest.raises(Conflict, match="locked"):
        line_move(principal=SYSTEM, line_id=inside.pk, sub_account_id=world.other.pk)
    with pytest.raises(Conflict, match="locked"):
        line_move(principal=SYSTEM, line_id=free.pk, sub_account_id=world.target.pk)
    with pytest.raises(Conflict, match="locked"):
        line_move_bulk(principal=SYSTEM, line_ids=[free.pk], sub_account_id=world.sources[1].pk)
    with pytest.raises(Conflict, match="locked"):
        line_disconnect(principal=SYSTEM, line_id=inside.pk)


def test_locked_sub_accounts_are_refused_over_the_api():
    world = merge_world()
    request_merge(world)
    inside = Line.objects.filter(sub_account=world.sources[0]).first()
    api = Api(world.tenant.keys["manager"])

    response = api.post(f"/lines/{inside.pk}/move", {"sub_account_id": world.other.pk})

    assert response.status_code == 409
    assert "merge request" in response.json()["detail"]


def test_a_second_merge_or_a_deletion_of_a_locked_sub_account_is_refused():
    world = merge_world()
    request_merge(world)
    with pytest.raises(Conflict, match="locked"):
        merges.merge_request_create(
            principal=world.principal(), source_ids=[world.other.pk], target_id=world.target.pk
        )
    with pytest.raises(Conflict, match="locked"):
        deletions.deletion_request_create(
            principal=world.principal(),
            sub_account_id=world.sources[0].pk,
            line_disposition="disconnect",
        )


# --- decisions ---------------------------------------------------------------------------


def test_staff_approve_queues_one_task_and_emails_the_requester(
    django_capture_on_commit_callbacks,
):
    world = merge_world()
    user = make_user(world.partner, "mia@merging.example", "manager")
    request = merges.merge_request_create(
        principal=Principal.for_user(user),
        source_ids=[s.pk for s in world.sources],
        target_id=world.target.pk,
    )
    with django_capture_on_commit_callbacks(execute=True):
        approved = merges.merge_request_approve(principal=STAFF, request_id=request.pk)

    assert approved.status == MergeStatus.APPROVED
    tasks = DBTaskResult.objects.filter(task_path__endswith="process_merge_request")
    assert tasks.count() == 1
    assert tasks.get().args_kwargs["args"] == [request.pk]
    assert mail.outbox[-1].to == ["mia@merging.example"]
    assert "approved" in mail.outbox[-1].subject

    with pytest.raises(Conflict):
        merges.merge_request_approve(principal=STAFF, request_id=request.pk)
    assert tasks.count() == 1


def test_self_service_lets_another_admin_approve_but_not_the_requester():
    world = merge_world()
    request = request_merge(world, "admin")
    with pytest.raises(Forbidden, match="staff"):
        merges.merge_request_approve(principal=world.principal("admin"), request_id=request.pk)

    Partner.objects.filter(pk=world.partner.pk).update(self_service_requests=True)
    with pytest.raises(Forbidden, match="you made it"):
        merges.merge_request_approve(principal=world.principal("admin"), request_id=request.pk)
    with pytest.raises(Forbidden):
        merges.merge_request_approve(principal=world.principal("manager"), request_id=request.pk)
    second_admin = Principal.for_user(make_user(world.partner, "second@m.example", "admin"))
    approved = merges.merge_request_approve(principal=second_admin, request_id=request.pk)
    assert approved.status == MergeStatus.APPROVED


def test_reject_needs_a_reason_then_unlocks_and_emails(django_capture_on_commit_callbacks):
    world = merge_world()
    user = make_user(world.partner, "rita@merging.example", "manager")
    request = merges.merge_request_create(
        principal=Principal.for_user(user),
        source_ids=[world.sources[0].pk],
        target_id=world.target.pk,
    )
    before = db_snapshot()
    for reason in (None, "", "   "):
        with pytest.raises(Invalid, match="reason"):
            merges.merge_request_reject(principal=STAFF, request_id=request.pk, reason=reason)
    assert db_snapshot() == before

    with django_capture_on_commit_callbacks(execute=True):
        rejected = merges.merge_request_reject(
            principal=STAFF, request_id=request.pk, reason="Keep them apart"
        )
    assert rejected.status == MergeStatus.REJECTED
    assert rejected.decision_reason == "Keep them apart"
    assert refreshed(world.sources[0]).lock_reason == ""
    assert refreshed(world.target).lock_reason == ""
    assert "Keep them apart" in mail.outbox[-1].body
    with pytest.raises(Conflict):
        merges.merge_request_approve(principal=STAFF, request_id=request.pk)


@pytest.mark.parametrize("verb", ["reject", "cancel"])
def test_closing_a_pending_merge_records_it_at_its_decision(verb):
    world = merge_world()
    request = request_merge(world)
    close = getattr(merges, f"merge_request_{verb}")
    principal = STAFF if verb == "reject" else world.principal("manager")

    closed = close(principal=principal, request_id=request.pk, reason="Not now")

    assert closed.status == {"reject": "rejected", "cancel": "cancelled"}[verb]
    assert (closed.decided_by_label, closed.decision_reason) == (principal.label, "Not now")
    for sa in [*world.sources, world.target]:
        assert refreshed(sa).lock_reason == ""
    event = AuditEvent.objects.get(action=f"merge_request.{verb}")
    assert event.at == closed.decided_at == MergeRequest.objects.get(pk=request.pk).decided_at
    assert (event.object_type, event.object_id) == ("merge_request", str(request.pk))
    assert event.sub_account_id == world.target.pk
    assert event.data == {
        "before": {"status": "pending_approval"},
        "after": {"status": closed.status},
        "reason": "Not now",
    }


def test_a_cancelled_request_cannot_be_approved():
    world = merge_world()
    request = request_merge(world)
    merges.merge_request_cancel(principal=world.principal("manager"), request_id=request.pk)
    assert refreshed(world.target).lock_reason == ""
    before = db_snapshot()
    with pytest.raises(Conflict, match="cancelled"):
        merges.merge_request_approve(principal=STAFF, request_id=request.pk)
    with pytest.raises(Conflict):
        merges.merge_request_cancel(principal=STAFF, request_id=request.pk)
    assert db_snapshot() == before


def test_api_approve_twice_answers_409():
    world = merge_world()
    request = request_merge(world)
    from tests.factories import make_staff_key

    staff = Api(make_staff_key())
    first = staff.post(f"/merge-requests/{request.pk}/approve")
    second = staff.post(f"/merge-requests/{request.pk}/approve")
    assert first.status_code == 200, first.content
    assert first.json()["status"] == "approved"
    assert second.status_code == 409
    reject = staff.post(f"/merge-requests/{request.pk}/reject", {"reason": "late"})
    assert reject.status_code == 409


def test_api_reject_without_reason_is_422():
    world = merge_world()
    request = request_merge(world)
    Partner.objects.filter(pk=world.partner.pk).update(self_service_requests=True)
    api = Api(world.tenant.keys["admin"])
    response = api.post(f"/merge-requests/{request.pk}/reject", {})
    assert response.status_code == 422
    assert "reason" in str(response.json()["detail"]).lower()


# --- processing ----------------------------------------------------------------------------


def approved_merge(world, principal: Principal | None = None) -> MergeRequest:
    request = request_merge(world, principal=principal)
    return merges.merge_request_approve(principal=STAFF, request_id=request.pk)


def test_processing_moves_every_line_once_with_merge_periods(django_capture_on_commit_callbacks):
    world = merge_world(counts=(7, 4), target_lines=2)
    moving = list(Line.objects.filter(sub_account__in=world.sources).values_list("pk", flat=True))
    user = make_user(world.partner, "max@merging.example", "manager")
    request = approved_merge(world, Principal.for_user(user))

    with django_capture_on_commit_callbacks(execute=True):
        done = merges.merge_request_run(principal=RUNNER, request_id=request.pk, batch_size=3)

    assert done.status == MergeStatus.COMPLETED
    assert (done.lines_moved, done.lines_total) == (11, 11)
    assert set(Line.objects.filter(pk__in=moving).values_list("sub_account_id", flat=True)) == {
        world.target.pk
    }
    assert merge_events_per_line(request.pk) == dict.fromkeys(moving, 1)
    assert merge_periods(moving) == 11
    target = refreshed(world.target)
    assert (target.line_count, target.lock_reason) == (13, "")
    for source in world.sources:
        source = refreshed(source)
        assert source.status == "merged"
        assert source.merged_into_id == world.target.pk
        assert (source.line_count, source.lock_reason) == (0, "")
    assert_line_invariants([world.partner.pk])
    actions = list(
        AuditEvent.objects.filter(object_type="merge_request", object_id=str(request.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == [
        "merge_request.create",
        "merge_request.approve",
        "merge_request.start",
        "merge_request.complete",
    ]
    assert mail.outbox[-1].to == ["max@merging.example"]
    assert "completed" in mail.outbox[-1].subject


def test_each_merged_line_has_one_event_shaped_as_the_audit_service_writes_it():
    world = merge_world(counts=(3, 2))
    moving = dict(
        Line.objects.filter(sub_account__in=world.sources).values_list("pk", "sub_account_id")
    )
    numbers = dict(Line.objects.filter(pk__in=moving).values_list("pk", "number"))
    request = approved_merge(world)

    with request_context(request_id="req-merge-1", ip="192.0.2.7"):
        merges.merge_request_run(principal=RUNNER, request_id=request.pk, batch_size=2)

    opened = dict(
        AssignmentPeriod.objects.filter(line_id__in=moving, via_merge=True).values_list(
            "line_id", "start"
        )
    )
    closed = dict(
        AssignmentPeriod.objects.filter(line_id__in=moving, via_merge=False).values_list(
            "line_id", "end"
        )
    )
    events = list(AuditEvent.objects.filter(action="line.merge").order_by("line_id"))
    assert [e.line_id for e in events] == sorted(moving)
    for e in events:
        source = moving[e.line_id]
        assert (
            e.partner_id,
            e.actor_type,
            e.actor_id,
            e.actor_label,
            e.object_type,
            e.object_id,
            e.sub_account_id,
            e.other_sub_account_id,
            e.request_id,
            e.ip,
        ) == (
            world.partner.pk,
            RUNNER.kind,
            RUNNER.id,
            RUNNER.label,
            "line",
            str(e.line_id),
            source,
            world.target.pk,
            "req-merge-1",
            "192.0.2.7",
        )
        assert e.data == {
            "number": numbers[e.line_id],
            "before": {"sub_account_id": source},
            "after": {"sub_account_id": world.target.pk},
            "merge_request_id": request.pk,
        }
        # The event's instant is the move's: the old period ends and the new begins then.
        assert e.at == opened[e.line_id] == closed[e.line_id]


def test_bulk_audit_rows_equal_those_of_audit_record_many():
    world = merge_world(counts=(1,))
    at = dt.datetime(2026, 6, 3, 12, 30, 15, 250000, tzinfo=dt.UTC)
    changes = [
        Change(
            "line",
            7,
            {"amount": Decimal("1.50"), "when": at, "names": ["a\tb", "é\n"], "none": None},
            sub_account_id=world.target.pk,
            other_sub_account_id=None,
            line_id=7,
        ),
        Change("invoice", "INV-1", {}),
    ]
    columns = [f.attname for f in AuditEvent._meta.concrete_fields if f.attname != "id"]
    rows = {}
    for action, write in (("x.many", audit_record_many), ("x.bulk", audit_record_bulk)):
        with transaction.atomic(), request_context(request_id="r-1", ip="2001:db8::1"):
            count = write(
                principal=RUNNER, partner_id=world.partner.pk, action=action, changes=changes, at=at
            )
        assert count == 2
        rows[action] = [
            {**row, "action": None}
            for row in AuditEvent.objects.filter(action=action).order_by("id").values(*columns)
        ]
    assert rows["x.bulk"] == rows["x.many"]
    assert rows["x.bulk"][0]["data"]["amount"] == "1.50"


def test_merged_sources_are_read_only():
    world = merge_world(counts=(1,))
    request = approved_merge(world)
    merges.merge_request_run(principal=RUNNER, request_id=request.pk)
    free = make_lines(world.partner, 1)[0]
    with pytest.raises(Conflict, match="merged"):
        line_move(principal=SYSTEM, line_id=free.pk, sub_account_id=world.sources[0].pk)
    with pytest.raises(Conflict, match="merged"):
        deletions.deletion_request_create(
            principal=world.principal(), sub_account_id=world.sources[0].pk
        )
    # The target is free again.
    line_move(principal=SYSTEM, line_id=free.pk, sub_account_id=world.target.pk)


def test_a_run_interrupted_between_batches_resumes_without_doubles():
    """What a killed worker leaves: some batches committed, the request processing."""
    world = merge_world(counts=(6, 5))
    moving = list(Line.objects.filter(sub_account__in=world.sources).values_list("pk", flat=True))
    request = approved_merge(world)
    merges.merge_request_start(principal=RUNNER, request_id=request.pk)
    assert merges.merge_request_move_batch(principal=RUNNER, request_id=request.pk, batch_size=4)
    assert merges.merge_request_move_batch(principal=RUNNER, request_id=request.pk, batch_size=4)
    assert MergeRequest.objects.get(pk=request.pk).lines_moved == 8

    done = merges.merge_request_run(principal=RUNNER, request_id=request.pk, batch_size=4)
    again = merges.merge_request_run(principal=RUNNER, request_id=request.pk, batch_size=4)

    assert done.status == again.status == MergeStatus.COMPLETED
    assert (done.lines_moved, done.lines_total) == (11, 11)
    assert merge_events_per_line(request.pk) == dict.fromkeys(moving, 1)
    assert merge_periods(moving) == 11
    assert_line_invariants([world.partner.pk])


def test_a_failed_merge_keeps_its_locks_and_resumes(monkeypatch):
    world = merge_world(counts=(5,))
    request = approved_merge(world)
    calls = {"n": 0}
    real = merges._merge_lines

    def flaky(**kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real(**kwargs)

    monkeypatch.setattr(merges, "_merge_lines", flaky)
    with pytest.raises(RuntimeError):
        merges.merge_request_run(principal=RUNNER, request_id=request.pk, batch_size=2)
    failed = MergeRequest.objects.get(pk=request.pk)
    assert failed.status == MergeStatus.FAILED
    assert failed.lines_moved == 2
    assert "disk full" in failed.failure
    assert refreshed(world.sources[0]).lock_reason
    assert refreshed(world.target).lock_reason

    monkeypatch.setattr(merges, "_merge_lines", real)
    merges.merge_request_resume(principal=STAFF, request_id=request.pk)
    done = merges.merge_request_run(principal=RUNNER, request_id=request.pk, batch_size=2)
    assert done.status == MergeStatus.COMPLETED
    assert done.lines_moved == done.lines_total == 5
    assert_line_invariants([world.partner.pk])


@pytest.mark.django_db(transaction=True)
def test_the_task_runs_through_the_worker(django_capture_on_commit_callbacks):
    from django.core.management import call_command

    world = merge_world(counts=(2, 2))
    request = request_merge(world)
    with django_capture_on_commit_callbacks(execute=True):
        merges.merge_request_approve(principal=STAFF, request_id=request.pk)
    call_command("worker", "--once", "--interval", "0")
    task = DBTaskResult.objects.get(task_path__endswith="process_merge_request")
    assert task.status == TaskResultStatus.SUCCESSFUL
    assert task.return_value["status"] == "completed"
    assert MergeRequest.objects.get(pk=request.pk).status == MergeStatus.COMPLETED


def test_api_reports_progress():
    world = merge_world(counts=(3,))
    api = Api(world.tenant.keys["manager"])
    body = {"source_ids": [world.sources[0].pk], "target_id": world.target.pk}
    preview = api.post("/merge-requests/preview", body)
    assert preview.status_code == 200
    assert preview.json()["sources"] == [
        {"sub_account_id": world.sources[0].pk, "name": world.sources[0].name, "lines": 3}
    ]
    created = api.post("/merge-requests", body)
    assert created.status_code == 201, created.content
    data = created.json()
    assert (data["status"], data["lines_total"], data["lines_moved"]) == ("pending_approval", 3, 0)
    merges.merge_request_approve(principal=STAFF, request_id=data["id"])
    merges.merge_request_run(principal=RUNNER, request_id=data["id"])
    done = api.get(f"/merge-requests/{data['id']}").json()
    assert (done["status"], done["lines_moved"], done["lines_total"]) == ("completed", 3, 3)
    listed = api.get("/merge-requests", status="completed").json()
    assert [item["id"] for item in listed["items"]] == [data["id"]]
    assert api.get("/merge-requests", status="nonsense").status_code == 400


def test_new_lines_cannot_join_a_source_during_processing():
    world = merge_world(counts=(2,))
    request = approved_merge(world)
    merges.merge_request_start(principal=RUNNER, request_id=request.pk)
    extra = make_sub_account(world.partner, "Extra – Ops")
    fill(extra, 1)
    line = Line.objects.get(sub_account=extra)
    with pytest.raises(Conflict):
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=world.sources[0].pk)
