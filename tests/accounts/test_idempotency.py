"""``Idempotency-Key`` on POST (domain §6)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from portal.accounts import idempotency
from portal.accounts.models import IdempotencyRecord
from portal.accounts.services import api_key_authenticate, api_key_revoke
from portal.api import api as ninja_api
from portal.audit.models import AuditEvent
from portal.billing.invoicing import invoice_issue
from portal.billing.periods import Cycle
from portal.core.clock import frozen_at
from portal.lines.models import LineOrder
from portal.partners import services as partner_services
from portal.partners.models import SubAccount
from tests.conftest import Api
from tests.factories import (
    PUBLIC_WEBHOOK_URL,
    SYSTEM,
    Tenant,
    db_snapshot,
    make_lines,
    make_staff_key,
    make_sub_account,
    make_tenant,
)


def key(value: str) -> dict[str, str]:
    return {"HTTP_IDEMPOTENCY_KEY": value}


def test_same_key_and_body_replays_the_first_response(api, tenant):
    first = api.post("/sub-accounts", {"name": "Once"}, **key("create-once"))
    assert first.status_code == 201
    after_first = db_snapshot()
    second = api.post("/sub-accounts", {"name": "Once"}, **key("create-once"))
    assert second.status_code == 201
    assert second.content == first.content
    assert second["Idempotent-Replayed"] == "true"
    assert db_snapshot() == after_first
    assert SubAccount.objects.filter(name="Once").count() == 1
    assert AuditEvent.objects.filter(action="sub_account.create").count() == 1


def test_without_a_key_the_same_request_runs_twice(api, tenant):
    api.ok_post("/line-orders", {"quantity": 1})
    api.ok_post("/line-orders", {"quantity": 1})
    assert LineOrder.objects.filter(partner=tenant.partner).count() == 2


def test_replay_of_an_order_creates_no_second_order(api, tenant):
    first = api.post("/line-orders", {"quantity": 3}, **key("order-1"))
    second = api.post("/line-orders", {"quantity": 3}, **key("order-1"))
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json() == second.json()
    assert LineOrder.objects.filter(partner=tenant.partner).count() == 1
    assert AuditEvent.objects.filter(action="line_order.create").count() == 1


def test_replay_of_a_move_does_not_move_again(api, tenant):
    a = make_sub_account(tenant.partner, "A")
    b = make_sub_account(tenant.partner, "B")
    line = make_lines(tenant.partner, 1)[0]
    first = api.post(f"/lines/{line.pk}/move", {"sub_account_id": a.pk}, **key("mv"))
    api.ok_post(f"/lines/{line.pk}/move", {"sub_account_id": b.pk})
    replay = api.post(f"/lines/{line.pk}/move", {"sub_account_id": a.pk}, **key("mv"))
    assert replay.status_code == 200
    assert replay.json() == first.json()  # the first answer, though the line is now in B
    assert replay.json()["sub_account_id"] == a.pk
    line.refresh_from_db()
    assert line.sub_account_id == b.pk
    assert AuditEvent.objects.filter(action="line.move").count() == 2


def test_same_key_with_another_body_or_path_is_refused(api, tenant):
    api.ok_post("/sub-accounts", {"name": "First"}, **key("k"))
    before = db_snapshot()
    other_body = api.post("/sub-accounts", {"name": "Second"}, **key("k"))
    assert other_body.status_code == 422
    assert "Idempotency-Key" in other_body.json()["detail"]
    other_path = api.post("/line-orders", {"name": "First"}, **key("k"))
    assert other_path.status_code == 422
    other_query = api.post("/sub-accounts?partner=x", {"name": "First"}, **key("k"))
    assert other_query.status_code == 422
    assert db_snapshot() == before


@pytest.mark.parametrize(
    "again",
    [
        '{"internal_reference": "R-1", "name": "Same value"}',  # keys in another order
        '{ "name" : "Same value" ,\n\t"internal_reference":"R-1" }',  # other spacing
        '{"name": "Same \\u0076alue", "internal_reference": "R-1"}',  # an escape
    ],
)
def test_the_same_json_value_written_otherwise_replays(api, tenant, again):
    first = api.post(
        "/sub-accounts", raw='{"name": "Same value", "internal_reference": "R-1"}', **key("v")
    )
    assert first.status_code == 201, first.content
    after_first = db_snapshot()
    replay = api.post("/sub-accounts", raw=again, **key("v"))
    assert (replay.status_code, replay.content) == (first.status_code, first.content)
    assert replay["Idempotent-Replayed"] == "true"
    assert db_snapshot() == after_first


def test_nested_values_compare_as_values_too(api, tenant):
    a = make_sub_account(tenant.partner, "Nested A")
    b = make_sub_account(tenant.partner, "Nested B")
    body = {"source_ids": [a.pk], "target_id": b.pk, "reason": "tidy"}
    first = api.post("/merge-requests", body, **key("merge-once"))
    assert first.status_code == 201, first.content
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)
    replay = api.post("/merge-requests", raw=reordered, **key("merge-once"))
    assert (replay.status_code, replay.content) == (first.status_code, first.content)
    # Another value in a list, and a list in another order, are other requests.
    for other in [{**body, "source_ids": [a.pk, a.pk]}, {**body, "reason": "tidy "}]:
        refused = api.post("/merge-requests", other, **key("merge-once"))
        assert refused.status_code == 422, refused.content
        assert "Idempotency-Key" in refused.json()["detail"]
    assert SubAccount.objects.get(pk=a.pk).lock_reason


@pytest.mark.parametrize(
    ("raw", "same_as_canonical"),
    [
        (b"", True),
        (b'{"b": [1, {"d": 2, "c": 1}], "a": null}', False),
        (b"not json", True),
        (b'{"a": 1', True),
        (b"[" * 100_000 + b"]" * 100_000, True),  # too deep to read: compared as bytes
        (b"9" * 5000, True),  # past Python's digit limit: compared as bytes
    ],
)
def test_canonical_body(raw, same_as_canonical):
    canonical = idempotency.canonical_body(raw)
    assert (canonical == raw) is same_as_canonical
    if not same_as_canonical:
        assert canonical == b'{"a":null,"b":[1,{"c":1,"d":2}]}'


def test_a_record_stored_before_values_were_compared_still_replays(api, tenant):
    """Records written by the previous release hashed the raw bytes (kept 48 h)."""
    raw = b'{"name": "Stored raw"}'
    first = api.post("/sub-accounts", raw=raw.decode(), **key("old"))
    assert first.status_code == 201
    legacy = hashlib.sha256(b"\0".join([b"/api/v1/sub-accounts", b"", raw])).hexdigest()
    IdempotencyRecord.objects.filter(key="old").update(fingerprint=legacy)
    replay = api.post("/sub-accounts", raw=raw.decode(), **key("old"))
    assert (replay.status_code, replay.content) == (201, first.content)
    assert SubAccount.objects.filter(name="Stored raw").count() == 1


def test_keys_belong_to_one_credential(tenant, api_as):
    admin = api_as(tenant.keys["admin"])
    manager = api_as(tenant.keys["manager"])
    a = admin.post("/sub-accounts", {"name": "From admin"}, **key("shared"))
    m = manager.post("/sub-accounts", {"name": "From manager"}, **key("shared"))
    assert (a.status_code, m.status_code) == (201, 201)
    assert a.json()["id"] != m.json()["id"]
    replay = manager.post("/sub-accounts", {"name": "From manager"}, **key("shared"))
    assert replay.json() == m.json()


def test_keys_of_two_partners_do_not_meet(tenant, other_tenant, api_as):
    ours = api_as(tenant.keys["admin"]).post("/line-orders", {"quantity": 2}, **key("o"))
    theirs = api_as(other_tenant.keys["admin"]).post("/line-orders", {"quantity": 2}, **key("o"))
    assert ours.status_code == theirs.status_code == 201
    assert ours.json()["id"] != theirs.json()["id"]
    assert LineOrder.objects.get(pk=theirs.json()["id"]).partner_id == other_tenant.partner.pk


def test_client_errors_are_replayed(api, tenant):
    make_sub_account(tenant.partner, "Taken")
    first = api.post("/sub-accounts", {"name": "Taken"}, **key("dup"))
    assert first.status_code == 409
    second = api.post("/sub-accounts", {"name": "Taken"}, **key("dup"))
    assert second.status_code == 409
    assert second.content == first.content
    assert second["Idempotent-Replayed"] == "true"


def test_a_server_error_is_not_stored(api, tenant, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(partner_services, "sub_account_create", broken)
    api.client.raise_request_exception = False
    failed = api.post("/sub-accounts", {"name": "Retry me"}, **key("retry"))
    assert failed.status_code == 500
    assert not IdempotencyRecord.objects.filter(key="retry").exists()
    monkeypatch.undo()
    retried = api.post("/sub-accounts", {"name": "Retry me"}, **key("retry"))
    assert retried.status_code == 201, retried.content
    assert "Idempotent-Replayed" not in retried
    assert SubAccount.objects.filter(name="Retry me").count() == 1


def test_unauthenticated_requests_are_not_stored(tenant):
    anonymous = Api(None)
    assert anonymous.post("/sub-accounts", {"name": "x"}, **key("anon")).status_code == 401
    bad = Api("rpp_nope_nope")
    assert bad.post("/sub-accounts", {"name": "x"}, **key("anon")).status_code == 401
    assert not IdempotencyRecord.objects.exists()


def test_key_must_be_short_and_printable(api, tenant):
    before = db_snapshot()
    for value in ["k" * 256, "tab\there"]:
        response = api.post("/sub-accounts", {"name": "Never"}, **key(value))
        assert response.status_code == 400
        assert "Idempotency-Key" in response.json()["detail"]
    assert db_snapshot() == before
    assert not IdempotencyRecord.objects.exists()


def test_key_is_ignored_on_reads(api, tenant):
    assert api.get_with("/sub-accounts", HTTP_IDEMPOTENCY_KEY="r").status_code == 200
    assert not IdempotencyRecord.objects.exists()


def test_a_revoked_key_cannot_replay_its_stored_responses(tenant, api_as):
    manager = api_as(tenant.keys["manager"])
    first = manager.post("/sub-accounts", {"name": "Before revocation"}, **key("rv"))
    assert first.status_code == 201
    revoked = api_key_authenticate(tenant.keys["manager"])
    api_key_revoke(principal=tenant.principal("admin"), key_id=revoked.pk)
    replay = manager.post("/sub-accounts", {"name": "Before revocation"}, **key("rv"))
    assert replay.status_code == 401
    assert replay.json() == {"detail": "Missing, unknown or revoked API key."}
    other_body = manager.post("/sub-accounts", {"name": "Other"}, **key("rv"))
    assert other_body.status_code == 401


# --- Every POST operation of the API (domain §6) ------------------------------------------
# The operations come from the OpenAPI document, so a new POST endpoint fails here until
# it has an example below: a request that succeeds on a fresh partner.

PREFIX = "/api/v1"
POST_OPERATIONS = sorted(
    path for path, methods in ninja_api.get_openapi_schema()["paths"].items() if "post" in methods
)


@dataclass
class World:
    tenant: Tenant
    staff: str  # a staff key

    @property
    def admin(self) -> str:
        return self.tenant.keys["admin"]

    @property
    def as_staff(self) -> str:
        """The ``partner`` parameter staff add to act on this partner's billing."""
        return f"?partner={self.tenant.partner.slug}"


