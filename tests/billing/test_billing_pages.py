"""Billing pages without a browser: who sees what, tenant walls, and a CSV that runs nothing."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from pypdf import PdfReader

from portal.accounts.services import staff_create
from portal.billing import views
from portal.billing.models import Invoice, InvoiceSection
from portal.billing.money import format_amount as money
from portal.billing.selectors import invoice_section_sums
from portal.billing.terms import credit_grant, discount_grant
from portal.core.clock import frozen_at
from portal.core.text import csv_safe
from portal.lines.services import line_move
from portal.web.principal import ACTING_PARTNER_SESSION_KEY
from tests.factories import SYSTEM, issue_invoice, make_lines, make_sub_account, make_user


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    """No collectstatic in tests: serve assets by their plain names."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


URLS = ("/billing/", "/invoices/", "/invoices/{id}/", "/invoices/{id}/csv")


def history(partner, a_name: str = "Client A", b_name: str = "Client B") -> Invoice:
    """Two lines in A from April; one moves to B on June 16; the July invoice."""
    a = make_sub_account(partner, a_name)
    b = make_sub_account(partner, b_name)
    with frozen_at(dt.datetime(2026, 4, 10, 9, tzinfo=dt.UTC)):
        lines = make_lines(partner, 2)
        for line in lines:
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=a.pk)
    issue_invoice(partner, 2026, 6)
    with frozen_at(dt.datetime(2026, 6, 16, 12, tzinfo=dt.UTC)):
        line_move(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=b.pk)
    return issue_invoice(partner, 2026, 7)


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
    assert "Summary by sub-account" in page
    # Few sections: each row links to its items below, on the same page.
    a = invoice.sections.get(name="Client A")
    assert f'href="#section-{a.sub_account_id}">Client A</a>' in page
    assert f'id="section-{a.sub_account_id}"' in page
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


# --- The invoice's summary table and its sections (issue 18, point 3) --------------------


def amount(text: str) -> Decimal:
    """A figure as the pages show it (``−1,234.50``) read back."""
    return Decimal(text.replace(",", "").replace("\u2212", "-").strip())


def totals_row(page: str) -> list[str]:
    """The figures of the summary table's totals row, in column order."""
    row = re.search(r'<tr class="totals">(.*?)</tr>', page, re.S)
    assert row is not None
    return [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(r"<td[^>]*>(.*?)</td>", row[1], re.S)
    ]


def summary_rows(page: str) -> list[list[str]]:
    table = re.search(r'<table class="invoice-summary.*?<tbody>(.*?)</tbody>', page, re.S)
    assert table is not None
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        ]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table[1], re.S)
    ]


def test_the_summary_adds_up_to_the_invoice_total_with_discounts_and_credits(tenant):
    partner = tenant.partner
    a = make_sub_account(partner, "Client A")
    b = make_sub_account(partner, "Client B")
    with frozen_at(dt.datetime(2026, 4, 10, 9, tzinfo=dt.UTC)):
        lines = make_lines(partner, 3)
        for line, to in zip(lines, (a, a, b), strict=True):
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=to.pk)
    issue_invoice(partner, 2026, 6)
    with frozen_at(dt.datetime(2026, 6, 16, 12, tzinfo=dt.UTC)):
        line_move(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=b.pk)
    with frozen_at(dt.datetime(2026, 6, 20, tzinfo=dt.UTC)):
        discount_grant(
            principal=SYSTEM.acting_for(partner.pk), kind="percent", value="10", cycles=1
        )
        discount_grant(
            principal=SYSTEM.acting_for(partner.pk), kind="amount", value="3", sub_account_id=b.pk
        )
        credit_grant(principal=SYSTEM.acting_for(partner.pk), amount="33.33", reason="Outage")
        credit_grant(
            principal=SYSTEM.acting_for(partner.pk),
            amount="7",
            reason="Goodwill",
            sub_account_id=a.pk,
        )
    july = issue_invoice(partner, 2026, 7)
    sums = invoice_section_sums(july)
    assert sums.discounts < 0 and sums.credits < 0 and sums.prorations == 0  # −25 + 25
    assert sums.total == july.total
    assert sums.recurring + sums.prorations + sums.discounts + sums.credits == july.total
    assert sums.count == 2 and sums.line_quantity == 3

    client = client_for(make_user(partner, "billing@acme.example", "billing"))
    page = client.get(f"/invoices/{july.pk}/").content.decode()
    rows = summary_rows(page)
    sections = list(InvoiceSection.objects.filter(invoice=july).order_by("position"))
    assert [r[0] for r in rows] == [s.name for s in sections] == ["Client A", "Client B"]
    for row, s in zip(rows, sections, strict=True):
        assert int(row[1]) == s.line_quantity
        assert [amount(x) for x in row[2:]] == [
            s.recurring,
            s.prorations,
            s.discounts,
            s.credits,
            s.total,
        ]
    # The totals row is the column sums, and its total the invoice's, to the cent.
    foot = totals_row(page)
    assert int(foot[0]) == 3
    assert [amount(x) for x in foot[1:]] == [
        sums.recurring,
        sums.prorations,
        sums.discounts,
        sums.credits,
        july.total,
    ]
    assert sum((amount(r[-1]) for r in rows), Decimal(0)) == july.total
    # The PDF's summary ends with the same totals row.
    pdf = PdfReader(io.BytesIO(client.get(f"/invoices/{july.pk}/pdf").content))
    text = "\n".join(p.extract_text() for p in pdf.pages)
    assert f"Invoice total (USD) {' '.join(foot)}" in text


