"""The outbox (domain §8.3): every event type, written in the change's transaction, one
event per operation for lines (ids chunked by 1,000), only for subscribed endpoints."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from portal.billing.invoicing import invoice_finalize
from portal.billing.models import Invoice, Statement
from portal.billing.resale import resale_default_set
from portal.core.clock import frozen_at
from portal.core.principal import Principal
from portal.lines.services import line_assign, line_disconnect, line_move, line_move_bulk
from portal.partners.services import sub_account_update
from portal.webhooks.catalogue import CHUNK, EVENT_TYPES
from portal.webhooks.models import WebhookDelivery, WebhookEvent
from portal.webhooks.services import webhook_endpoint_update
from portal.workflows.services import deletions, merges
from portal.workflows.tasks import process_merge_request
from tests.alerts.test_evaluation import busy  # noqa: F401  (fixture)
from tests.billing.test_invoices import lines_at, move
from tests.factories import (
    SYSTEM,
    make_lines,
    make_partner,
    make_sub_account,
    make_tenant,
    make_webhook_endpoint,
)
from tests.factories import issue_invoice as issue
from tests.webhooks.support import payloads


def types(partner_id: int) -> list[str]:
    return list(
        WebhookEvent.objects.filter(partner_id=partner_id)
        .order_by("pk")
        .values_list("type", flat=True)
    )


def staff(partner) -> Principal:
    return SYSTEM.acting_for(partner.pk)


def test_sub_account_created_and_updated_carry_the_audit_data(tenant):
    make_webhook_endpoint(tenant.partner)
    sa = make_sub_account(tenant.partner, "Acme – Sales", contact_name="Ann")
    sub_account_update(principal=staff(tenant.partner), sub_account=sa, contact_name="Bob")

    created, updated = payloads(tenant.partner.pk)
    assert created["type"] == "sub_account.created"
    assert created["data"]["sub_account_id"] == sa.pk
    assert created["data"]["after"]["name"] == "Acme – Sales"
    assert updated["type"] == "sub_account.updated"
    assert updated["data"] == {
        "sub_account_id": sa.pk,
        "before": {"contact_name": "Ann"},
        "after": {"contact_name": "Bob"},
    }
    assert created["timestamp"].endswith("Z")


def test_line_events_assign_move_disconnect(tenant):
    lines = make_lines(tenant.partner, 2)
    a = make_sub_account(tenant.partner, "A – Sales")
    b = make_sub_account(tenant.partner, "B – Sales")
    make_webhook_endpoint(tenant.partner)
    line_assign(
        principal=staff(tenant.partner), line_id=lines[0].pk, sub_account_id=a.pk, label="Desk"
    )
    line_move(principal=staff(tenant.partner), line_id=lines[0].pk, sub_account_id=b.pk)
    line_disconnect(principal=staff(tenant.partner), line_id=lines[0].pk)

    assigned, moved, disconnected = payloads(tenant.partner.pk)
    assert assigned["type"] == "line.assigned"
    assert assigned["data"]["line_id"] == lines[0].pk
    assert assigned["data"]["after"]["sub_account_id"] == a.pk
    assert assigned["data"]["after"]["label"] == "Desk"
    assert moved["type"] == "line.moved"
    assert moved["data"] | {"operation_id": "x"} == {
        "operation_id": "x",
        "part": 1,
        "parts": 1,
        "line_count": 1,
        "line_ids": [lines[0].pk],
        "sub_account_id": b.pk,
        "from_sub_account_ids": [a.pk],
    }
    assert disconnected["type"] == "line.disconnected"
    assert disconnected["data"]["line_ids"] == [lines[0].pk]
    assert disconnected["data"]["sub_account_id"] is None
    assert disconnected["data"]["from_sub_account_ids"] == [b.pk]


def test_a_bulk_move_is_one_operation_with_line_ids_in_chunks_of_1000(tenant):
    count = 2 * CHUNK + 7
    lines = [
        *make_lines(tenant.partner, CHUNK),
        *make_lines(tenant.partner, CHUNK),
        *make_lines(tenant.partner, 7),
    ]
    target = make_sub_account(tenant.partner, "Target – Sales")
    make_webhook_endpoint(tenant.partner)

    line_move_bulk(
        principal=staff(tenant.partner), line_ids=[x.pk for x in lines], sub_account_id=target.pk
    )

    events = payloads(tenant.partner.pk, "line.moved")
    assert len(events) == 3
    data = [e["data"] for e in events]
    assert [d["part"] for d in data] == [1, 2, 3]
    assert {d["parts"] for d in data} == {3}
    assert len({d["operation_id"] for d in data}) == 1
    assert [len(d["line_ids"]) for d in data] == [CHUNK, CHUNK, 7]
    assert [i for d in data for i in d["line_ids"]] == sorted(x.pk for x in lines)
    assert {d["line_count"] for d in data} == {count}
    assert {d["sub_account_id"] for d in data} == {target.pk}
    assert WebhookEvent.objects.filter(partner_id=tenant.partner.pk).count() == 3


def test_line_order_fulfilled_lists_the_delivered_lines(tenant):
    make_webhook_endpoint(tenant.partner)
    lines = make_lines(tenant.partner, 3)
    (fulfilled,) = payloads(tenant.partner.pk, "line_order.fulfilled")
    assert fulfilled["data"]["line_order_id"] == lines[0].order_id
    assert fulfilled["data"]["line_ids"] == [x.pk for x in lines]
    assert fulfilled["data"]["after"]["status"] == "fulfilled"


def test_a_merge_sends_its_lines_per_batch_not_per_line(tenant, settings):
    settings.MERGE_BATCH_SIZE = 4
    source = make_sub_account(tenant.partner, "Source – Sales")
    target = make_sub_account(tenant.partner, "Target – Sales")
    lines = make_lines(tenant.partner, 10)
    line_move_bulk(
        principal=staff(tenant.partner), line_ids=[x.pk for x in lines], sub_account_id=source.pk
    )
    make_webhook_endpoint(tenant.partner)
    request = merges.merge_request_create(
        principal=staff(tenant.partner), source_ids=[source.pk], target_id=target.pk
    )
    merges.merge_request_approve(principal=staff(tenant.partner), request_id=request.pk)
    process_merge_request.call(request.pk)

    assert types(tenant.partner.pk) == [
        "merge_request.created",
        "merge_request.approved",
        "line.moved",
        "line.moved",
        "line.moved",
        "merge_request.completed",
    ]
    moved = [e["data"] for e in payloads(tenant.partner.pk, "line.moved")]
    assert [len(d["line_ids"]) for d in moved] == [4, 4, 2]
    assert sorted(i for d in moved for i in d["line_ids"]) == sorted(x.pk for x in lines)
    assert {d["merge_request_id"] for d in moved} == {request.pk}
    assert {d["sub_account_id"] for d in moved} == {target.pk}
    (completed,) = payloads(tenant.partner.pk, "merge_request.completed")
    assert completed["data"]["merge_request_id"] == request.pk
    assert completed["data"]["lines_moved"] == 10


def test_merge_rejected(tenant):
    a, b = make_sub_account(tenant.partner, "A"), make_sub_account(tenant.partner, "B")
    make_webhook_endpoint(tenant.partner)
    request = merges.merge_request_create(
        principal=staff(tenant.partner), source_ids=[a.pk], target_id=b.pk
    )
    merges.merge_request_reject(principal=staff(tenant.partner), request_id=request.pk, reason="No")
    assert types(tenant.partner.pk) == ["merge_request.created", "merge_request.rejected"]
    rejected = payloads(tenant.partner.pk, "merge_request.rejected")[0]["data"]
    assert rejected["merge_request_id"] == request.pk
    assert rejected["reason"] == "No"


def test_deletion_events_and_the_disposal_of_its_lines(tenant):
    doomed = make_sub_account(tenant.partner, "Doomed – Sales")
    keeper = make_sub_account(tenant.partner, "Keeper – Sales")
    lines = make_lines(tenant.partner, 3)
    line_move_bulk(
        principal=staff(tenant.partner), line_ids=[x.pk for x in lines], sub_account_id=doomed.pk
    )
    refused = make_sub_account(tenant.partner, "Refused – Sales")
    make_webhook_endpoint(tenant.partner)
    who = staff(tenant.partner)
    request = deletions.deletion_request_create(
        principal=who, sub_account_id=doomed.pk, line_disposition="move", move_to_id=keeper.pk
    )
    deletions.deletion_request_approve(principal=who, request_id=request.pk)
    deletions.deletion_request_restore(principal=who, request_id=request.pk)
    other = deletions.deletion_request_create(principal=who, sub_account_id=refused.pk)
    deletions.deletion_request_reject(principal=who, request_id=other.pk, reason="Still used")
    purged = deletions.deletion_request_create(principal=who, sub_account_id=refused.pk)
    deletions.deletion_request_approve(principal=who, request_id=purged.pk)
    with frozen_at(dt.datetime.now(dt.UTC) + dt.timedelta(days=400)):
        deletions.deletion_request_purge(principal=who, request_id=purged.pk)

    assert types(tenant.partner.pk) == [
        "deletion_request.created",
        "line.moved",
        "deletion_request.approved",
        "deletion_request.restored",
        "deletion_request.created",
        "deletion_request.rejected",
        "deletion_request.created",
        "deletion_request.approved",
        "deletion_request.purged",
    ]
    (disposal,) = payloads(tenant.partner.pk, "line.moved")
    assert disposal["data"]["deletion_request_id"] == request.pk
    assert disposal["data"]["line_ids"] == [x.pk for x in lines]
    assert disposal["data"]["sub_account_id"] == keeper.pk


def test_invoices_and_statements(db):
    partner = make_partner("Invoicing Partner")
    a = make_sub_account(partner, "A – Sales")
    b = make_sub_account(partner, "B – Sales")
    first, second = lines_at(partner, "2026-04-10T09:00:00+00:00", 2)
    move(first, a, "2026-04-10T09:05:00+00:00")
    move(second, b, "2026-04-10T09:05:00+00:00")
    with frozen_at(dt.datetime(2026, 5, 2, tzinfo=dt.UTC)):
        resale_default_set(principal=staff(partner), price="80.00")
    make_webhook_endpoint(partner)
    invoice = issue(partner, 2026, 6)
    invoice_finalize(principal=staff(partner), invoice=invoice)

    assert types(partner.pk) == ["invoice.issued", "statement.issued", "invoice.finalized"]
    issued = payloads(partner.pk, "invoice.issued")[0]
    assert issued["data"]["invoice_id"] == invoice.pk
    assert issued["data"]["number"] == invoice.number
    assert issued["timestamp"].startswith("2026-06-01")  # when it was issued
    statements = payloads(partner.pk, "statement.issued")[0]["data"]
    stored = Statement.objects.filter(invoice=invoice).order_by("sub_account_id")
    assert statements["statement_count"] == 2
    assert statements["currency"] == partner.currency
    assert [s["id"] for s in statements["statements"]] == [s.pk for s in stored]
    assert {s["total"] for s in statements["statements"]} == {"80.00"}
    # A statement is the client's: no provider price, no invoice figures.
    text = str(statements)
    assert "unit_price" not in text and "invoice" not in text
    assert str(Invoice.objects.get(pk=invoice.pk).unit_price) not in text
    finalized = payloads(partner.pk, "invoice.finalized")[0]["data"]
    assert finalized["invoice_id"] == invoice.pk


def test_statements_go_in_chunks_of_1000(db, monkeypatch):
    from portal.webhooks import outbox

    monkeypatch.setattr(outbox, "CHUNK", 1)
    partner = make_partner("Chunked Statements")
    a, b = make_sub_account(partner, "A"), make_sub_account(partner, "B")
    first, second = lines_at(partner, "2026-04-10T09:00:00+00:00", 2)
    move(first, a, "2026-04-10T09:05:00+00:00")
    move(second, b, "2026-04-10T09:05:00+00:00")
    with frozen_at(dt.datetime(2026, 5, 2, tzinfo=dt.UTC)):
        resale_default_set(principal=staff(partner), price="80.00")
    make_webhook_endpoint(partner, events=("statement.issued",))
    issue(partner, 2026, 6)
    parts = [p["data"] for p in payloads(partner.pk)]
    assert [(d["part"], d["parts"], len(d["statements"])) for d in parts] == [(1, 2, 1), (2, 2, 1)]


# --- Who gets rows -------------------------------------------------------------------


def test_only_subscribed_enabled_endpoints_of_the_partner_get_deliveries(tenant, other_tenant):
    lines_only = make_webhook_endpoint(tenant.partner, events=("line.moved",))
    everything = make_webhook_endpoint(tenant.partner)
    paused = make_webhook_endpoint(tenant.partner)
    webhook_endpoint_update(principal=staff(tenant.partner), endpoint_id=paused.pk, enabled=False)
    theirs = make_webhook_endpoint(other_tenant.partner)

    make_sub_account(tenant.partner, "Ours – Sales")

    delivered = set(WebhookDelivery.objects.values_list("endpoint_id", "event_type"))
    assert delivered == {(everything.pk, "sub_account.created")}
    assert lines_only.pk and theirs.pk
    assert not WebhookEvent.objects.filter(partner_id=other_tenant.partner.pk).exists()


def test_a_partner_without_endpoints_gets_no_rows(tenant):
    make_sub_account(tenant.partner, "Quiet – Sales")
    make_lines(tenant.partner, 3)
    assert not WebhookEvent.objects.exists()
    assert not WebhookDelivery.objects.exists()


def test_actions_without_an_event_type_send_nothing(tenant):
    lines = make_lines(tenant.partner, 1)
    make_webhook_endpoint(tenant.partner)
    from portal.lines.services import line_update

    sa = make_sub_account(tenant.partner, "S")
    line_assign(
        principal=staff(tenant.partner), line_id=lines[0].pk, sub_account_id=sa.pk, label="A"
    )
    before = WebhookEvent.objects.count()
    line_update(principal=staff(tenant.partner), line_id=lines[0].pk, label="B")
    assert WebhookEvent.objects.count() == before


def test_every_type_is_emitted_by_some_action():
    from portal.webhooks.catalogue import TYPES_OF_ACTION

    emitted = set().union(*TYPES_OF_ACTION.values())
    assert set(EVENT_TYPES) == emitted


def test_an_alert_firing_and_resolving_are_sent(busy):  # noqa: F811  (the fixture)
    """``alert.trigger`` / ``alert.resolve`` (written in bulk by the evaluation) become
    ``alert.triggered`` / ``alert.resolved`` with the alert's id, sub-account and figures."""
    from portal.alerts.models import Alert
    from tests.alerts.test_evaluation import DAY, evaluate, rule

    partner, alpha = busy["partner"], busy["alpha"]
    make_webhook_endpoint(partner, events=("alert.triggered", "alert.resolved"))
    usage = rule(
        partner, metric="volume_limit_usage", comparator="above", threshold="0.8", window_days=1
    )
    evaluate(partner, f"{DAY} 15:00")
    alert = Alert.objects.get()
    evaluate(partner, "2025-03-06 15:00")  # a new day: the figure falls to 0
    sent = {p["type"]: p["data"] for p in payloads(partner.pk)}
    assert set(sent) == {"alert.triggered", "alert.resolved"}
    fired = sent["alert.triggered"]
    assert fired["alert_id"] == alert.pk and fired["sub_account_id"] == alpha.pk
    assert (fired["rule_id"], fired["metric"], fired["value"]) == (
        usage.pk,
        "volume_limit_usage",
        "1",
    )
    assert sent["alert.resolved"]["alert_id"] == alert.pk
    assert sent["alert.resolved"]["because"] == "condition"