@dataclass
class Call:
    key: str  # the API key that sends it
    path: str  # under /api/v1, with any query string
    body: dict[str, Any] | None  # None: no body
    other_body: dict[str, Any]  # another request under the same Idempotency-Key
    status: int  # what the first request answers


EXAMPLES: dict[str, Callable[[World], Call]] = {}


def example(path: str) -> Callable[[Callable[[World], Call]], Callable[[World], Call]]:
    def register(build: Callable[[World], Call]) -> Callable[[World], Call]:
        assert PREFIX + path not in EXAMPLES, path
        EXAMPLES[PREFIX + path] = build
        return build

    return register


def _created(w: World, path: str, body: dict[str, Any], key: str | None = None) -> int:
    """The id of an object made through the API (no Idempotency-Key) for a setup."""
    return Api(key or w.admin).ok_post(path, body)["id"]


def _decision(key: str, path: str) -> Call:
    return Call(key, path, {"reason": "Checked"}, {"reason": "Changed my mind"}, 200)


def _merge_request(w: World) -> int:
    source = make_sub_account(w.tenant.partner, "Merge source")
    target = make_sub_account(w.tenant.partner, "Merge target")
    return _created(w, "/merge-requests", {"source_ids": [source.pk], "target_id": target.pk})


def _deletion_request(w: World) -> int:
    doomed = make_sub_account(w.tenant.partner, "Doomed")
    return _created(w, "/deletion-requests", {"sub_account_id": doomed.pk})