def test_a_section_has_a_page_of_its_own(tenant, other_tenant):
    invoice = history(tenant.partner)
    theirs = history(other_tenant.partner, "Rival A", "Rival B")
    a = invoice.sections.get(name="Client A")
    url = f"/invoices/{invoice.pk}/sections/{a.sub_account_id}/"
    admin = client_for(make_user(tenant.partner, "admin@acme.example", "admin"))
    page = admin.get(url).content.decode()
    assert "<h1>Client A</h1>" in page
    assert "50.00 × 15/30 days" in page and "\u221225.00" in page
    assert "Total of Client A" in page
    assert f'href="/invoices/{invoice.pk}/"' in page  # back to the invoice
    # Another partner's section, a sub-account without one, a wrong invoice: not found.
    rival = theirs.sections.get(name="Rival A")
    assert admin.get(f"/invoices/{theirs.pk}/sections/{rival.sub_account_id}/").status_code == 404
    assert admin.get(f"/invoices/{invoice.pk}/sections/{rival.sub_account_id}/").status_code == 404
    assert admin.get(f"/invoices/{theirs.pk}/sections/{a.sub_account_id}/").status_code == 404
    huge = f"/invoices/{invoice.pk}/sections/{2**70}/"
    assert admin.get(huge).status_code == 404
    manager = client_for(make_user(tenant.partner, "manager@acme.example", "manager"))
    assert manager.get(url).status_code == 403


def test_a_large_invoice_links_each_row_to_its_section_page(tenant, monkeypatch):
    invoice = history(tenant.partner)
    monkeypatch.setattr(views, "INLINE_SECTIONS", 1)  # two sections: too many to inline
    monkeypatch.setattr(views, "SECTION_PAGE_SIZE", 1)
    client = client_for(make_user(tenant.partner, "admin@acme.example", "admin"))
    page = client.get(f"/invoices/{invoice.pk}/").content.decode()
    first = invoice.sections.order_by("position").first()
    assert f'href="/invoices/{invoice.pk}/sections/{first.sub_account_id}/">' in page
    assert "section-" not in page.split("</table>")[1]  # no items below the summary
    assert "Page 1 of 2" in page
    # Every page's totals row is the whole invoice's.
    second = client.get(f"/invoices/{invoice.pk}/?page=2").content.decode()
    assert len(summary_rows(second)) == 1
    assert amount(totals_row(second)[-1]) == invoice.total == amount(totals_row(page)[-1])