# --- The transaction -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_writes_nothing_and_a_committed_one_everything():
    tenant = make_tenant("Transactional Partner")
    make_webhook_endpoint(tenant.partner)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        make_sub_account(tenant.partner, "Rolled back – Sales")
        assert WebhookEvent.objects.count() == 1  # written beside the change…
        raise Boom
    assert WebhookEvent.objects.count() == 0  # …and gone with it
    assert WebhookDelivery.objects.count() == 0

    make_sub_account(tenant.partner, "Committed – Sales")
    # Committed with the change: no callback after the commit is needed to find it.
    assert list(WebhookDelivery.objects.values_list("event_type", "status")) == [
        ("sub_account.created", "pending")
    ]


@pytest.mark.django_db(transaction=True)
def test_endpoints_are_read_once_per_transaction():
    tenant = make_tenant("Cached Partner")
    doomed = make_sub_account(tenant.partner, "Doomed – Sales")
    keeper = make_sub_account(tenant.partner, "Keeper – Sales")
    lines = make_lines(tenant.partner, 3)
    line_move_bulk(
        principal=staff(tenant.partner), line_ids=[x.pk for x in lines], sub_account_id=doomed.pk
    )
    make_webhook_endpoint(tenant.partner)
    who = staff(tenant.partner)
    request = deletions.deletion_request_create(
        principal=who, sub_account_id=doomed.pk, line_disposition="move", move_to_id=keeper.pk
    )
    with CaptureQueriesContext(connection) as queries:
        # One transaction, two audit writes (the disposal's moves, the approval).
        deletions.deletion_request_approve(principal=who, request_id=request.pk)
    reads = [q for q in queries if "webhooks_webhookendpoint" in q["sql"]]
    assert len(reads) == 1
    assert types(tenant.partner.pk)[-2:] == ["line.moved", "deletion_request.approved"]


@pytest.mark.django_db(transaction=True)
def test_a_bulk_move_of_a_partner_without_webhooks_costs_one_small_query():
    tenant = make_tenant("Quiet Partner")
    make_webhook_endpoint(make_partner("Someone Else"))
    lines = make_lines(tenant.partner, 50)
    target = make_sub_account(tenant.partner, "Target – Sales")
    with CaptureQueriesContext(connection) as queries:
        line_move_bulk(
            principal=staff(tenant.partner),
            line_ids=[x.pk for x in lines],
            sub_account_id=target.pk,
        )
    touching = [q["sql"] for q in queries if "webhooks_" in q["sql"]]
    assert len(touching) == 1
    assert touching[0].lstrip().upper().startswith("SELECT")


@pytest.mark.django_db(transaction=True)
def test_a_new_endpoint_is_seen_by_the_next_transaction():
    tenant = make_tenant("Late Subscriber")
    make_sub_account(tenant.partner, "Before – Sales")
    make_webhook_endpoint(tenant.partner)
    make_sub_account(tenant.partner, "After – Sales")
    assert types(tenant.partner.pk) == ["sub_account.created"]