@example("/sub-accounts")
def _(w: World) -> Call:
    return Call(w.admin, "/sub-accounts", {"name": "Once"}, {"name": "Twice"}, 201)


@example("/lines/move")
def _(w: World) -> Call:
    ids = [line.pk for line in make_lines(w.tenant.partner, 2)]
    to = make_sub_account(w.tenant.partner, "Sales").pk
    body = {"line_ids": ids, "sub_account_id": to}
    return Call(w.admin, "/lines/move", body, {**body, "line_ids": ids[:1]}, 200)


@example("/lines/{line_id}/assign")
def _(w: World) -> Call:
    line = make_lines(w.tenant.partner, 1)[0]
    to = make_sub_account(w.tenant.partner, "Sales").pk
    body = {"sub_account_id": to, "label": "Front desk"}
    return Call(w.admin, f"/lines/{line.pk}/assign", body, {**body, "label": "Back office"}, 200)


@example("/lines/{line_id}/move")
def _(w: World) -> Call:
    line = make_lines(w.tenant.partner, 1)[0]
    a = make_sub_account(w.tenant.partner, "A").pk
    b = make_sub_account(w.tenant.partner, "B").pk
    return Call(
        w.admin, f"/lines/{line.pk}/move", {"sub_account_id": a}, {"sub_account_id": b}, 200
    )


