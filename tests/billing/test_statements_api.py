"""GET /statements, /statements/{id}, /csv and /pdf (domain §8.1, §6): the shape, the
filters and pages, the tenant wall and the roles, and files a reseller can send."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pypdf import PdfReader

from portal.billing.invoicing import invoice_finalize
from portal.billing.models import Statement
from portal.billing.resale import resale_default_set, sub_account_resale_price_set
from portal.billing.terms import credit_grant, discount_grant
from portal.core.clock import frozen_at
from portal.core.phone import display_number
from portal.lines.services import line_move, line_move_bulk
from tests.billing.statement_history import many_statements, statement_history
from tests.conftest import Api
from tests.factories import SYSTEM, issue_invoice, make_lines, make_sub_account

MISSING_ID = 987654321
ITEM_KEYS = {
    "id",
    "kind",
    "line_id",
    "line_number",
    "service_start",
    "service_end",
    "day",
    "days",
    "quantity",
    "unit_price",
    "amount",
    "description",
}
STATEMENT_KEYS = {
    "id",
    "number",
    "sub_account_id",
    "name",
    "period_month",
    "period_start",
    "period_end",
    "status",
    "currency",
    "unit_price",
    "partner_name",
    "contact_name",
    "contact_email",
    "contact_phone",
    "internal_reference",
    "line_quantity",
    "recurring",
    "prorations",
    "total",
    "issued_at",
    "items",
}


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def test_the_list_is_the_worked_example_newest_period_first(tenant, api):
    h = statement_history(tenant.partner)
    body = api.get("/statements").json()

    assert body["count"] == 3
    listed = [(s["period_month"], s["name"], s["number"], s["total"]) for s in body["items"]]
    assert listed == [
        ("2026-07", "Client A – Sales", 2, "40.00"),
        ("2026-07", "Client B – Support", 1, "97.50"),
        ("2026-06", "Client A – Sales", 1, "160.00"),
    ]
    a_july = body["items"][0]
    assert set(a_july) == STATEMENT_KEYS
    assert {
        k: a_july[k] for k in STATEMENT_KEYS - {"items", "id", "period_start", "issued_at"}
    } == {
        "number": 2,
        "sub_account_id": h.a.pk,
        "name": "Client A – Sales",
        "period_month": "2026-07",
        "period_end": "2026-08-01T00:00:00Z",
        "status": "draft",
        "currency": "USD",
        "unit_price": "80.00",
        "partner_name": "Acme Resellers",
        "contact_name": "Priya Shah",
        "contact_email": "priya@client-a.example",
        "contact_phone": "+14155550123",
        "internal_reference": "CL-1001",
        "line_quantity": 1,
        "recurring": "80.00",
        "prorations": "-40.00",
        "total": "40.00",
    }
    assert a_july["id"] == h.statement(h.a, h.july).pk
    recurring, credit = a_july["items"]
    assert set(recurring) == set(credit) == ITEM_KEYS
    assert (recurring["kind"], recurring["quantity"], recurring["amount"]) == (
        "recurring",
        1,
        "80.00",
    )
    assert recurring["line_id"] is None and recurring["line_number"] is None
    assert credit == {
        "id": credit["id"],
        "kind": "move_credit",
        "line_id": h.moved.pk,
        "line_number": h.moved.number,
        "service_start": "2026-06-16",
        "service_end": "2026-06-30",
        "day": 16,
        "days": 15,
        "quantity": 1,
        "unit_price": "80.00",
        "amount": "-40.00",
        "description": (
            f"{display_number(h.moved.number)} moved out on 16 June 2026: 15 of 30 days × 80.00"
        ),
    }


def test_a_statement_never_shows_the_providers_price_discounts_or_credits(tenant, api):
    partner = tenant.partner
    staff = SYSTEM.acting_for(partner.pk)
    a = make_sub_account(partner, "Client A – Sales")
    with frozen_at(dt.datetime(2026, 4, 10, 9, tzinfo=dt.UTC)):
        (line,) = make_lines(partner, 1)
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=a.pk)
    with frozen_at(dt.datetime(2026, 5, 10, tzinfo=dt.UTC)):
        sub_account_resale_price_set(principal=staff, sub_account_id=a.pk, price="71.00")
        discount_grant(principal=staff, kind="percent", value="10", name="Promo")
        credit_grant(principal=staff, amount="3.00", reason="Goodwill", sub_account_id=a.pk)
    june = issue_invoice(partner, 2026, 6)
    section = june.sections.get(sub_account=a)
    assert section.discounts < 0 and section.credits < 0  # the invoice carries them

    statement = api.get("/statements").json()["items"][0]
    assert (statement["recurring"], statement["prorations"], statement["total"]) == (
        "71.00",
        "0.00",
        "71.00",
    )
    assert [i["kind"] for i in statement["items"]] == ["recurring"]
    text = json.dumps(statement)
    for provider in ("50.00", "Promo", "Goodwill", "discount", "credit"):
        assert provider not in text
    pdf = pdf_text(api.get(f"/statements/{statement['id']}/pdf").content)
    csv_text = api.get(f"/statements/{statement['id']}/csv").content.decode()
    for provider in ("50.00", "Promo", "Goodwill", "Discount", "Credit"):
        assert provider not in pdf and provider not in csv_text


def test_filters_by_period_and_sub_account(tenant, api):
    h = statement_history(tenant.partner)

    def names(**query) -> list[tuple[str, int]]:
        body = api.get_with("/statements", query).json()
        assert body["count"] == len(body["items"])
        return [(s["name"], s["number"]) for s in body["items"]]

    assert names(period="2026-07") == [("Client A – Sales", 2), ("Client B – Support", 1)]
    assert names(period="2026-06") == [("Client A – Sales", 1)]
    assert names(period="2026-05") == []  # the May invoice: no resale price in force yet
    assert names(sub_account_id=h.a.pk) == [("Client A – Sales", 2), ("Client A – Sales", 1)]
    assert names(sub_account_id=h.b.pk, period="2026-07") == [("Client B – Support", 1)]
    assert names(sub_account_id=h.b.pk, period="2026-06") == []
    assert names(sub_account_id=MISSING_ID) == []


def test_pages_with_limit_and_offset(tenant, api):
    statement_history(tenant.partner)
    first = api.get_with("/statements", {"limit": 2}).json()
    rest = api.get_with("/statements", {"limit": 2, "offset": 2}).json()
    assert first["count"] == rest["count"] == 3
    assert [s["number"] for s in first["items"]] == [2, 1]
    assert [(s["period_month"], s["number"]) for s in rest["items"]] == [("2026-06", 1)]
    assert api.get_with("/statements", {"limit": 0}).status_code == 422


@pytest.mark.parametrize("period", ["2026-13", "2026-00", "July", "2026-7", "2026-07-01", ""])
def test_a_bad_period_is_refused(tenant, api, period):
    statement_history(tenant.partner)
    response = api.get_with("/statements", {"period": period})
    assert response.status_code == 422
    assert response.json()["detail"]


def test_one_statement_and_its_status_follows_the_invoice(tenant, api):
    h = statement_history(tenant.partner)
    statement = h.statement(h.b, h.july)
    body = api.get(f"/statements/{statement.pk}").json()
    assert set(body) == STATEMENT_KEYS
    assert (body["name"], body["number"], body["total"], body["status"]) == (
        "Client B – Support",
        1,
        "97.50",
        "draft",
    )
    assert [i["kind"] for i in body["items"]] == ["recurring", "move_charge"]
    assert body == api.get_with("/statements", {"sub_account_id": h.b.pk}).json()["items"][0]
    with frozen_at(dt.datetime(2026, 7, 5, tzinfo=dt.UTC)):
        invoice_finalize(principal=SYSTEM, invoice=h.july)
    assert api.get(f"/statements/{statement.pk}").json()["status"] == "finalized"


def test_the_csv_has_one_row_per_charge(tenant, api):
    h = statement_history(tenant.partner)
    statement = h.statement(h.a, h.july)
    response = api.get(f"/statements/{statement.pk}/csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="statement-2-2026-07-client-a-sales.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][:6] == [
        "statement_number",
        "period",
        "client",
        "internal_reference",
        "kind",
        "charge",
    ]
    assert [(r[4], r[5], r[-3], r[-2]) for r in rows[1:]] == [
        ("recurring", "Monthly charge", "80.00", "USD"),
        ("move_credit", "Line moved out", "-40.00", "USD"),
    ]
    assert rows[2][2:4] == ["Client A – Sales", "CL-1001"]
    assert rows[2][6] == "'" + h.moved.number  # a number starting with + is made safe


def test_the_csv_cells_cannot_run_formulas(tenant, api):
    evil = '=HYPERLINK("http://evil.example","click")'
    h = statement_history(tenant.partner, a_name=evil)
    statement = h.statement(h.a, h.july)
    body = api.get(f"/statements/{statement.pk}/csv").content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    assert all(row[2] == "'" + evil for row in rows[1:])
    assert not any(cell.startswith(("=", "+", "@")) for row in rows for cell in row)


def test_the_pdf_is_the_resellers_statement_to_its_client(tenant, api):
    h = statement_history(tenant.partner)
    statement = h.statement(h.a, h.july)
    response = api.get(f"/statements/{statement.pk}/pdf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == (
        'attachment; filename="statement-2-2026-07-client-a-sales.pdf"'
    )
    assert response.content.startswith(b"%PDF")
    reader = PdfReader(io.BytesIO(response.content))
    assert reader.metadata.author == "Acme Resellers"
    text = pdf_text(response.content)
    for expected in (
        "Acme Resellers",
        "Statement 2",
        "Client A – Sales",
        "Priya Shah",
        "priya@client-a.example",
        "+1 415 555 0123",
        "Reference: CL-1001",
        "July 2026: 1 Jul – 31 Jul 2026",
        "Monthly charge",
        "1 line × 80.00 USD for July 2026",
        "Line moved out",
        "moved out on 16 June 2026: 15 of 30 days × 80.00",
        "\u221240.00",
        "Adjustments for June 2026",
        "40.00 USD",
    ):
        assert expected in text, expected
    for absent in ("Invoice", "DRAFT", "Discount", "50.00", "Provider"):
        assert absent not in text, absent


def test_a_long_statement_repeats_its_header_and_adds_up(tenant, api):
    partner = tenant.partner
    a = make_sub_account(partner, "Big Client – Sales")
    b = make_sub_account(partner, "Other – Sales")
    staff = SYSTEM.acting_for(partner.pk)
    with frozen_at(dt.datetime(2026, 4, 10, 9, tzinfo=dt.UTC)):
        lines = make_lines(partner, 90)
        line_move_bulk(principal=SYSTEM, line_ids=[x.pk for x in lines], sub_account_id=a.pk)
    with frozen_at(dt.datetime(2026, 5, 10, tzinfo=dt.UTC)):
        resale_default_set(principal=staff, price="1234.56")
    issue_invoice(partner, 2026, 6)
    for day, line in enumerate(lines[:60]):
        with frozen_at(dt.datetime(2026, 6, 1 + day % 29, 15, tzinfo=dt.UTC)):
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=b.pk)
    issue_invoice(partner, 2026, 7)
    statement = Statement.objects.get(sub_account=a, period_month=dt.date(2026, 7, 1))
    response = api.get(f"/statements/{statement.pk}/pdf")
    reader = PdfReader(io.BytesIO(response.content))
    assert len(reader.pages) >= 2
    assert "Charges (continued)" in reader.pages[1].extract_text()
    text = pdf_text(response.content)
    assert text.count("Line moved out") == 60
    assert f"Total ({statement.currency})" in text


def test_another_partners_statement_answers_like_a_missing_one(tenant, other_tenant):
    h = statement_history(tenant.partner)
    own = h.statement(h.a, h.july).pk
    intruder = Api(other_tenant.keys["admin"])
    for suffix in ("", "/csv", "/pdf"):
        foreign = intruder.get(f"/statements/{own}{suffix}")
        missing = intruder.get(f"/statements/{MISSING_ID}{suffix}")
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json()["detail"].replace(str(own), "<id>") == missing.json()[
            "detail"
        ].replace(str(MISSING_ID), "<id>")
    assert intruder.get("/statements").json() == {"items": [], "count": 0}
    assert intruder.get_with("/statements", {"sub_account_id": h.a.pk}).json()["count"] == 0


@pytest.mark.parametrize("role", ["manager", "viewer"])
def test_managers_and_viewers_may_not_read_statements(tenant, role):
    h = statement_history(tenant.partner)
    own = h.statement(h.a, h.july).pk
    client = Api(tenant.keys[role])
    for path in (
        "/statements",
        f"/statements/{own}",
        f"/statements/{own}/csv",
        f"/statements/{own}/pdf",
    ):
        response = client.get(path)
        assert response.status_code == 403, path
        assert response.json() == {"detail": "Your role may not read client statements."}


def test_billing_people_and_staff_read_them(tenant, other_tenant, staff_key):
    h = statement_history(tenant.partner)
    statement_history(other_tenant.partner, "Rival A", "Rival B")
    own = h.statement(h.a, h.july).pk
    billing = Api(tenant.keys["billing"])
    for suffix in ("", "/csv", "/pdf"):
        assert billing.get(f"/statements/{own}{suffix}").status_code == 200
    staff = Api(staff_key)
    assert staff.get("/statements").json()["count"] == 6
    theirs = {"partner": other_tenant.partner.slug}
    assert staff.get_with("/statements", theirs).json()["count"] == 3
    assert staff.get_with(f"/statements/{own}", theirs).status_code == 404


def test_the_list_runs_a_fixed_number_of_queries(tenant, api):
    statement_history(tenant.partner)
    many_statements(tenant.partner)
    api.get("/statements")  # the first call records the key's use

    def queries(**query) -> int:
        with CaptureQueriesContext(connection) as ctx:
            response = api.get_with("/statements", query)
        assert response.status_code == 200
        return len(ctx.captured_queries)

    assert len(api.get_with("/statements", {"period": "2026-08"}).json()["items"]) == 12
    assert queries(period="2026-06") == queries(period="2026-08") == queries()