def test_the_invoice_page_runs_the_same_queries_whatever_its_size(tenant):
    """The invoice, the column sums, a page of sections and (few sections) their items."""
    partner = tenant.partner
    client = client_for(make_user(partner, "admin@acme.example", "admin"))

    def invoice_with(n: int, month: int) -> Invoice:
        """``n`` more sub-accounts with two lines each, new the month before (prorations),
        and ``n`` more lines in the first."""
        subs = [make_sub_account(partner) for _ in range(n)]
        with frozen_at(dt.datetime(2026, month - 1, 10, tzinfo=dt.UTC)):
            for line, sa in zip(make_lines(partner, 3 * n), subs * 2 + [subs[0]] * n, strict=True):
                line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=sa.pk)
        return issue_invoice(partner, 2026, month)

    def count(path: str) -> int:
        client.get(path)
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(path)
        assert response.status_code == 200
        return len(ctx.captured_queries)

    small = invoice_with(2, 2)
    issue_invoice(partner, 2026, 3)
    large = invoice_with(20, 4)
    assert small.sections.count() < large.sections.count() <= views.INLINE_SECTIONS
    inline = count(f"/invoices/{small.pk}/")
    assert count(f"/invoices/{large.pk}/") == inline
    biggest = [i.sections.order_by("-line_quantity", "pk").first() for i in (small, large)]
    assert biggest[1].items.count() > biggest[0].items.count()
    sections = {count(f"/invoices/{s.invoice_id}/sections/{s.sub_account_id}/") for s in biggest}
    assert len(sections) == 1


def test_a_large_invoice_page_runs_no_more_queries(tenant, monkeypatch):
    invoice = history(tenant.partner)
    client = client_for(make_user(tenant.partner, "admin@acme.example", "admin"))
    path = f"/invoices/{invoice.pk}/"

    def count() -> int:
        client.get(path)
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(path).status_code == 200
        return len(ctx.captured_queries)

    inline = count()
    monkeypatch.setattr(views, "INLINE_SECTIONS", 1)
    assert count() == inline - 1  # no items read: each row links to its section's page


# --- Billing's lines columns (issue 18, point 4) ------------------------------------------


def moved_after_the_start(partner):
    """Three lines in Available since April; July's invoice; all three move to C on July 10,
    and a new line comes into Available on July 11."""
    c = make_sub_account(partner, "Client C")
    with frozen_at(dt.datetime(2026, 4, 10, 9, tzinfo=dt.UTC)):
        lines = make_lines(partner, 3)
    july = issue_invoice(partner, 2026, 7)
    with frozen_at(dt.datetime(2026, 7, 10, 12, tzinfo=dt.UTC)):
        for line in lines:
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=c.pk)
    with frozen_at(dt.datetime(2026, 7, 11, 12, tzinfo=dt.UTC)):
        make_lines(partner, 1)
    return c, july


def test_billing_shows_lines_at_the_cycle_start_and_now(tenant):
    from portal.billing.summary import billing_summary

    client_c, july = moved_after_the_start(tenant.partner)
    now = dt.datetime(2026, 7, 12, 12, tzinfo=dt.UTC)
    summary = billing_summary(principal=tenant.principal("admin"), now=now)
    rows = {r.name: r for r in summary.rows}
    assert (rows["Client C"].line_count, rows["Client C"].lines_now) == (0, 3)
    assert (rows["Available"].line_count, rows["Available"].lines_now) == (3, 1)
    accruing = sum((r.accruing_prorations for r in summary.rows), Decimal(0))
    assert accruing > 0  # the new line's (the moves' charges and credits cancel)
    assert summary.total - accruing == july.total

    client = client_for(make_user(tenant.partner, "admin@acme.example", "admin"))
    with frozen_at(now):
        page = client.get("/billing/").content.decode()
    assert '<th scope="col" class="num">Lines at cycle start</th>' in page
    assert '<th scope="col" class="num">Lines now</th>' in page
    row = re.search(
        r'<tr>\s*<th scope="row"><a href="(?P<href>[^"]+)">Client C</a></th>(?P<cells>.*?)</tr>',
        page,
        re.S,
    )
    assert row is not None
    assert row["href"] == f"/sub-accounts/{client_c.pk}/billing/"  # its workspace's Billing tab
    cells = re.findall(r'data-label="([^"]+)">(?:<strong>)?([^<]*)', row["cells"])
    assert cells[:2] == [("Lines at cycle start", "0"), ("Lines now", "3")]
    # The note says how the total relates to the invoice, in figures.
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page))
    assert f"is {money(july.total, 'USD')} USD charged on invoice {july.number}, issued" in text
    assert f"plus {money(accruing, 'USD')} USD accruing so far" in text
    assert "which the invoice for August 2026 will charge" in text
