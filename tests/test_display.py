"""Times and money as people read them (issue 18, points 5 and 12).

**Times**: every time on pages, PDFs, emails and refusals is in the partner's
timezone and says which; a page and its PDF show the same local time. **Money**:
one format with thousands separators and the currency's minor units, staff pages
included.
"""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client
from pypdf import PdfReader

from portal.accounts.services import staff_create
from portal.billing.invoicing import invoice_issue
from portal.billing.models import Invoice
from portal.billing.money import format_amount, format_money
from portal.billing.periods import Cycle
from portal.core.clock import frozen_at
from portal.core.localtime import format_local
from portal.core.principal import Principal
from portal.lines.services import line_move, line_order_create
from portal.partners.selectors import available_pool
from portal.web.principal import ACTING_PARTNER_SESSION_KEY
from portal.workflows.services.deletions import deletion_request_approve, deletion_request_create
from portal.workflows.services.merges import merge_request_create
from tests.factories import SYSTEM, make_lines, make_sub_account, make_tenant, make_user

NY = "America/New_York"
# 21:43 UTC on 1 and 5 December 2026 is 16:43 in New York (EST, UTC−5).
ISSUED = dt.datetime(2026, 12, 1, 21, 43, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 12, 5, 21, 43, tzinfo=dt.UTC)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.fixture
def ny(db):
    """A New York partner with two sub-accounts, a line in A since November and the
    December invoice issued at 21:43 UTC."""
    tenant = make_tenant("Big Apple Resellers", timezone=NY, line_price=Decimal("14800.00"))
    partner = tenant.partner
    a = make_sub_account(partner, "Client A – Sales")
    b = make_sub_account(partner, "Client B – Support")
    with frozen_at(utc(2026, 11, 10, 14, 5)):
        (line,) = make_lines(partner, 1)
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=a.pk)
    with frozen_at(ISSUED):
        invoice = invoice_issue(principal=SYSTEM, partner=partner, cycle=Cycle(2026, 12, NY))
    user = make_user(partner, "admin@bigapple.example", "admin")
    client = Client()
    client.force_login(user)
    return {
        "partner": partner,
        "a": a,
        "b": b,
        "line": line,
        "invoice": invoice,
        "user": user,
        "client": client,
    }


def page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.content[:300]
    return response.content.decode()


def pdf_text(client: Client, invoice: Invoice) -> str:
    response = client.get(f"/invoices/{invoice.pk}/pdf")
    assert response.status_code == 200
    reader = PdfReader(io.BytesIO(response.content))
    return "\n".join(p.extract_text() for p in reader.pages)


# --- the one formatter -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "tz", "shown"),
    [
        (utc(2026, 12, 5, 21, 43), NY, "5 Dec 2026, 16:43 EST"),
        (utc(2026, 7, 5, 21, 43), NY, "5 Jul 2026, 17:43 EDT"),
        (utc(2026, 12, 5, 21, 43), "UTC", "5 Dec 2026, 21:43 UTC"),
        (utc(2026, 12, 5, 21, 43), None, "5 Dec 2026, 21:43 UTC"),
        (utc(2026, 12, 5, 21, 43), "Europe/London", "5 Dec 2026, 21:43 GMT"),
        # No abbreviation in the zone database: the offset, never a bare "+04".
        (utc(2026, 12, 5, 21, 43), "Asia/Dubai", "6 Dec 2026, 01:43 UTC+04"),
        (utc(2026, 12, 5, 21, 43), "America/Sao_Paulo", "5 Dec 2026, 18:43 UTC\u221203"),
        (utc(2026, 12, 5, 21, 43), "Asia/Kathmandu", "6 Dec 2026, 03:28 UTC+05:45"),
    ],
)
def test_a_time_is_local_and_says_its_zone(instant, tz, shown):
    assert format_local(instant, tz) == shown


def test_seconds_when_asked():
    assert format_local(utc(2026, 12, 5, 21, 43, 7), NY, seconds=True) == "5 Dec 2026, 16:43:07 EST"


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError):
        format_local(dt.datetime(2026, 12, 5, 21, 43), NY)


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        ("14800", "USD", "14,800.00 USD"),
        ("1234567.891", "EUR", "1,234,567.89 EUR"),
        ("1480000", "JPY", "1,480,000 JPY"),
        ("1480000.5", "jpy", "1,480,001 JPY"),
        ("-25", "USD", "\u221225.00 USD"),
        ("-0.004", "USD", "0.00 USD"),
        ("1234.5", "KWD", "1,234.500 KWD"),
    ],
)
def test_money_has_separators_and_the_currency_minor_units(amount, currency, shown):
    assert format_money(Decimal(amount), currency) == shown
    assert format_amount(Decimal(amount), currency) == shown.rsplit(" ", 1)[0]