@example("/lines/{line_id}/disconnect")
def _(w: World) -> Call:
    line = make_lines(w.tenant.partner, 1)[0]
    return Call(w.admin, f"/lines/{line.pk}/disconnect", None, {}, 200)


@example("/line-orders")
def _(w: World) -> Call:
    return Call(w.admin, "/line-orders", {"quantity": 2}, {"quantity": 3}, 201)


@example("/line-orders/{order_id}/cancel")
def _(w: World) -> Call:
    order = _created(w, "/line-orders", {"quantity": 1})  # no numbers in stock: it waits
    return Call(w.admin, f"/line-orders/{order}/cancel", None, {}, 200)


@example("/invoices/{invoice_id}/finalize")
def _(w: World) -> Call:
    with frozen_at(dt.datetime(2026, 4, 10, tzinfo=dt.UTC)):
        make_lines(w.tenant.partner, 1)
    cycle = Cycle(2026, 6, "UTC")
    with frozen_at(cycle.start):
        invoice = invoice_issue(principal=SYSTEM, partner=w.tenant.partner, cycle=cycle)
    return Call(w.staff, f"/invoices/{invoice.pk}/finalize{w.as_staff}", None, {}, 200)


@example("/discounts")
def _(w: World) -> Call:
    body = {"kind": "amount", "value": "5"}
    return Call(w.staff, f"/discounts{w.as_staff}", body, {**body, "value": "6"}, 201)


@example("/discounts/{discount_id}/remove")
def _(w: World) -> Call:
    made = _created(w, f"/discounts{w.as_staff}", {"kind": "percent", "value": "10"}, w.staff)
    return Call(w.staff, f"/discounts/{made}/remove{w.as_staff}", None, {}, 200)


@example("/credits")
def _(w: World) -> Call:
    body = {"amount": "7.50", "reason": "Outage"}
    return Call(w.staff, f"/credits{w.as_staff}", body, {**body, "amount": "8.00"}, 201)


