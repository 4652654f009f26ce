"""Notifications are written by the audit log's subscriber in the change's transaction
(domain §8.4): each kind made by its real service, to exactly the right people, never to
another partner's, a client or staff; a rolled-back change notifies nobody; alerts are
emailed after the commit by a task queued with them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.db import transaction
from django_tasks_db.models import DBTaskResult

from portal.core import clock
from portal.core.principal import Principal
from portal.lines.services import line_order_create
from portal.notifications.models import Kind, Notification
from portal.partners.models import Partner
from portal.workflows.services import deletions, merges
from tests.alerts.test_evaluation import busy  # noqa: F401  (fixture)
from tests.factories import SYSTEM, import_numbers, issue_invoice, make_sub_account
from tests.notifications.support import (
    fire_available_alert,
    inboxes,
    issue_with_statement,
    make_people,
    run_alert_emails,
)
from tests.workflows.support import fill

pytestmark = pytest.mark.django_db

STAFF = Principal.system("staff-test")
RUNNER = Principal.system("task:merge")


@pytest.fixture
def people():
    return make_people()


def test_an_alert_goes_to_admins_managers_and_the_shared_inbox_and_is_emailed(people):
    fire_available_alert(people.partner)
    fire_available_alert(people.rival.partner)

    got = inboxes(Kind.ALERT_TRIGGERED)
    acme, rival = people.partner.slug, people.rival.partner.slug
    assert set(got) == {
        "ada@acme.example",
        "max@acme.example",
        f"shared:{acme}",
        "olga@rival.example",
        f"shared:{rival}",
    }
    (title,) = got["ada@acme.example"]
    assert title.startswith("Alert: Partner-wide: Lines in Available above 0")
    row = Notification.objects.filter(partner=people.partner).first()
    assert row.url == "/analytics/alerts/" and row.object_type == "alert"

    # The emails: one task per person, queued with the notifications; sent by the worker.
    assert mail.outbox == []
    assert run_alert_emails() == 3
    assert sorted(m.to[0] for m in mail.outbox) == [
        "ada@acme.example",
        "max@acme.example",
        "olga@rival.example",
    ]
    ada = next(m for m in mail.outbox if m.to == ["ada@acme.example"])
    assert ada.subject == title and "Acme Resellers" in ada.body and "Rival" not in ada.body
    assert "/analytics/alerts/" in ada.body
    # A second run (a retried task) sends nothing more.
    run_alert_emails()
    assert len(mail.outbox) == 3


def test_a_resolved_alert_notifies_the_same_people(people):
    from portal.alerts.evaluation import EVALUATOR, alerts_evaluate
    from portal.lines.models import Line
    from portal.lines.services import line_move

    fire_available_alert(people.partner)
    target = make_sub_account(people.partner, "Beta – Support")
    for line in Line.objects.filter(partner=people.partner):
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=target.pk)
    assert alerts_evaluate(principal=EVALUATOR.acting_for(people.partner.pk)).resolved == 1

    got = inboxes(Kind.ALERT_RESOLVED)
    assert set(got) == {"ada@acme.example", "max@acme.example", f"shared:{people.partner.slug}"}
    assert got["max@acme.example"][0].startswith("Alert resolved: Partner-wide:")
    assert "condition no longer holds" in got["max@acme.example"][0]
    # The condition's own resolution is emailed, like its firing.
    run_alert_emails()
    resolved = [m for m in mail.outbox if m.subject.startswith("Alert resolved")]
    assert sorted(m.to[0] for m in resolved) == ["ada@acme.example", "max@acme.example"]


def test_alerts_a_person_resolved_through_their_rule_are_in_the_inbox_but_not_emailed(people):
    from portal.alerts.models import AlertRule
    from portal.alerts.services import alert_rule_delete, alert_rule_update

    fire_available_alert(people.partner)
    run_alert_emails()
    assert len(mail.outbox) == 2  # the firing: the admin and the manager
    mail.outbox.clear()
    rule = AlertRule.objects.get(partner=people.partner)
    alert_rule_update(principal=people.me(people.manager), rule_id=rule.pk, enabled=False)

    got = inboxes(Kind.ALERT_RESOLVED)
    assert set(got) == {"ada@acme.example", "max@acme.example", f"shared:{people.partner.slug}"}
    assert got["ada@acme.example"] == [
        "Alert resolved: Partner-wide: Lines in Available above 0 (its rule was paused)"
    ]
    run_alert_emails()
    assert mail.outbox == []

    # Resumed, it fires again (emailed); deleted, its alert resolves (not emailed).
    alert_rule_update(principal=people.me(people.manager), rule_id=rule.pk, enabled=True)
    fire = alerts_evaluate_now(people.partner)
    assert fire == 1
    run_alert_emails()
    assert len(mail.outbox) == 2
    alert_rule_delete(principal=people.me(people.manager), rule_id=rule.pk)
    assert len(inboxes(Kind.ALERT_RESOLVED)["ada@acme.example"]) == 2
    run_alert_emails()
    assert len(mail.outbox) == 2


def alerts_evaluate_now(partner: Partner) -> int:
    from portal.alerts.evaluation import EVALUATOR, alerts_evaluate

    return alerts_evaluate(principal=EVALUATOR.acting_for(partner.pk)).fired


def test_merge_approved_and_completed_go_to_the_requester_only(people):
    partner = people.partner
    sources = [make_sub_account(partner, "Gamma – Old")]
    fill(sources[0], 2)
    target = make_sub_account(partner, "Delta – New")
    request = merges.merge_request_create(
        principal=people.me(people.manager),
        source_ids=[s.pk for s in sources],
        target_id=target.pk,
    )
    assert not Notification.objects.exists()  # a request made notifies nobody
    merges.merge_request_approve(principal=STAFF, request_id=request.pk)
    merges.merge_request_run(principal=RUNNER, request_id=request.pk)

    assert inboxes() == {
        "max@acme.example": [
            f"Your request #{request.pk} to merge into Delta – New was approved",
            f"Your request #{request.pk} to merge into Delta – New is complete",
        ]
    }
    kinds = list(Notification.objects.order_by("pk").values_list("kind", "url"))
    assert kinds == [
        (Kind.MERGE_APPROVED, f"/requests/merge/{request.pk}/"),
        (Kind.MERGE_COMPLETED, f"/requests/merge/{request.pk}/"),
    ]


def test_deletion_rejected_and_purged_go_to_the_requester(people):
    partner = people.partner
    Partner.objects.filter(pk=partner.pk).update(self_service_requests=True)
    gone, kept = make_sub_account(partner, "Old – Gone"), make_sub_account(partner, "Kept – A")
    refused = deletions.deletion_request_create(
        principal=people.me(people.admin), sub_account_id=kept.pk
    )
    deletions.deletion_request_reject(principal=STAFF, request_id=refused.pk, reason="No")
    request = deletions.deletion_request_create(
        principal=people.me(people.admin), sub_account_id=gone.pk
    )
    approved = deletions.deletion_request_approve(principal=STAFF, request_id=request.pk)
    with clock.frozen_at(approved.purge_after + dt.timedelta(minutes=1)):
        assert deletions.deletion_request_purge(principal=STAFF, request_id=request.pk)

    assert inboxes() == {
        "ada@acme.example": [
            f"Your request #{refused.pk} to delete Kept – A was rejected",
            f"Your request #{request.pk} to delete Old – Gone was approved",
            f"Your request #{request.pk} to delete Old – Gone is complete",
        ]
    }


def test_a_request_made_by_an_api_key_goes_to_the_shared_inbox(people):
    from tests.conftest import Api

    sa = make_sub_account(people.partner, "Keyed – Gone")
    api = Api(people.tenant.keys["admin"])
    made = api.ok_post("/deletion-requests", {"sub_account_id": sa.pk})
    deletions.deletion_request_approve(principal=STAFF, request_id=made["id"])
    assert inboxes() == {
        f"shared:{people.partner.slug}": [
            f"Your request #{made['id']} to delete Keyed – Gone was approved"
        ]
    }


def test_line_order_fulfilled_goes_to_who_ordered_it(people):
    order = line_order_create(principal=people.me(people.manager), quantity=3)
    assert not Notification.objects.exists()
    import_numbers("+14155550101", "+14155550102")
    import_numbers("+14155550103")
    assert inboxes(Kind.LINE_ORDER_FULFILLED) == {
        "max@acme.example": [
            f"Your line request #{order.pk}: 2 lines delivered to Available (2 of 3)",
            f"Your line request #{order.pk} is fulfilled: 1 line delivered to Available",
        ]
    }
    # Lines delivered to an order made by staff or the system tell nobody.
    line_order_create(principal=SYSTEM.acting_for(people.partner.pk), quantity=1)
    import_numbers("+14155550104")
    assert Notification.objects.count() == 2


def test_an_invoice_and_its_statements_go_to_admins_and_billing_never_a_client(people):
    invoice = issue_with_statement(people.partner)
    number = invoice.number
    period = f"{invoice.period_month:%B %Y}"
    expected = [
        f"Invoice {number} issued for {period}",
        f"1 client statement issued for {period}",
    ]
    assert inboxes() == {
        "ada@acme.example": expected,
        "bea@acme.example": expected,
        f"shared:{people.partner.slug}": expected,
    }
    urls = set(Notification.objects.values_list("kind", "url"))
    assert urls == {
        (Kind.INVOICE_ISSUED, f"/invoices/{invoice.pk}/"),
        (Kind.STATEMENT_ISSUED, f"/billing/statements/?period={invoice.period_month:%Y-%m}"),
    }


def test_inactive_people_get_nothing(people):
    people.billing.is_active = False
    people.billing.save(update_fields=["is_active"])
    issue_invoice(people.partner, 2026, 1)
    assert "bea@acme.example" not in inboxes()
    assert "ada@acme.example" in inboxes()


def test_a_rolled_back_change_notifies_and_emails_nobody(people):
    with pytest.raises(RuntimeError), transaction.atomic():
        fire_available_alert(people.partner)
        assert Notification.objects.count() == 3
        raise RuntimeError("the change fails after its audit events were written")
    assert not Notification.objects.exists()
    assert not DBTaskResult.objects.filter(task_path__endswith="email_alert_notifications")
    with pytest.raises(RuntimeError), transaction.atomic():
        issue_invoice(people.partner, 2026, 1)
        raise RuntimeError("billing failed")
    assert not Notification.objects.exists()


def test_a_rule_firing_on_many_sub_accounts_is_one_notification_naming_the_first(busy):  # noqa: F811
    """One rule firing on two sub-accounts at once is one item per person, "on 2
    sub-accounts (Alpha, Beta)", not one per sub-account; resolving them likewise."""
    from portal.alerts.models import Alert
    from tests.alerts.test_evaluation import DAY, evaluate, rule

    partner = busy["partner"]
    usage = rule(
        partner, metric="volume_limit_usage", comparator="above", threshold="0.05", window_days=1
    )
    evaluate(partner, f"{DAY} 15:00")
    assert Alert.objects.filter(rule=usage, status="firing").count() == 2
    shared = Notification.objects.filter(partner=partner, recipient=None, kind=Kind.ALERT_TRIGGERED)
    assert [(n.title, n.object_type, n.object_id) for n in shared] == [
        (
            "Alert: Volume limit usage above 5\u00a0% today on 2 sub-accounts (Alpha, Beta)",
            "alert_rule",
            str(usage.pk),
        )
    ]
    evaluate(partner, "2025-03-06 15:00")  # a new day without traffic: both resolve
    resolved = Notification.objects.filter(
        partner=partner, recipient=None, kind=Kind.ALERT_RESOLVED
    )
    assert [n.title for n in resolved] == [
        "Alert resolved: Volume limit usage above 5\u00a0% today on 2 sub-accounts (Alpha, Beta)"
    ]
