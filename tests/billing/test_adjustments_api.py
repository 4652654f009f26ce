"""The REST API for discounts, credits, finalising and billing settings."""

from __future__ import annotations

import datetime as dt

import pytest

from portal.billing.invoicing import invoice_issue
from portal.billing.models import CreditEntry, Discount, Invoice
from portal.billing.periods import Cycle
from portal.core.clock import frozen_at
from portal.lines.services import line_move
from tests.conftest import Api
from tests.factories import SYSTEM, db_snapshot, make_lines, make_sub_account, make_tenant

JUNE_20 = dt.datetime(2026, 6, 20, 12, tzinfo=dt.UTC)


@pytest.fixture
def setup(db, staff_key):
    tenant = make_tenant("Api Billing")
    partner = tenant.partner
    a = make_sub_account(partner, "A")
    with frozen_at(dt.datetime(2026, 4, 10, tzinfo=dt.UTC)):
        for line in make_lines(partner, 2):
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=a.pk)
    for month in (5, 6):
        cycle = Cycle(2026, month, "UTC")
        with frozen_at(cycle.start):
            invoice_issue(principal=SYSTEM, partner=partner, cycle=cycle)
    return tenant, a, Api(staff_key)


def q(tenant) -> str:
    return f"?partner={tenant.partner.slug}"


def test_staff_grant_and_partners_read_then_the_invoice_applies_them(setup):
    tenant, a, staff = setup
    with frozen_at(JUNE_20):
        discount = staff.ok_post(
            "/discounts" + q(tenant),
            {"kind": "percent", "value": "12.5", "name": "Loyalty", "cycles": 2},
        )
        credit = staff.ok_post(
            "/credits" + q(tenant),
            {"amount": "7.50", "reason": "Outage on June 3", "sub_account_id": a.pk},
        )
        settings = staff.patch("/billing/settings" + q(tenant), {"line_price": "40"}).json()
    assert discount["value"] == "12.5" and discount["first_month"] == "2026-07"
    assert discount["last_month"] == "2026-08" and discount["state"] == "active"
    assert credit["balance"] == "7.50" and credit["sub_account_name"] == "A"
    assert settings["line_price"] == "50.00" and settings["next_line_price"] == "40.00"

    reader = Api(tenant.keys["billing"])
    assert reader.get("/discounts").json()["count"] == 1
    assert reader.get("/credits/balance").json()["sub_accounts"] == [
        {"sub_account_id": a.pk, "name": "A", "balance": "7.50"}
    ]
    assert reader.post("/credits", {"amount": "1", "reason": "x"}).status_code == 403

    cycle = Cycle(2026, 7, "UTC")
    with frozen_at(cycle.start):
        invoice_issue(principal=SYSTEM, partner=tenant.partner, cycle=cycle)
    july = Invoice.objects.get(partner=tenant.partner, period_month=cycle.first_day)
    body = reader.get(f"/invoices/{july.pk}").json()
    (section,) = body["sections"]
    assert (section["recurring"], section["discounts"], section["credits"], section["total"]) == (
        "80.00",
        "-10.00",
        "-7.50",
        "62.50",
    )
    kinds = [i["kind"] for i in section["items"]]
    assert kinds == ["recurring", "discount", "credit"]
    assert section["items"][1]["discount_id"] == discount["id"]
    assert section["items"][2]["credit_entry_id"] is not None
    assert body["total"] == "62.50"
    ledger = reader.get("/credits").json()["items"]
    assert [(e["kind"], e["amount"], e["balance"]) for e in ledger] == [
        ("apply", "-7.50", "0.00"),
        ("grant", "7.50", "7.50"),
    ]
    assert ledger[0]["invoice_number"] == july.number


def test_remove_then_remove_again_is_a_conflict(setup):
    tenant, _, staff = setup
    with frozen_at(JUNE_20):
        made = staff.ok_post("/discounts" + q(tenant), {"kind": "amount", "value": 5})
        removed = staff.post(f"/discounts/{made['id']}/remove" + q(tenant))
        again = staff.post(f"/discounts/{made['id']}/remove" + q(tenant))
    assert removed.status_code == 200 and removed.json()["state"] == "removed"
    assert again.status_code == 409 and "already removed" in again.json()["detail"]


