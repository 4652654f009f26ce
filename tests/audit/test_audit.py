"""domain §2 audit events: one per changed object, with who, what, before/after, request id, IP."""

from __future__ import annotations

import pytest
from django.db import transaction

from portal.audit.models import AuditEvent
from portal.audit.services import audit_record
from tests.factories import (
    SYSTEM,
    db_snapshot,
    fresh_numbers,
    import_numbers,
    make_lines,
    make_sub_account,
)

REQUEST_ID = "req-audit-0001"
IP = "203.0.113.7"
CTX = {"HTTP_X_REQUEST_ID": REQUEST_ID, "REMOTE_ADDR": IP}


def new_events(api, since_id: int, **filters):
    """Events newer than ``since_id``, oldest first, read through the API."""
    items = api.get("/audit-events", limit=500, **filters).json()["items"]
    return sorted((e for e in items if e["id"] > since_id), key=lambda e: e["id"])


def last_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def check_context(event, role="admin"):
    assert event["actor_type"] == "api_key"
    assert event["actor"].startswith("key:")
    assert f"({role} key)" in event["actor"]
    assert event["request_id"] == REQUEST_ID
    assert event["ip"] == IP
    assert event["at"].endswith("Z") or event["at"].endswith("+00:00")


def test_sub_account_create_and_update(api, tenant):
    start = last_id()
    created = api.post("/sub-accounts", {"name": " Client A ", "contact_name": "Bo"}, **CTX)
    assert created.status_code == 201
    assert created["X-Request-ID"] == REQUEST_ID
    sa_id = created.json()["id"]
    response = api.patch(
        f"/sub-accounts/{sa_id}", {"name": "Client A2", "contact_name": "Bo"}, **CTX
    )
    assert response.status_code == 200
    events = new_events(api, start)
    assert [(e["action"], e["object_type"], e["object_id"]) for e in events] == [
        ("sub_account.create", "sub_account", str(sa_id)),
        ("sub_account.update", "sub_account", str(sa_id)),
    ]
    for event in events:
        check_context(event)
        assert event["sub_account_id"] == sa_id
    assert events[0]["data"]["after"]["name"] == "Client A"
    assert events[1]["data"] == {"before": {"name": "Client A"}, "after": {"name": "Client A2"}}


def test_assign_move_disconnect_each_write_one_event(api, tenant):
    a = make_sub_account(tenant.partner, "A")
    b = make_sub_account(tenant.partner, "B")
    line = make_lines(tenant.partner, 1)[0]
    pool_id = line.sub_account_id
    start = last_id()

    api.ok_post(f"/lines/{line.pk}/assign", {"sub_account_id": a.pk, "label": "Desk"}, **CTX)
    assign = new_events(api, start)
    assert len(assign) == 1
    assert assign[0]["action"] == "line.assign"
    assert assign[0]["data"]["before"]["sub_account_id"] == pool_id
    assert assign[0]["data"]["before"]["label"] == ""
    assert assign[0]["data"]["after"]["sub_account_id"] == a.pk
    assert assign[0]["data"]["after"]["label"] == "Desk"
    assert assign[0]["data"]["after"]["daily_limit"] == 50

    start = last_id()
    api.ok_post(f"/lines/{line.pk}/move", {"sub_account_id": b.pk}, **CTX)
    move = new_events(api, start)
    assert len(move) == 1
    assert move[0]["action"] == "line.move"
    assert move[0]["line_id"] == line.pk
    assert move[0]["data"]["before"] == {"sub_account_id": a.pk}
    assert move[0]["data"]["after"] == {"sub_account_id": b.pk}
    assert move[0]["data"]["number"] == line.number

    start = last_id()
    api.ok_post(f"/lines/{line.pk}/disconnect", **CTX)
    disconnect = new_events(api, start)
    assert len(disconnect) == 1
    assert disconnect[0]["action"] == "line.disconnect"
    assert disconnect[0]["data"]["before"] == {"status": "active", "sub_account_id": b.pk}
    assert disconnect[0]["data"]["after"] == {"status": "disconnected", "sub_account_id": None}
    for event in assign + move + disconnect:
        check_context(event)
        assert event["object_type"] == "line"
        assert event["object_id"] == str(line.pk)


def test_bulk_move_writes_one_event_per_line_that_changed(api, tenant):
    a = make_sub_account(tenant.partner, "A")
    lines = make_lines(tenant.partner, 4)
    api.ok_post(f"/lines/{lines[0].pk}/move", {"sub_account_id": a.pk})
    start = last_id()
    body = api.ok_post(
        "/lines/move", {"line_ids": [ln.pk for ln in lines], "sub_account_id": a.pk}, **CTX
    )
    assert body == {"moved": 3, "already_there": 1}
    events = new_events(api, start)
    assert sorted(e["line_id"] for e in events) == [ln.pk for ln in lines[1:]]
    assert {e["action"] for e in events} == {"line.move"}
    for event in events:
        check_context(event)


