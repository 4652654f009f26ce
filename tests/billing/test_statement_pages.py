"""Billing → Statements without a browser: by period and by sub-account, one statement,
its files, the workspace's list, who sees what and the tenant wall (domain §8.1)."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from pypdf import PdfReader

from portal.accounts.services import staff_create
from portal.partners import choices
from portal.web.principal import ACTING_PARTNER_SESSION_KEY
from tests.billing.statement_history import many_statements, statement_history
from tests.factories import SYSTEM, make_sub_account, make_user

MISSING_ID = 987654321


def client_for(user, acting_for=None) -> Client:
    client = Client()
    client.force_login(user)
    if acting_for is not None:
        session = client.session
        session[ACTING_PARTNER_SESSION_KEY] = acting_for.pk
        session.save()
    return client


def admin_client(tenant) -> Client:
    return client_for(make_user(tenant.partner, "admin@acme.example", "admin"))


def urls(statement_id: int) -> list[str]:
    return [
        "/billing/statements/",
        f"/billing/statements/{statement_id}/",
        f"/billing/statements/{statement_id}/csv",
        f"/billing/statements/{statement_id}/pdf",
    ]


def rows(page: str) -> list[str]:
    """The statement table's body rows as text, cells joined by |."""
    body = page.split('class="statement-list', 1)[1].split("<tbody>", 1)[1].split("</tbody>")[0]
    out = []
    for row in re.findall(r"<tr>(.*?)</tr>", body, flags=re.S):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S)
        text = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", c)).strip() for c in cells]
        out.append(" | ".join(text))
    return out


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("admin", True), ("billing", True), ("manager", False), ("viewer", False)],
)
def test_roles(tenant, role, allowed):
    h = statement_history(tenant.partner)
    client = client_for(make_user(tenant.partner, f"{role}@acme.example", role))
    expected = 200 if allowed else 403
    assert [client.get(u).status_code for u in urls(h.statement(h.a, h.july).pk)] == [expected] * 4
    # Billing's sub-navigation offers Statements only to those who may open it.
    billing = client.get("/billing/")
    if billing.status_code == 200:
        assert ('href="/billing/statements/"' in billing.content.decode()) == allowed
    workspace = client.get(f"/sub-accounts/{h.a.pk}/billing/")
    if workspace.status_code == 200:
        assert ("Statements of Client A" in workspace.content.decode()) == allowed


def test_the_latest_period_by_default_with_its_totals(tenant):
    h = statement_history(tenant.partner)
    page = admin_client(tenant).get("/billing/statements/").content.decode()
    assert '<h2 id="statements-h">July 2026</h2>' in page
    assert '<option value="2026-07" selected>July 2026</option>' in page
    assert '<option value="2026-06">June 2026</option>' in page
    listed = rows(page)
    assert listed[0].startswith(
        "Statement 2 of Client A – Sales for July 2026 | Client A – Sales CL-1001"
        " | 1 | 80.00 | \u221240.00 | 40.00 | Draft"
    )
    assert listed[1].startswith(
        "Statement 1 of Client B – Support for July 2026 | Client B – Support"
        " | 1 | 65.00 | 32.50 | 97.50 | Draft"
    )
    assert len(listed) == 2
    totals = page.split("<tfoot>", 1)[1]
    assert "Total of 2 statements" in totals and "137.50" in totals
    a_july = h.statement(h.a, h.july).pk
    assert f'href="/billing/statements/{a_july}/pdf" download' in page
    assert f'href="/billing/statements/{a_july}/csv" download' in page


def test_another_period_and_every_period(tenant):
    statement_history(tenant.partner)
    client = admin_client(tenant)
    june = client.get("/billing/statements/", {"period": "2026-06"}).content.decode()
    assert [r.split(" | ")[0] for r in rows(june)] == [
        "Statement 1 of Client A – Sales for June 2026"
    ]
    every = client.get("/billing/statements/", {"period": "all"}).content.decode()
    assert len(rows(every)) == 3
    assert '<th scope="col">Period</th>' in every
    empty = client.get("/billing/statements/", {"period": "2025-01"}).content.decode()
    assert "No statements in January 2025." in empty
    assert '<option value="2025-01" selected>January 2025</option>' in empty


def test_by_sub_account(tenant):
    h = statement_history(tenant.partner)
    client = admin_client(tenant)
    page = client.get("/billing/statements/", {"sub_account": h.a.pk}).content.decode()
    assert "Client A – Sales, every period" in page
    assert [r.split(" | ")[0] for r in rows(page)] == [
        "Statement 2 of Client A – Sales for July 2026",
        "Statement 1 of Client A – Sales for June 2026",
    ]
    assert f'<option value="{h.a.pk}" selected>Client A – Sales</option>' in page
    both = client.get("/billing/statements/", {"sub_account": h.b.pk, "period": "2026-06"})
    assert "No statements for Client B – Support in June 2026." in both.content.decode()