# --- pages, PDF, email and refusals -----------------------------------------------------


def test_the_invoice_page_and_its_pdf_show_the_same_local_time(ny):
    client, invoice = ny["client"], ny["invoice"]
    shown = "1 Dec 2026, 16:43 EST"
    assert shown in page(client, f"/invoices/{invoice.pk}/")
    assert shown in pdf_text(client, invoice)
    assert "21:43" not in pdf_text(client, invoice)


def test_billing_says_as_of_in_local_time(ny):
    with frozen_at(NOW):
        html = page(ny["client"], "/billing/")
    assert "5 Dec 2026, 16:43 EST" in html
    assert "21:43" not in html


def test_line_orders_show_local_time(ny):
    html = page(ny["client"], "/lines/orders/")
    assert "10 Nov 2026, 09:05 EST" in html


def test_requests_show_local_time(ny):
    principal = SYSTEM.acting_for(ny["partner"].pk)
    with frozen_at(NOW):
        merge = merge_request_create(
            principal=principal, source_ids=[ny["b"].pk], target_id=ny["a"].pk
        )
    client = ny["client"]
    assert "5 Dec 2026, 16:43 EST" in page(client, "/requests/")
    assert "5 Dec 2026, 16:43 EST" in page(client, f"/requests/merge/{merge.pk}/")


def test_the_deletion_email_gives_the_purge_time_in_local_time(
    ny, django_capture_on_commit_callbacks
):
    principal = Principal.for_user(ny["user"])
    with frozen_at(NOW):
        request = deletion_request_create(principal=principal, sub_account_id=ny["b"].pk)
        with django_capture_on_commit_callbacks(execute=True):
            approved = deletion_request_approve(principal=SYSTEM, request_id=request.pk)
    shown = format_local(approved.purge_after, NY)
    assert shown.endswith(" EST")
    bodies = [m.body for m in mail.outbox]
    assert any(shown in body for body in bodies), bodies


def test_a_stale_move_refusal_gives_the_local_time(ny):
    with frozen_at(utc(2026, 12, 5, 23, 48)):
        line_move(principal=SYSTEM, line_id=ny["line"].pk, sub_account_id=ny["b"].pk)
    response = ny["client"].post(
        f"/lines/{ny['line'].pk}/move/",
        {"sub_account": available_pool(ny["partner"].pk).pk, "from_sub_account": ny["a"].pk},
        headers={"HX-Request": "true"},
    )
    assert "5 Dec 2026, 18:48 EST" in response.content.decode(), response.content[:500]


def test_staff_pages_show_money_with_separators_and_times_in_the_partners_zone(ny):
    staff = staff_create(principal=SYSTEM, email="ops@provider.example", password="x-pass-1234")
    client = Client()
    client.force_login(staff)
    html = page(client, f"/staff/partners/{ny['partner'].slug}/billing/")
    assert "14,800.00 USD" in html
    assert "14800.00 USD" not in html


def test_staff_wide_lists_say_utc(ny):
    with frozen_at(NOW):
        line_order_create(
            principal=SYSTEM.acting_for(ny["partner"].pk), quantity=3, area_code="999"
        )
    staff = staff_create(principal=SYSTEM, email="ops@provider.example", password="x-pass-1234")
    client = Client()
    client.force_login(staff)
    session = client.session
    session[ACTING_PARTNER_SESSION_KEY] = ny["partner"].pk
    session.save()
    assert "5 Dec 2026, 21:43 UTC" in page(client, "/staff/line-orders/")


def test_a_jpy_partner_sees_whole_yen(db):
    tenant = make_tenant(
        "Tokyo Resellers", timezone="Asia/Tokyo", currency="JPY", line_price=Decimal("1480000")
    )
    staff = staff_create(principal=SYSTEM, email="ops@provider.example", password="x-pass-1234")
    client = Client()
    client.force_login(staff)
    html = page(client, f"/staff/partners/{tenant.partner.slug}/billing/")
    assert "1,480,000 JPY" in html