def test_order_events(api, tenant):
    import_numbers(*fresh_numbers(2))
    start = last_id()
    body = api.ok_post("/line-orders", {"quantity": 2}, **CTX)
    events = new_events(api, start)
    assert sorted(e["action"] for e in events) == [
        "line.activate",
        "line.activate",
        "line_order.create",
        "line_order.fulfil",
    ]
    assert {e["line_id"] for e in events if e["action"] == "line.activate"} == set(body["line_ids"])
    fulfil = next(e for e in events if e["action"] == "line_order.fulfil")
    assert fulfil["data"]["before"] == {"status": "pending", "fulfilled_count": 0}
    assert fulfil["data"]["after"] == {"status": "fulfilled", "fulfilled_count": 2}
    for event in events:
        check_context(event)

    pending = api.ok_post("/line-orders", {"quantity": 1}, **CTX)
    start = last_id()
    api.ok_post(f"/line-orders/{pending['id']}/cancel", **CTX)
    cancel = new_events(api, start)
    assert [(e["action"], e["object_id"]) for e in cancel] == [
        ("line_order.cancel", str(pending["id"]))
    ]
    assert cancel[0]["data"] == {"before": {"status": "pending"}, "after": {"status": "cancelled"}}


def test_refused_requests_write_no_event(api, tenant, api_as):
    a = make_sub_account(tenant.partner, "A")
    line = make_lines(tenant.partner, 1)[0]
    viewer = api_as(tenant.keys["viewer"])
    before = db_snapshot()
    assert api.post("/sub-accounts", {"name": "A"}).status_code == 409
    assert api.post("/sub-accounts", {"name": ""}).status_code == 422
    assert viewer.post("/sub-accounts", {"name": "Z"}).status_code == 403
    assert (
        api.post(f"/lines/{line.pk}/move", {"sub_account_id": line.sub_account_id}).status_code
        == 409
    )
    assert api.post("/lines/987654321/disconnect").status_code == 404
    assert (
        api.post(f"/lines/{line.pk}/assign", {"sub_account_id": a.pk, "label": ""}).status_code
        == 422
    )
    assert db_snapshot() == before


def test_filters(api, tenant, other_tenant, api_as):
    a = make_sub_account(tenant.partner, "A")
    b = make_sub_account(tenant.partner, "B")
    lines = make_lines(tenant.partner, 2)
    api.ok_post(f"/lines/{lines[0].pk}/move", {"sub_account_id": a.pk})
    api.ok_post(f"/lines/{lines[0].pk}/move", {"sub_account_id": b.pk})
    api.ok_post(f"/lines/{lines[1].pk}/move", {"sub_account_id": b.pk})
    rival = api_as(other_tenant.keys["admin"])
    rival.ok_post("/sub-accounts", {"name": "A"})

    by_line = api.get("/audit-events", line_id=lines[0].pk).json()
    assert [e["action"] for e in by_line["items"]] == ["line.move", "line.move", "line.activate"]
    assert by_line["count"] == 3

    # Both ends of a move: A was the target of one move and the source of the next.
    by_sub = api.get("/audit-events", sub_account_id=a.pk).json()["items"]
    assert [(e["action"], e["line_id"]) for e in by_sub] == [
        ("line.move", lines[0].pk),
        ("line.move", lines[0].pk),
        ("sub_account.create", None),
    ]
    by_action = api.get("/audit-events", action="line.move").json()
    assert by_action["count"] == 3
    combined = api.get(
        "/audit-events", action="line.move", sub_account_id=b.pk, line_id=lines[1].pk
    )
    assert combined.json()["count"] == 1
    assert api.get("/audit-events", action="no.such").json()["count"] == 0

    mine = api.get("/audit-events", limit=500).json()["items"]
    theirs = rival.get("/audit-events", limit=500).json()["items"]
    assert not {e["id"] for e in mine} & {e["id"] for e in theirs}
    assert [e["action"] for e in theirs] == [
        "sub_account.create",
        "api_key.create",
        "api_key.create",
        "api_key.create",
        "api_key.create",
        "partner.create",
    ]


def test_events_are_listed_newest_first_and_paginate(api, tenant):
    for i in range(5):
        make_sub_account(tenant.partner, f"S{i}")
    first = api.get("/audit-events", limit=2).json()
    second = api.get("/audit-events", limit=2, offset=2).json()
    ids = [e["id"] for e in first["items"] + second["items"]]
    assert ids == sorted(ids, reverse=True)
    assert (
        first["count"]
        == second["count"]
        == AuditEvent.objects.filter(partner=tenant.partner).count()
    )


def test_request_without_an_id_gets_a_fresh_one(api, tenant):
    start = last_id()
    response = api.post("/sub-accounts", {"name": "Fresh"}, HTTP_X_REQUEST_ID="bad id!")
    assert response.status_code == 201
    event = new_events(api, start)[0]
    assert event["request_id"] == response["X-Request-ID"]
    assert event["request_id"] != "bad id!"
    assert len(event["request_id"]) == 32


@pytest.mark.django_db(transaction=True)
def test_audit_record_refuses_to_write_outside_a_transaction():
    count = AuditEvent.objects.count()
    with pytest.raises(RuntimeError):
        audit_record(principal=SYSTEM, partner_id=None, action="x", object_type="y", object_id=1)
    assert AuditEvent.objects.count() == count
    with transaction.atomic():
        audit_record(principal=SYSTEM, partner_id=None, action="x", object_type="y", object_id=1)
    assert AuditEvent.objects.count() == count + 1


def test_audit_log_has_no_write_endpoints(api, tenant):
    make_sub_account(tenant.partner, "Anything")
    event_id = AuditEvent.objects.filter(partner=tenant.partner).values_list("id", flat=True)[0]
    before = db_snapshot()
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert api.call(method, "/audit-events", {}).status_code == 405
        assert api.call(method, f"/audit-events/{event_id}", {}).status_code == 404
    assert db_snapshot() == before