def test_finalize_once_then_409(setup):
    tenant, _, staff = setup
    june = Invoice.objects.get(partner=tenant.partner, period_month=dt.date(2026, 6, 1))
    first = staff.post(f"/invoices/{june.pk}/finalize" + q(tenant))
    second = staff.post(f"/invoices/{june.pk}/finalize" + q(tenant))
    assert first.status_code == 200 and first.json()["status"] == "finalized"
    assert second.status_code == 409


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/discounts", {"kind": "bogus", "value": "1"}, 422),
        ("/discounts", {"kind": "percent", "value": "abc"}, 422),
        ("/discounts", {"kind": "percent", "value": ""}, 422),
        ("/discounts", {"kind": "percent", "value": "101"}, 422),
        ("/discounts", {"kind": "percent", "value": "Infinity"}, 422),
        ("/discounts", {"kind": "amount", "value": "1e999"}, 422),
        ("/discounts", {"kind": "amount", "value": "0.001"}, 422),
        ("/discounts", {"kind": "amount", "value": [1]}, 422),
        ("/discounts", {"kind": "amount", "value": "1", "first_month": "2026-13"}, 422),
        ("/discounts", {"kind": "amount", "value": "1", "first_month": "2026-06"}, 422),
        ("/discounts", {"kind": "amount", "value": "1", "first_month": "June"}, 422),
        ("/discounts", {"kind": "amount", "value": "1", "cycles": 0}, 422),
        ("/discounts", {"kind": "amount", "value": "1", "sub_account_id": 2**70}, 404),
        ("/discounts", {"kind": "amount", "value": "1", "sub_account_id": 987654}, 404),
        ("/discounts", {"value": "1"}, 422),
        ("/credits", {"amount": "5"}, 422),
        ("/credits", {"amount": "5", "reason": "   "}, 422),
        ("/credits", {"amount": "-5", "reason": "x"}, 422),
        ("/credits", {"amount": "0", "reason": "x"}, 422),
        ("/credits", {"amount": "5", "reason": "x" * 501}, 422),
        ("/credits", {"amount": "5", "reason": "bad\x00"}, 422),
        ("/credits", {"amount": "5", "reason": "x", "sub_account_id": 987654}, 404),
        ("/credits", {"amount": "5", "reason": "x", "sub_account_id": 0}, 404),
    ],
)
def test_bad_input_is_a_clear_4xx_and_changes_nothing(setup, path, body, status):
    tenant, _, staff = setup
    before = db_snapshot()
    with frozen_at(JUNE_20):
        response = staff.post(path + q(tenant), body)
    assert response.status_code == status, response.content
    assert response.json()["detail"]
    assert db_snapshot() == before
    assert not Discount.objects.exists()
    assert not CreditEntry.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"line_price": None},
        {"line_price": "-1"},
        {"line_price": "abc"},
        {"line_price": "1.00001"},
        {"prorate_new_lines": "maybe"},
        {"credit_disconnects": None},
    ],
)
def test_bad_settings_are_refused(setup, body):
    tenant, _, staff = setup
    before = db_snapshot()
    response = staff.patch("/billing/settings" + q(tenant), body)
    assert response.status_code == 422, response.content
    assert db_snapshot() == before


def test_malformed_json_is_400_and_staff_must_name_the_partner(setup):
    tenant, _, staff = setup
    assert staff.post("/credits" + q(tenant), raw="{not json").status_code == 400
    refused = staff.post("/credits", {"amount": "5", "reason": "x"})
    assert refused.status_code == 400 and "partner" in refused.json()["detail"]


def test_a_credit_for_a_sub_account_of_another_partner_is_missing(setup):
    tenant, _, staff = setup
    other = make_tenant("Elsewhere")
    theirs = make_sub_account(other.partner, "Theirs")
    response = staff.post(
        "/credits" + q(tenant), {"amount": "5", "reason": "x", "sub_account_id": theirs.pk}
    )
    missing = staff.post(
        "/credits" + q(tenant), {"amount": "5", "reason": "x", "sub_account_id": 987654}
    )
    assert response.status_code == missing.status_code == 404
    assert not CreditEntry.objects.exists()