@example("/message-events")
def _(w: World) -> Call:
    line = make_lines(w.tenant.partner, 1)[0]
    sent = {
        "id": "evt-1",
        "line": line.number,
        "direction": "outbound",
        "contact": "+14155550199",
        "occurred_at": (timezone.now() - dt.timedelta(hours=1)).isoformat(),
    }
    other = {"events": [{**sent, "id": "evt-2"}]}
    return Call(w.staff, "/message-events", {"events": [sent]}, other, 200)


@example("/alert-rules")
def _(w: World) -> Call:
    body = {"metric": "response_rate", "comparator": "below", "threshold": "0.2"}
    return Call(w.admin, "/alert-rules", body, {**body, "threshold": "0.3"}, 201)


@example("/merge-requests")
def _(w: World) -> Call:
    source = make_sub_account(w.tenant.partner, "Source").pk
    target = make_sub_account(w.tenant.partner, "Target").pk
    body = {"source_ids": [source], "target_id": target}
    return Call(w.admin, "/merge-requests", body, {**body, "reason": "Other"}, 201)


@example("/merge-requests/preview")
def _(w: World) -> Call:
    source = make_sub_account(w.tenant.partner, "Source").pk
    target = make_sub_account(w.tenant.partner, "Target").pk
    body = {"source_ids": [source], "target_id": target}
    return Call(w.admin, "/merge-requests/preview", body, {**body, "reason": "Other"}, 200)


@example("/merge-requests/{merge_request_id}/approve")
def _(w: World) -> Call:
    return _decision(w.staff, f"/merge-requests/{_merge_request(w)}/approve")


@example("/merge-requests/{merge_request_id}/reject")
def _(w: World) -> Call:
    return _decision(w.staff, f"/merge-requests/{_merge_request(w)}/reject")


@example("/merge-requests/{merge_request_id}/cancel")
def _(w: World) -> Call:
    return _decision(w.admin, f"/merge-requests/{_merge_request(w)}/cancel")


@example("/deletion-requests")
def _(w: World) -> Call:
    doomed = make_sub_account(w.tenant.partner, "Doomed").pk
    body = {"sub_account_id": doomed}
    return Call(w.admin, "/deletion-requests", body, {**body, "reason": "Other"}, 201)


@example("/deletion-requests/{deletion_request_id}/approve")
def _(w: World) -> Call:
    return _decision(w.staff, f"/deletion-requests/{_deletion_request(w)}/approve")


@example("/deletion-requests/{deletion_request_id}/reject")
def _(w: World) -> Call:
    return _decision(w.staff, f"/deletion-requests/{_deletion_request(w)}/reject")


@example("/deletion-requests/{deletion_request_id}/cancel")
def _(w: World) -> Call:
    return _decision(w.admin, f"/deletion-requests/{_deletion_request(w)}/cancel")


@example("/deletion-requests/{deletion_request_id}/restore")
def _(w: World) -> Call:
    request = _deletion_request(w)
    Api(w.staff).ok_post(f"/deletion-requests/{request}/approve")
    return Call(w.staff, f"/deletion-requests/{request}/restore", None, {}, 200)


@example("/webhook-endpoints")
def _(w: World) -> Call:
    body = {"url": PUBLIC_WEBHOOK_URL, "events": ["*"]}
    return Call(w.admin, "/webhook-endpoints", body, {**body, "description": "Other"}, 201)


def _webhook_endpoint(w: World) -> int:
    return _created(w, "/webhook-endpoints", {"url": PUBLIC_WEBHOOK_URL, "events": ["*"]})


@example("/webhook-endpoints/{webhook_endpoint_id}/rotate-secret")
def _(w: World) -> Call:
    path = f"/webhook-endpoints/{_webhook_endpoint(w)}/rotate-secret"
    return Call(w.admin, path, None, {}, 200)


@example("/webhook-endpoints/{webhook_endpoint_id}/test")
def _(w: World) -> Call:
    return Call(w.admin, f"/webhook-endpoints/{_webhook_endpoint(w)}/test", None, {}, 202)


