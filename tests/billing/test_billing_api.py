"""GET /invoices, GET /invoices/{id} and GET /billing/summary (domain §3, §6)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portal.billing.invoicing import invoice_finalize
from portal.billing.models import Invoice
from portal.core.clock import frozen_at
from portal.lines.services import line_move
from portal.partners.models import Partner
from portal.partners.selectors import available_pool
from tests.conftest import Api
from tests.factories import SYSTEM, at, issue_invoice, make_lines, make_sub_account, make_tenant

MISSING_ID = 987654321


def move(line_id: int, sub_account_id: int, when: str) -> None:
    with frozen_at(at(when)):
        line_move(principal=SYSTEM, line_id=line_id, sub_account_id=sub_account_id)


def worked_example(partner: Partner) -> dict[str, int]:
    """domain §3: A holds 2 lines on June 1; one moves to B on June 16."""
    a = make_sub_account(partner, "A")
    b = make_sub_account(partner, "B")
    with frozen_at(at("2026-04-10T09:00:00+00:00")):
        lines = make_lines(partner, 2)
    for line in lines:
        move(line.pk, a.pk, "2026-04-10T09:05:00+00:00")
    june = issue_invoice(partner, 2026, 6)
    move(lines[1].pk, b.pk, "2026-06-16T12:00:00+00:00")
    july = issue_invoice(partner, 2026, 7)
    return {"a": a.pk, "b": b.pk, "june": june.pk, "july": july.pk, "line": lines[1].pk}


# --- Invoices --------------------------------------------------------------------------


def test_invoices_list_newest_first_with_money_as_strings(tenant, api):
    ids = worked_example(tenant.partner)

    body = api.get("/invoices").json()

    assert body["count"] == 2
    july, june = body["items"]
    assert (july["id"], june["id"]) == (ids["july"], ids["june"])
    assert june == {
        "id": ids["june"],
        "number": 1,
        "period_month": "2026-06",
        "period_start": "2026-06-01T00:00:00Z",
        "period_end": "2026-07-01T00:00:00Z",
        "status": "draft",
        "currency": "USD",
        "total": "100.00",
        "issued_at": "2026-06-01T00:00:00Z",
        "finalized_at": None,
    }
    assert july["number"] == 2
    paged = api.get("/invoices", limit=1, offset=1).json()
    assert paged["count"] == 2 and [i["id"] for i in paged["items"]] == [ids["june"]]


def test_an_invoice_shows_its_sections_and_items(tenant, api):
    ids = worked_example(tenant.partner)

    body = api.get(f"/invoices/{ids['july']}").json()

    assert body["total"] == "100.00"
    assert body["unit_price"] == "50.00"
    assert body["timezone"] == "UTC"
    a, b = body["sections"]
    assert {k: v for k, v in a.items() if k != "items"} == {
        "sub_account_id": ids["a"],
        "name": "A",
        "kind": "standard",
        "line_quantity": 1,
        "recurring": "50.00",
        "prorations": "-25.00",
        "discounts": "0.00",
        "credits": "0.00",
        "total": "25.00",
    }
    assert (b["name"], b["recurring"], b["prorations"], b["total"]) == (
        "B",
        "50.00",
        "25.00",
        "75.00",
    )
    recurring, credit = a["items"]
    assert recurring["kind"] == "recurring"
    assert recurring["quantity"] == 1 and recurring["amount"] == "50.00"
    assert recurring["service_start"] == "2026-07-01"
    assert recurring["service_end"] == "2026-07-31"
    assert credit["kind"] == "move_credit"
    assert credit["line_id"] == ids["line"]
    assert credit["line_number"].startswith("+1415555")
    assert credit["other_sub_account_id"] == ids["b"]
    assert credit["other_name"] == "B"
    assert (credit["day"], credit["days"]) == (16, 15)
    assert (credit["service_start"], credit["service_end"]) == ("2026-06-16", "2026-06-30")
    assert credit["amount"] == "-25.00"
    assert credit["unit_price"] == "50.00"
    assert credit["description"].endswith("moved to B on 2026-06-16: 15 of 30 days")
    assert b["items"][1]["amount"] == "25.00"


def test_yen_invoices_have_no_decimals(db):
    tokyo = make_tenant("Tokyo Lines", currency="JPY", line_price="5000", timezone="Asia/Tokyo")
    with frozen_at(at("2026-04-03T03:00:00+00:00")):
        make_lines(tokyo.partner, 1)
    june = issue_invoice(tokyo.partner, 2026, 6)

    body = Api(tokyo.keys["billing"]).get(f"/invoices/{june.pk}").json()

    assert body["currency"] == "JPY"
    assert body["total"] == "5000"
    assert body["sections"][0]["recurring"] == "5000"


def test_invoices_filter_by_status(tenant, api):
    ids = worked_example(tenant.partner)
    june = Invoice.objects.get(pk=ids["june"])
    with frozen_at(at("2026-06-05T00:00:00+00:00")):
        invoice_finalize(principal=SYSTEM, invoice=june)

    finalized = api.get("/invoices", status="finalized").json()
    assert [i["id"] for i in finalized["items"]] == [ids["june"]]
    assert finalized["items"][0]["finalized_at"] == "2026-06-05T00:00:00Z"
    assert api.get("/invoices", status="draft").json()["count"] == 1
    bad = api.get("/invoices", status="paid")
    assert bad.status_code == 400
    assert "status" in bad.json()["detail"]


@pytest.mark.parametrize(("role", "allowed"), [("admin", True), ("billing", True)])
def test_admin_and_billing_read_invoices(tenant, role, allowed):
    ids = worked_example(tenant.partner)
    client = Api(tenant.keys[role])
    assert client.get("/invoices").status_code == 200
    assert client.get(f"/invoices/{ids['june']}").status_code == 200


@pytest.mark.parametrize("role", ["manager", "viewer"])
def test_managers_and_viewers_do_not_see_invoices(tenant, role):
    ids = worked_example(tenant.partner)
    client = Api(tenant.keys[role])
    for path in ("/invoices", f"/invoices/{ids['june']}"):
        response = client.get(path)
        assert response.status_code == 403
        assert response.json() == {"detail": "Your role may not read invoices."}


def test_another_partners_invoice_answers_like_a_missing_one(tenant, other_tenant):
    ids = worked_example(tenant.partner)
    intruder = Api(other_tenant.keys["admin"])

    foreign = intruder.get(f"/invoices/{ids['june']}")
    missing = intruder.get(f"/invoices/{MISSING_ID}")

    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"].replace(str(ids["june"]), "<id>") == missing.json()[
        "detail"
    ].replace(str(MISSING_ID), "<id>")
    assert intruder.get("/invoices").json()["count"] == 0


def test_staff_read_every_partners_invoices_or_one_partners(tenant, other_tenant, staff_key):
    ids = worked_example(tenant.partner)
    theirs = issue_invoice(other_tenant.partner, 2026, 6)
    staff = Api(staff_key)

    assert staff.get("/invoices").json()["count"] == 3
    narrowed = staff.get_with("/invoices", {"partner": other_tenant.partner.slug}).json()
    assert [i["id"] for i in narrowed["items"]] == [theirs.pk]
    own = {"partner": other_tenant.partner.slug}
    assert staff.get_with(f"/invoices/{ids['june']}", own).status_code == 404
    assert staff.get(f"/invoices/{ids['june']}").status_code == 200


def test_the_invoice_page_runs_a_fixed_number_of_queries(tenant, api):
    partner = tenant.partner
    with frozen_at(at("2026-04-10T09:00:00+00:00")):
        lines = make_lines(partner, 12)
    small = issue_invoice(partner, 2026, 5)
    subs = [make_sub_account(partner, f"Client {i}") for i in range(6)]
    for i, line in enumerate(lines):
        move(line.pk, subs[i % 6].pk, f"2026-05-{10 + i:02d}T12:00:00+00:00")
    large = issue_invoice(partner, 2026, 6)
    api.get(f"/invoices/{small.pk}")  # the first call records the key's use

    def queries(invoice: Invoice) -> int:
        with CaptureQueriesContext(connection) as ctx:
            response = api.get(f"/invoices/{invoice.pk}")
        assert response.status_code == 200
        return len(ctx.captured_queries)

    assert len(api.get(f"/invoices/{small.pk}").json()["sections"]) == 1
    body = api.get(f"/invoices/{large.pk}").json()
    assert sum(len(s["items"]) for s in body["sections"]) == 30  # 6 recurring + 24 moves
    assert queries(large) == queries(small)


# --- Billing summary ------------------------------------------------------------------------


def test_the_summary_adds_the_prorations_accruing_this_cycle(tenant):
    ids = worked_example(tenant.partner)
    pool = available_pool(tenant.partner.pk)
    move(ids["line"], ids["a"], "2026-07-11T12:00:00+00:00")  # day 11 of 31: 21 days

    with frozen_at(at("2026-07-20T08:00:00+00:00")):
        body = Api(tenant.keys["manager"]).get("/billing/summary").json()

    assert body["period_start"] == "2026-07-01T00:00:00Z"
    assert body["period_end"] == "2026-08-01T00:00:00Z"
    assert body["period_month"] == "2026-07"
    assert body["as_of"] == "2026-07-20T08:00:00Z"
    assert body["invoice_id"] == ids["july"]
    assert body["currency"] == "USD"
    rows = {r["name"]: r for r in body["sub_accounts"]}
    assert rows["A"] == {
        "sub_account_id": ids["a"],
        "name": "A",
        "line_count": 1,
        "recurring": "50.00",
        "prorations": "8.87",  # −25.00 invoiced for June, +33.87 accruing for July
        "accruing_prorations": "33.87",
        "discounts": "0.00",
        "credits": "0.00",
        "total": "58.87",
    }
    assert rows["B"]["prorations"] == "-8.87"
    assert rows["B"]["accruing_prorations"] == "-33.87"
    assert rows["B"]["total"] == "41.13"
    assert body["total"] == "100.00"
    assert pool.pk not in {r["sub_account_id"] for r in body["sub_accounts"]}


def test_the_summary_previews_an_invoice_not_issued_yet(tenant):
    partner = tenant.partner
    with frozen_at(at("2026-06-10T12:00:00+00:00")):
        make_lines(partner, 2)

    with frozen_at(at("2026-07-02T00:00:00+00:00")):
        body = Api(tenant.keys["billing"]).get("/billing/summary").json()

    assert body["invoice_id"] is None
    (pool,) = body["sub_accounts"]
    assert pool["name"] == "Available"
    assert (pool["line_count"], pool["recurring"], pool["prorations"]) == (2, "100.00", "70.00")
    assert body["total"] == "170.00"
    assert not Invoice.objects.exists()


@pytest.mark.parametrize(("role", "status"), [("manager", 200), ("viewer", 403)])
def test_managers_see_the_summary_and_viewers_do_not(tenant, role, status):
    response = Api(tenant.keys[role]).get("/billing/summary")
    assert response.status_code == status
    if status == 403:
        assert response.json() == {"detail": "Your role may not see the billing summary."}


def test_staff_name_the_partner_for_a_summary(tenant, staff_key):
    staff = Api(staff_key)
    assert staff.get("/billing/summary").status_code == 400
    response = staff.get_with("/billing/summary", {"partner": tenant.partner.slug})
    assert response.status_code == 200
    assert response.json()["sub_accounts"] == []