def test_a_typed_sub_account_name_when_there_are_too_many_for_a_select(tenant, monkeypatch):
    h = statement_history(tenant.partner)
    monkeypatch.setattr(choices, "SELECT_LIMIT", 1)
    client = admin_client(tenant)
    page = client.get(
        "/billing/statements/", {"sub_account": "client b – support", "period": "all"}
    )
    assert page.status_code == 200
    text = page.content.decode()
    assert [r.split(" | ")[0] for r in rows(text)] == [
        "Statement 1 of Client B – Support for July 2026"
    ]
    assert 'list="filter-sub-account-options"' in text
    assert f'value="{h.b.name}"' in text
    unknown = client.get("/billing/statements/", {"sub_account": "Nobody", "period": "all"})
    assert unknown.status_code == 422
    assert "No active sub-account is named “Nobody”." in unknown.content.decode()
    assert rows(unknown.content.decode()) == ["Choose a sub-account from the suggestions."]


def test_bad_filters(tenant, other_tenant):
    theirs = statement_history(other_tenant.partner, "Rival A", "Rival B")
    client = admin_client(tenant)
    assert client.get("/billing/statements/", {"period": "2026-13"}).status_code == 422
    assert client.get("/billing/statements/", {"sub_account": theirs.a.pk}).status_code == 404
    assert client.get("/billing/statements/", {"sub_account": MISSING_ID}).status_code == 404


def test_no_statements_yet(tenant):
    page = admin_client(tenant).get("/billing/statements/").content.decode()
    assert "No statements yet." in page


def test_the_statement_page(tenant):
    h = statement_history(tenant.partner)
    statement = h.statement(h.a, h.july)
    page = admin_client(tenant).get(f"/billing/statements/{statement.pk}/").content.decode()
    for expected in (
        "Statement 2",
        "Acme Resellers",
        "Client A – Sales",
        "Priya Shah",
        "+1 415 555 0123",
        "Reference: CL-1001",
        "July 2026: 1 Jul 2026 – 31 Jul 2026",
        "80.00 USD a month",
        "Monthly charge",
        "Line moved out",
        "moved out on 16 June 2026: 15 of 30 days × 80.00",
        "Adjustments for June 2026",
        "\u221240.00",
        "Download PDF",
        "Download CSV",
    ):
        assert expected in page, expected
    assert "50.00" not in page  # never the provider's price


def test_the_page_downloads_the_same_files_as_the_api(tenant):
    h = statement_history(tenant.partner)
    statement = h.statement(h.b, h.july)
    client = admin_client(tenant)
    response = client.get(f"/billing/statements/{statement.pk}/csv")
    assert response["Content-Disposition"] == (
        'attachment; filename="statement-1-2026-07-client-b-support.csv"'
    )
    rows_ = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [r[4] for r in rows_[1:]] == ["recurring", "move_charge"]
    pdf = client.get(f"/billing/statements/{statement.pk}/pdf")
    assert pdf["Content-Type"] == "application/pdf"
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "Client B – Support" in text and "97.50 USD" in text


def test_another_partners_statement_is_not_found(tenant, other_tenant):
    theirs = statement_history(other_tenant.partner, "Rival A", "Rival B")
    client = admin_client(tenant)
    own = theirs.statement(theirs.a, theirs.july).pk
    assert [client.get(u).status_code for u in urls(own)[1:]] == [404, 404, 404]
    assert "Rival" not in client.get("/billing/statements/", {"period": "all"}).content.decode()


def test_staff_acting_for_a_partner(tenant, other_tenant):
    h = statement_history(tenant.partner)
    theirs = statement_history(other_tenant.partner, "Rival A", "Rival B")
    staff = staff_create(principal=SYSTEM, email="ops@provider.example", password="x-pass-1234")
    acting = client_for(staff, acting_for=tenant.partner)
    assert [acting.get(u).status_code for u in urls(h.statement(h.a, h.july).pk)] == [200] * 4
    assert (
        acting.get(f"/billing/statements/{theirs.statement(theirs.a, theirs.july).pk}/").status_code
        == 404
    )


def test_the_workspace_lists_its_own_statements(tenant):
    h = statement_history(tenant.partner)
    client = admin_client(tenant)
    page = client.get(f"/sub-accounts/{h.a.pk}/billing/").content.decode()
    section = page.split('id="statements-h"', 1)[1]
    assert 'July 2026</a> <span class="muted">statement 2</span>' in section
    assert 'June 2026</a> <span class="muted">statement 1</span>' in section
    assert "Client B" not in section
    other = make_sub_account(tenant.partner, "No Price – Sales")
    empty = client.get(f"/sub-accounts/{other.pk}/billing/").content.decode()
    assert "No statement for No Price – Sales yet" in empty


def test_the_list_runs_the_same_queries_for_one_statement_or_many(tenant):
    statement_history(tenant.partner)
    august = many_statements(tenant.partner)
    assert august.statements.count() == 12
    client = admin_client(tenant)
    client.get("/billing/statements/")

    def queries(**query) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/billing/statements/", query).status_code == 200
        return len(ctx.captured_queries)

    assert queries(period="2026-06") == queries(period="2026-08") == queries(period="all")