@example("/webhook-deliveries/{webhook_delivery_id}/retry")
def _(w: World) -> Call:
    endpoint = _webhook_endpoint(w)
    delivery = Api(w.admin).ok_post(f"/webhook-endpoints/{endpoint}/test")["id"]
    return Call(w.admin, f"/webhook-deliveries/{delivery}/retry", None, {}, 200)


def _issued_invoice(w: World) -> int:
    """The partner's invoice for June 2026, issued by the billing service: a notification
    in the shared inbox its admin key reads."""
    cycle = Cycle(2026, 6, w.tenant.partner.timezone)
    with frozen_at(cycle.start):
        return invoice_issue(principal=SYSTEM, partner=w.tenant.partner, cycle=cycle).pk


@example("/notifications/read-all")
def _(w: World) -> Call:
    _issued_invoice(w)
    return Call(w.admin, "/notifications/read-all", None, {}, 200)


@example("/notifications/{notification_id}/read")
def _(w: World) -> Call:
    _issued_invoice(w)
    (item,) = Api(w.admin).get("/notifications").json()["items"]
    return Call(w.admin, f"/notifications/{item['id']}/read", None, {}, 200)


def test_the_api_has_post_operations_and_every_example_names_one():
    assert len(POST_OPERATIONS) >= 20, POST_OPERATIONS
    assert set(EXAMPLES) <= set(POST_OPERATIONS), set(EXAMPLES) - set(POST_OPERATIONS)


@pytest.mark.parametrize("operation", POST_OPERATIONS)
def test_every_post_operation_replays_refuses_and_waits(operation, tenant):
    build = EXAMPLES.get(operation)
    assert build is not None, (
        f"POST {operation} has no example in tests/accounts/test_idempotency.py: add an @example "
        "with a request that succeeds, so its Idempotency-Key handling is tested."
    )
    call = build(World(tenant=tenant, staff=make_staff_key()))
    client = Api(call.key)

    def send(body: dict[str, Any] | None):
        return client.post(call.path, body, **key(f"every-{operation}"))

    first = send(call.body)
    assert first.status_code == call.status, first.content
    assert "Idempotent-Replayed" not in first
    after_first = db_snapshot()

    replay = send(call.body)
    assert (replay.status_code, replay.content) == (first.status_code, first.content)
    assert replay["Content-Type"] == first["Content-Type"]
    assert replay["Idempotent-Replayed"] == "true"

    other = send(call.other_body)
    assert other.status_code == 422, other.content
    assert "Idempotency-Key" in other.json()["detail"]

    # While the first request is still running (its answer not yet stored).
    IdempotencyRecord.objects.filter(key=f"every-{operation}").update(response_status=None)
    busy = send(call.body)
    assert busy.status_code == 409, busy.content
    assert "still in progress" in busy.json()["detail"]
    assert db_snapshot() == after_first
    assert IdempotencyRecord.objects.filter(key=f"every-{operation}").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_duplicate_sent_while_the_first_runs_gets_409(monkeypatch):
    tenant = make_tenant("Slow Partner")
    admin = tenant.keys["admin"]
    started, release = threading.Event(), threading.Event()
    create = partner_services.sub_account_create

    def slow_create(**kwargs: Any) -> Any:
        started.set()
        assert release.wait(30)
        return create(**kwargs)

    monkeypatch.setattr(partner_services, "sub_account_create", slow_create)
    answers: dict[str, Any] = {}

    def first_request() -> None:
        try:
            answers["first"] = Api(admin).post("/sub-accounts", {"name": "Slow"}, **key("slow"))
        except BaseException as exc:
            answers["first"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=first_request)
    thread.start()
    try:
        assert started.wait(30), "the first request never reached the service"
        duplicate = Api(admin).post("/sub-accounts", {"name": "Slow"}, **key("slow"))
        changed = Api(admin).post("/sub-accounts", {"name": "Fast"}, **key("slow"))
    finally:
        release.set()
        thread.join(60)
    assert duplicate.status_code == 409
    assert duplicate.json()["detail"] == "A request with this Idempotency-Key is still in progress."
    assert changed.status_code == 422
    first = answers["first"]
    assert first.status_code == 201, first
    replay = Api(admin).post("/sub-accounts", {"name": "Slow"}, **key("slow"))
    assert (replay.status_code, replay.content) == (201, first.content)
    assert replay["Idempotent-Replayed"] == "true"
    assert SubAccount.objects.filter(name__in=["Slow", "Fast"]).count() == 1


