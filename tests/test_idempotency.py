"""``Idempotency-Key`` on POST (SPEC §6)."""

from __future__ import annotations

from portal.accounts.models import IdempotencyRecord
from portal.accounts.services import api_key_authenticate, api_key_revoke
from portal.audit.models import AuditEvent
from portal.lines.models import LineOrder
from portal.partners import services as partner_services
from portal.partners.models import SubAccount
from tests.conftest import Api
from tests.factories import db_snapshot, make_lines, make_sub_account


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
