"""domain §2 line orders: quantity, area codes, fulfilment from inventory, cancellation."""

from __future__ import annotations

import datetime as dt

import pytest

from portal.core import clock
from portal.lines.models import InventoryNumber, Line, LineOrder
from portal.partners.models import SubAccount
from tests.factories import (
    assert_line_invariants,
    db_snapshot,
    fresh_numbers,
    import_numbers,
    make_lines,
)


def pool_count(partner) -> int:
    return SubAccount.objects.get(partner=partner, kind="available").line_count


def order(api, quantity, area_code=None, **headers):
    body = {"quantity": quantity}
    if area_code is not None:
        body["area_code"] = area_code
    return api.post("/line-orders", body, **headers)


@pytest.mark.parametrize("quantity", [1, 1000])
def test_quantity_bounds_are_accepted(api, tenant, quantity):
    response = order(api, quantity)
    assert response.status_code == 201, response.content
    assert response.json()["quantity"] == quantity
    assert response.json()["status"] == "pending"


@pytest.mark.parametrize("quantity", [0, -1, 1001, 10**6])
def test_quantity_outside_bounds_is_refused(api, tenant, quantity):
    before = db_snapshot()
    response = order(api, quantity)
    assert response.status_code == 422
    assert "Quantity" in response.json()["detail"]
    assert db_snapshot() == before


@pytest.mark.parametrize("area_code", ["abc", "1", "123456", "41 5"])
def test_bad_area_code_is_refused(api, tenant, area_code):
    before = db_snapshot()
    response = order(api, 1, area_code)
    assert response.status_code == 422
    assert "Area code" in response.json()["detail"]
    assert db_snapshot() == before


def test_fulfilled_at_once_from_stock(api, tenant):
    numbers = fresh_numbers(3)
    import_numbers(*numbers)
    response = order(api, 2)
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "fulfilled"
    assert body["fulfilled_count"] == 2
    assert len(body["line_ids"]) == 2
    lines = Line.objects.filter(pk__in=body["line_ids"]).order_by("pk")
    assert [ln.number for ln in lines] == numbers[:2]  # stock is used in import order
    assert {ln.sub_account.kind for ln in lines} == {"available"}
    assert {ln.daily_limit for ln in lines} == {tenant.partner.default_daily_limit}
    assert pool_count(tenant.partner) == 2
    assert InventoryNumber.objects.filter(status="in_stock").count() == 1
    assert set(
        InventoryNumber.objects.filter(status="allocated").values_list("partner_id", flat=True)
    ) == {tenant.partner.pk}
    assert_line_invariants()


def test_partially_then_fully_fulfilled_when_inventory_arrives(api, tenant):
    import_numbers(*fresh_numbers(1))
    body = order(api, 3).json()
    assert (body["status"], body["fulfilled_count"]) == ("partially_fulfilled", 1)
    assert pool_count(tenant.partner) == 1
    import_numbers(*fresh_numbers(1))
    again = api.get(f"/line-orders/{body['id']}").json()
    assert (again["status"], again["fulfilled_count"]) == ("partially_fulfilled", 2)
    import_numbers(*fresh_numbers(5))
    done = api.get(f"/line-orders/{body['id']}").json()
    assert (done["status"], done["fulfilled_count"]) == ("fulfilled", 3)
    assert len(done["line_ids"]) == 3
    assert pool_count(tenant.partner) == 3
    assert InventoryNumber.objects.filter(status="in_stock").count() == 4
    assert_line_invariants()


def test_waiting_order_is_fulfilled_later(api, tenant):
    body = order(api, 2).json()
    assert body["status"] == "pending"
    assert body["line_ids"] == []
    assert pool_count(tenant.partner) == 0
    report = import_numbers(*fresh_numbers(2))
    assert report.lines_delivered == 2
    assert api.get(f"/line-orders/{body['id']}").json()["status"] == "fulfilled"
    assert pool_count(tenant.partner) == 2


def test_oldest_order_first_across_partners(api, tenant, other_tenant, api_as):
    t0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    rival = api_as(other_tenant.keys["manager"])
    with clock.frozen_at(t0):
        older = order(rival, 2).json()
    with clock.frozen_at(t0 + dt.timedelta(minutes=1)):
        newer = order(api, 2).json()
    import_numbers(*fresh_numbers(3))
    older_now = LineOrder.objects.get(pk=older["id"])
    newer_now = LineOrder.objects.get(pk=newer["id"])
    assert (older_now.status, older_now.fulfilled_count) == ("fulfilled", 2)
    assert (newer_now.status, newer_now.fulfilled_count) == ("partially_fulfilled", 1)
    assert pool_count(other_tenant.partner) == 2
    assert pool_count(tenant.partner) == 1
    assert_line_invariants()