# --- How long keys are kept --------------------------------------------------------------


def _age(key_value: str, age: dt.timedelta) -> None:
    IdempotencyRecord.objects.filter(key=key_value).update(created_at=timezone.now() - age)


def test_records_are_kept_at_least_a_day(api, tenant):
    first = api.post("/line-orders", {"quantity": 1}, **key("day-old"))
    api.post("/line-orders", {"quantity": 1}, **key("expired"))
    _age("day-old", dt.timedelta(hours=23, minutes=59))
    _age("expired", idempotency.RETENTION + dt.timedelta(seconds=1))
    assert dt.timedelta(hours=24) <= idempotency.RETENTION

    assert idempotency.prune_idempotency_records() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["day-old"]
    replay = api.post("/line-orders", {"quantity": 1}, **key("day-old"))
    assert (replay.status_code, replay.content) == (201, first.content)
    assert replay["Idempotent-Replayed"] == "true"
    # A pruned key is free again: the same request is a new order.
    again = api.post("/line-orders", {"quantity": 1}, **key("expired"))
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again
    assert LineOrder.objects.filter(partner=tenant.partner).count() == 3


def test_pruning_never_forgets_a_key_younger_than_a_day(db):
    with pytest.raises(ValueError, match="at least"):
        idempotency.prune_idempotency_records(older_than=dt.timedelta(hours=23))


def test_the_prune_follows_the_portal_clock(api, tenant):
    api.post("/line-orders", {"quantity": 1}, **key("k"))
    later = timezone.now() + idempotency.RETENTION
    with frozen_at(later - dt.timedelta(minutes=1)):
        assert idempotency.prune_idempotency_records() == 0
    with frozen_at(later + dt.timedelta(minutes=1)):
        assert idempotency.prune_idempotency_records() == 1


# --- A first request that never finished ----------------------------------------------


def test_a_request_abandoned_in_flight_holds_its_key_for_a_while_only(api, tenant):
    # Simulated: the first answer is stored, then marked unfinished and aged, as if its
    # process had died mid-request (its transaction would then have rolled back).
    api.post("/line-orders", {"quantity": 1}, **key("crashed"))
    IdempotencyRecord.objects.filter(key="crashed").update(response_status=None)
    _age("crashed", idempotency.IN_FLIGHT_TIMEOUT - dt.timedelta(minutes=1))
    waiting = api.post("/line-orders", {"quantity": 1}, **key("crashed"))
    assert waiting.status_code == 409
    assert "still in progress" in waiting.json()["detail"]

    _age("crashed", idempotency.IN_FLIGHT_TIMEOUT + dt.timedelta(seconds=1))
    retried = api.post("/line-orders", {"quantity": 1}, **key("crashed"))
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried
    assert LineOrder.objects.filter(partner=tenant.partner).count() == 2
    replay = api.post("/line-orders", {"quantity": 1}, **key("crashed"))
    assert (replay.status_code, replay.content) == (201, retried.content)
    # An abandoned key still belongs to its request: another body is refused.
    IdempotencyRecord.objects.filter(key="crashed").update(response_status=None)
    _age("crashed", idempotency.IN_FLIGHT_TIMEOUT + dt.timedelta(seconds=1))
    assert api.post("/line-orders", {"quantity": 5}, **key("crashed")).status_code == 422


def test_only_one_retry_takes_over_an_abandoned_request(db):
    record = IdempotencyRecord.objects.create(scope="s", key="k", fingerprint="f")
    _age("k", idempotency.IN_FLIGHT_TIMEOUT * 2)
    record.refresh_from_db()
    stale = IdempotencyRecord.objects.get(pk=record.pk)
    assert idempotency.IdempotencyMiddleware._take_over(record) is True
    assert idempotency.IdempotencyMiddleware._take_over(stale) is False
