"""Billing pages without a browser: who sees what, tenant walls, and a CSV that runs nothing."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.test import Client

from portal.accounts.services import staff_create
from portal.billing.models import Invoice
from portal.billing.periods import Cycle
from portal.billing.services import invoice_issue
from portal.billing.views import csv_safe, money
from portal.core.clock import frozen_at
from portal.lines.services import line_move
from portal.web.principal import ACTING_PARTNER_SESSION_KEY
from tests.factories import SYSTEM, make_lines, make_sub_account, make_user


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    """No collectstatic in tests: serve assets by their plain names."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


URLS = ("/billing/", "/invoices/", "/invoices/{id}/", "/invoices/{id}/csv")


def issue(partner, year: int, month: int) -> Invoice:
    partner.refresh_from_db()
    cycle = Cycle(year, month, partner.timezone)
    with frozen_at(cycle.start):
        return invoice_issue(principal=SYSTEM, partner=partner, cycle=cycle)


def history(partner, a_name: str = "Client A", b_name: str = "Client B") -> Invoice:
    """Two lines in A from April; one moves to B on June 16; the July invoice."""
    a = make_sub_account(partner, a_name)
    b = make_sub_account(partner, b_name)
    with frozen_at(dt.datetime(2026, 4, 10, 9, tzinfo=dt.UTC)):
        lines = make_lines(partner, 2)
        for line in lines:
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=a.pk)
    issue(partner, 2026, 6)
    with frozen_at(dt.datetime(2026, 6, 16, 12, tzinfo=dt.UTC)):
        line_move(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=b.pk)
    return issue(partner, 2026, 7)


def client_for(user, acting_for=None) -> Client:
    client = Client()
    client.force_login(user)
    if acting_for is not None:
        session = client.session
        session[ACTING_PARTNER_SESSION_KEY] = acting_for.pk
        session.save()
    return client


def statuses(client: Client, invoice: Invoice) -> list[int]:
    return [client.get(url.format(id=invoice.pk)).status_code for url in URLS]


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("admin", [200, 200, 200, 200]),
        ("billing", [200, 200, 200, 200]),
        ("manager", [200, 403, 403, 403]),
        ("viewer", [403, 403, 403, 403]),
    ],
)
def test_roles(tenant, role, expected):
    invoice = history(tenant.partner)
    user = make_user(tenant.partner, f"{role}@acme.example", role)
    client = client_for(user)
    assert statuses(client, invoice) == expected
    nav = client.get("/sub-accounts/").content.decode()
    assert ('href="/billing/"' in nav) == (expected[0] == 200)
    assert ('href="/invoices/"' in nav) == (expected[1] == 200)


def test_another_partners_invoice_is_not_found(tenant, other_tenant):
    theirs = history(other_tenant.partner)
    client = client_for(make_user(tenant.partner, "admin@acme.example", "admin"))
    assert [client.get(u.format(id=theirs.pk)).status_code for u in URLS[2:]] == [404, 404]
    assert b"Invoice 1" not in client.get("/invoices/").content


def test_staff_act_for_a_partner(tenant, other_tenant):
    invoice = history(tenant.partner)
    theirs = history(other_tenant.partner, "Rival A", "Rival B")
    staff = staff_create(principal=SYSTEM, email="ops@provider.example", password="x-pass-1234")
    # Not acting for anyone yet: asked to choose a partner first.
    response = client_for(staff).get("/billing/")
    assert response.status_code == 200
    assert b"Choose" in response.content or b"choose" in response.content
    acting = client_for(staff, acting_for=tenant.partner)
    assert statuses(acting, invoice) == [200, 200, 200, 200]
    assert acting.get(f"/invoices/{theirs.pk}/").status_code == 404


def test_the_summary_and_the_invoice_page_show_the_worked_example(tenant):
    invoice = history(tenant.partner)
    client = client_for(make_user(tenant.partner, "admin@acme.example", "admin"))
    summary = client.get("/billing/").content.decode()
    assert "Available" in summary and "unassigned lines" in summary
    assert "Client A" in summary and "Client B" in summary
    page = client.get(f"/invoices/{invoice.pk}/").content.decode()
    assert "<details>" in page and "Explain" in page
    assert "\u221225.00" in page  # A's move credit
    assert "50.00 × 15/30 days" in page


def test_csv_neutralises_formulas_and_keeps_amounts_numeric(tenant):
    evil = '=HYPERLINK("http://evil.example","click")'
    invoice = history(tenant.partner, a_name=evil, b_name="@SUM(1+1)")
    client = client_for(make_user(tenant.partner, "billing@acme.example", "billing"))
    response = client.get(f"/invoices/{invoice.pk}/csv")
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert {r["section"] for r in rows} == {"'" + evil, "'@SUM(1+1)"}
    assert {r["other_sub_account"] for r in rows} >= {"'" + evil, "'@SUM(1+1)"}
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "@", "\t", "\r")), row
        assert row["description"].startswith("'") or not row["description"].startswith("-")
    amounts = [r["amount"] for r in rows]
    assert "-25.00" in amounts  # a plain negative number stays a number
    assert sum(Decimal(a) for a in amounts) == invoice.total


def test_csv_safe_and_money():
    assert csv_safe("-1+2") == "'-1+2"
    assert csv_safe("\tx") == "'\tx"
    assert csv_safe("Client") == "Client"
    assert money(Decimal("-1234.5"), "USD") == "\u22121,234.50"
    assert money(Decimal("1234.5"), "JPY") == "1,235"
    assert money(Decimal("1.2345"), "KWD") == "1.235"