def test_oldest_order_first_within_a_partner(api, tenant):
    first = order(api, 2).json()
    second = order(api, 2).json()
    import_numbers(*fresh_numbers(3))
    statuses = {o["id"]: (o["status"], o["fulfilled_count"]) for o in _orders(api)}
    assert statuses[first["id"]] == ("fulfilled", 2)
    assert statuses[second["id"]] == ("partially_fulfilled", 1)


def _orders(api):
    return api.get("/line-orders").json()["items"]


def test_area_code_matching(api, tenant):
    sf = fresh_numbers(2, "415")
    nyc = fresh_numbers(2, "212")
    import_numbers(*sf)
    wants_nyc = order(api, 2, "212").json()
    assert wants_nyc["status"] == "pending"
    any_area = order(api, 1).json()
    assert any_area["status"] == "fulfilled"  # takes what the older one cannot use
    import_numbers(*nyc)
    done = api.get(f"/line-orders/{wants_nyc['id']}").json()
    assert done["status"] == "fulfilled"
    numbers = set(Line.objects.filter(pk__in=done["line_ids"]).values_list("number", flat=True))
    assert numbers == set(nyc)
    assert InventoryNumber.objects.get(number=sf[1]).status == "in_stock"


def test_area_code_from_the_import_file_wins(api, tenant):
    number = fresh_numbers(1, "415")[0]
    import_numbers(number, area_codes={number: "628"})
    assert order(api, 1, "415").json()["status"] == "pending"
    assert order(api, 1, "628").json()["status"] == "fulfilled"


def test_requester_cancels_a_pending_order(api, tenant):
    body = order(api, 5).json()
    response = api.post(f"/line-orders/{body['id']}/cancel")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    import_numbers(*fresh_numbers(5))
    assert LineOrder.objects.get(pk=body["id"]).fulfilled_count == 0
    assert pool_count(tenant.partner) == 0
    before = db_snapshot()
    again = api.post(f"/line-orders/{body['id']}/cancel")
    assert again.status_code == 409
    assert db_snapshot() == before


def test_requester_cannot_cancel_once_lines_were_delivered(api, tenant):
    import_numbers(*fresh_numbers(1))
    body = order(api, 3).json()
    before = db_snapshot()
    response = api.post(f"/line-orders/{body['id']}/cancel")
    assert response.status_code == 403
    assert "staff" in response.json()["detail"]
    assert db_snapshot() == before


def test_staff_cancels_a_partially_fulfilled_order(api, tenant, staff_key, api_as):
    import_numbers(*fresh_numbers(1))
    body = order(api, 3).json()
    staff = api_as(staff_key)
    response = staff.post(f"/line-orders/{body['id']}/cancel?partner={tenant.partner.slug}")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    assert response.json()["fulfilled_count"] == 1
    import_numbers(*fresh_numbers(2))
    assert LineOrder.objects.get(pk=body["id"]).fulfilled_count == 1
    assert pool_count(tenant.partner) == 1  # delivered lines stay
    assert_line_invariants()


def test_fulfilled_order_cannot_be_cancelled_even_by_staff(api, tenant, staff_key, api_as):
    make_lines(tenant.partner, 1)  # leaves no stock behind
    import_numbers(*fresh_numbers(1))
    body = order(api, 1).json()
    assert body["status"] == "fulfilled"
    before = db_snapshot()
    response = api_as(staff_key).post(f"/line-orders/{body['id']}/cancel")
    assert response.status_code == 409
    assert db_snapshot() == before


def test_staff_must_name_a_partner_to_order(staff_key, api_as, tenant):
    before = db_snapshot()
    response = api_as(staff_key).post("/line-orders", {"quantity": 1})
    assert response.status_code == 400
    assert "partner" in response.json()["detail"]
    assert db_snapshot() == before
    named = api_as(staff_key).post(f"/line-orders?partner={tenant.partner.slug}", {"quantity": 1})
    assert named.status_code == 201
    assert LineOrder.objects.get(pk=named.json()["id"]).partner_id == tenant.partner.pk


def test_order_list_and_detail(api, tenant, other_tenant, api_as):
    mine = [order(api, 1).json()["id"], order(api, 2).json()["id"]]
    order(api_as(other_tenant.keys["admin"]), 3)
    listed = api.get("/line-orders").json()
    assert listed["count"] == 2
    assert [o["id"] for o in listed["items"]] == mine[::-1]  # newest first
    detail = api.get(f"/line-orders/{mine[0]}").json()
    assert detail["requested_by"].startswith("key:")
    assert detail["quantity"] == 1
