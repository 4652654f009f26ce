"""Margins (domain §8.1): each section of a period's invoice beside its client statement,
through the API (``GET /billing/margins``) and the Billing → Margins page with its CSV."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal.accounts.models import User
from portal.billing.margins import margins_for_period, parse_period
from portal.billing.terms import discount_grant
from portal.core.clock import frozen_at
from portal.core.errors import Forbidden, Invalid
from tests.billing.test_invoices import lines_at, move
from tests.billing.test_statements import at, issue, set_resale
from tests.conftest import Api
from tests.factories import SYSTEM, make_sub_account, make_tenant, make_user

D = Decimal


def worked_example(name: str = "Worked Example", a_name: str = "A"):
    """Domain §8.1's example: wholesale 50.00; A resold at 80.00, B at 65.00; A holds 2
    lines on June 1, one moves to B on June 16. Returns (tenant, a, b, june, july)."""
    tenant = make_tenant(name)
    partner = tenant.partner
    a = make_sub_account(partner, a_name)
    b = make_sub_account(partner, "B")
    first, second = lines_at(partner, "2026-04-10T09:00:00+00:00", 2)
    move(first, a, "2026-04-10T09:05:00+00:00")
    move(second, a, "2026-04-10T09:05:00+00:00")
    set_resale(partner, "2026-05-10T00:00:00+00:00", a=(a, "80.00"), b=(b, "65.00"))
    issue(partner, 2026, 5)
    june = issue(partner, 2026, 6)
    move(second, b, "2026-06-16T12:00:00+00:00")
    july = issue(partner, 2026, 7)
    return tenant, a, b, june, july


def test_the_worked_example(db):
    tenant, a, b, _june, july = worked_example()
    answer = Api(tenant.keys["admin"]).get("/billing/margins", period="2026-07")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    by_name = {i["name"]: i for i in body["items"]}
    assert by_name["A"] == {
        "sub_account_id": a.pk,
        "name": "A",
        "kind": "standard",
        "cost": "25.00",
        "resale": "40.00",
        "margin": "15.00",
        "margin_rate": "0.3750",
    }
    assert by_name["B"] == {
        "sub_account_id": b.pk,
        "name": "B",
        "kind": "standard",
        "cost": "75.00",
        "resale": "97.50",
        "margin": "22.50",
        "margin_rate": "0.2308",
    }
    # Every section of the invoice, so the cost total is the invoice's.
    assert D(body["cost"]) == july.total == sum(D(i["cost"]) for i in body["items"])
    assert (body["resale"], body["margin"]) == ("137.50", "37.50")
    assert body["margin_rate"] == "0.2727"
    assert (body["currency"], body["period"], body["invoice_id"]) == ("USD", "2026-07", july.pk)


def test_a_section_without_a_statement_resells_nothing(db):
    tenant = make_tenant("Partial")
    partner = tenant.partner
    a = make_sub_account(partner, "A")
    b = make_sub_account(partner, "B")
    lines = lines_at(partner, "2026-04-10T09:00:00+00:00", 3)
    move(lines[0], a, "2026-04-10T09:05:00+00:00")
    move(lines[1], b, "2026-04-10T09:05:00+00:00")
    set_resale(partner, "2026-04-11T00:00:00+00:00", a=(a, "70.00"))
    issue(partner, 2026, 5)
    with frozen_at(at("2026-05-20T00:00:00+00:00")):
        discount_grant(principal=SYSTEM.acting_for(partner.pk), kind="percent", value="10")
    june = issue(partner, 2026, 6)
    found = margins_for_period(
        principal=tenant.principal("billing"), period=parse_period("2026-06")
    )
    rows = {r.name: r for r in found.rows}
    # The provider's discount lowers the cost, never the resale.
    assert (rows["A"].cost, rows["A"].resale, rows["A"].margin) == (D("45"), D("70"), D("25"))
    assert (rows["B"].cost, rows["B"].resale, rows["B"].has_statement) == (D("45"), 0, False)
    assert rows["B"].margin == D("-45") and rows["B"].margin_rate is None
    # Available holds the third line: a cost with no client to pass it to.
    assert rows["Available"].is_pool and rows["Available"].cost == D("45")
    assert found.cost == june.total
    assert found.margin == D(70) - june.total


def test_a_period_without_an_invoice_is_empty(db):
    tenant, *_ = worked_example()
    body = Api(tenant.keys["admin"]).get("/billing/margins", period="2026-01").json()
    assert body == {
        "currency": "USD",
        "period": "2026-01",
        "invoice_id": None,
        "items": [],
        "cost": "0.00",
        "resale": "0.00",
        "margin": "0.00",
        "margin_rate": None,
    }


def test_without_a_period_the_latest_invoice(db):
    tenant, _a, _b, _june, july = worked_example()
    body = Api(tenant.keys["admin"]).get("/billing/margins").json()
    assert (body["period"], body["invoice_id"]) == ("2026-07", july.pk)


@pytest.mark.parametrize("period", ["2026-13", "2026-7", "July", "0000-01", "2026-07-01", " "])
def test_a_bad_period_is_refused(tenant, period):
    answer = Api(tenant.keys["admin"]).get("/billing/margins", period=period)
    assert answer.status_code == 422, answer.content
    assert "period" in answer.json()["detail"].lower()


def test_parse_period():
    assert parse_period("2026-07").isoformat() == "2026-07-01"
    assert parse_period(None) is None and parse_period("") is None
    with pytest.raises(Invalid):
        parse_period("2026-00")


@pytest.mark.parametrize("role", ["manager", "viewer"])
def test_managers_and_viewers_may_not_read_margins(tenant, role):
    assert Api(tenant.keys[role]).get("/billing/margins").status_code == 403
    with pytest.raises(Forbidden):
        margins_for_period(principal=tenant.principal(role), period=None)


def test_margins_are_read_in_a_fixed_number_of_queries(db):
    tenant, *_ = worked_example()
    partner = tenant.partner
    principal = tenant.principal("admin")
    with CaptureQueriesContext(connection) as small:
        margins_for_period(principal=principal, period=parse_period("2026-07"))
    subs = [make_sub_account(partner, f"More {i}") for i in range(8)]
    lines = lines_at(partner, "2026-07-02T09:00:00+00:00", 8)
    for line, sub in zip(lines, subs, strict=True):
        move(line, sub, "2026-07-02T09:05:00+00:00")
    set_resale(partner, "2026-07-03T00:00:00+00:00", default="70.00")
    issue(partner, 2026, 8)
    with CaptureQueriesContext(connection) as large:
        found = margins_for_period(principal=principal, period=parse_period("2026-08"))
    assert len(found.rows) >= 10
    assert len(large.captured_queries) == len(small.captured_queries) <= 4


def test_another_partners_margins_are_not_seen(db):
    worked_example()
    other = make_tenant("Other")
    body = Api(other.keys["admin"]).get("/billing/margins", period="2026-07").json()
    assert body["items"] == [] and body["invoice_id"] is None


# --- The page and its CSV -------------------------------------------------------------------


def _browser(tenant, role: str) -> Client:
    client = Client()
    email = f"{role}@{tenant.partner.slug}.example"
    user = User.objects.filter(email=email).first() or make_user(tenant.partner, email, role)
    client.force_login(user)
    return client


def test_the_page_shows_the_period_sorted_with_totals(db):
    tenant, *_ = worked_example()
    page = _browser(tenant, "billing").get("/billing/margins/", {"period": "2026-07"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "<h1>Margins</h1>" in html
    assert '<nav aria-label="Billing"' in html
    for figure in ("25.00", "40.00", "15.00", "37.5\u00a0%", "137.50", "37.50"):
        assert figure in html, figure
    assert '<option value="2026-07" selected>July 2026</option>' in html
    # Sorted by margin, largest first: B (22.50) before A (15.00).
    by_margin = _browser(tenant, "admin").get(
        "/billing/margins/", {"period": "2026-07", "sort": "-margin"}
    )
    text = by_margin.content.decode()
    assert text.index(">B</a>") < text.index(">A</a>")
    assert 'aria-sort="descending"' in text
    by_name = (
        _browser(tenant, "admin")
        .get("/billing/margins/", {"period": "2026-07", "sort": "-name"})
        .content.decode()
    )
    assert by_name.index(">B</a>") < by_name.index(">A</a>")


def test_the_page_says_when_a_period_has_no_invoice(db):
    tenant, *_ = worked_example()
    html = _browser(tenant, "admin").get("/billing/margins/", {"period": "2025-01"}).content
    assert b"No invoice for January 2025" in html


def test_the_csv_has_every_row_in_the_pages_order(db):
    tenant, _a, b, *_ = worked_example(a_name="=cmd|A")
    client = _browser(tenant, "admin")
    answer = client.get("/billing/margins/csv", {"period": "2026-07", "sort": "-margin"})
    assert answer.status_code == 200
    assert answer["Content-Disposition"] == 'attachment; filename="margins-2026-07.csv"'
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert rows[0] == [
        "period",
        "sub_account_id",
        "sub_account",
        "kind",
        "cost",
        "resale",
        "margin",
        "margin_rate",
        "currency",
    ]
    assert rows[1] == [
        *("2026-07", str(b.pk), "B", "standard"),
        *("75.00", "97.50", "22.50", "0.2308", "USD"),
    ]
    # A name a spreadsheet would run as a formula is written as text.
    assert rows[2][2] == "'=cmd|A" and rows[2][4:8] == ["25.00", "40.00", "15.00", "0.3750"]


@pytest.mark.parametrize("role", ["manager", "viewer"])
def test_other_roles_get_403_and_no_link(db, role):
    tenant, *_ = worked_example()
    client = _browser(tenant, role)
    assert client.get("/billing/margins/").status_code == 403
    assert client.get("/billing/margins/csv").status_code == 403
    assert client.get("/billing/resale/").status_code == 403
    if role == "manager":
        billing = client.get("/billing/").content.decode()
        assert "/billing/margins/" not in billing and "/billing/resale/" not in billing
