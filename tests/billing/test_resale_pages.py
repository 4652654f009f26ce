"""Billing → Resale prices without a browser: the default's form, the table edited in
place (HTMX posts one row and gets the row back), search and pages, who may open it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal.accounts.models import User
from portal.billing.models import ResalePriceChange
from portal.billing.resale import resale_default_set, resale_settings
from portal.core.clock import frozen_at
from portal.partners.selectors import available_pool
from tests.factories import db_snapshot, make_sub_account, make_user

JULY_10 = dt.datetime(2026, 7, 10, 12, tzinfo=dt.UTC)
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "resale-row"}


def browser(tenant, role: str = "admin") -> Client:
    client = Client()
    email = f"{role}@{tenant.partner.slug}.example"
    user = User.objects.filter(email=email).first() or make_user(tenant.partner, email, role)
    client.force_login(user)
    return client


def test_the_page_shows_this_cycle_and_the_next(tenant):
    a = make_sub_account(tenant.partner, "Alpha")
    make_sub_account(tenant.partner, "Beta")
    with frozen_at(JULY_10 - dt.timedelta(days=30)):  # June: in force in July
        resale_default_set(principal=tenant.principal("admin"), price="65.00")
    client = browser(tenant)
    with frozen_at(JULY_10):
        client.post(f"/billing/resale/{a.pk}/", {"resale_price": "80"}, **HTMX)
        page = client.get("/billing/resale/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<h1>Resale prices</h1>" in html
    assert 'href="/billing/resale/" aria-current="page">Resale prices</a>' in html
    assert 'value="65.00"' in html  # the default's field
    assert "July 2026" in html and "August 2026" in html
    alpha = html[html.index(f'id="resale-row-{a.pk}"') :]
    alpha = alpha[: alpha.index("</tr>")]
    # July keeps the default; August takes Alpha's own price.
    assert '65.00 <span class="muted">(default)</span>' in alpha
    assert 'value="80.00"' in alpha
    assert "80.00" in alpha and "from August 2026" in alpha
    assert "Available" not in html.split("<tbody>")[1].split("</tbody>")[0]


def test_a_row_saves_in_place_and_comes_back(tenant):
    a = make_sub_account(tenant.partner, "Alpha")
    client = browser(tenant, "billing")
    with frozen_at(JULY_10):
        answer = client.post(f"/billing/resale/{a.pk}/", {"resale_price": " 80.5 "}, **HTMX)
    assert answer.status_code == 200
    row = answer.content.decode()
    assert row.strip().startswith(f'<tr id="resale-row-{a.pk}">')
    assert 'value="80.50"' in row and "from August 2026" in row
    assert resale_settings(tenant.partner.pk).override_of(a.pk) == Decimal("80.50")
    # Emptied: back to the default (none here), from August again.
    with frozen_at(JULY_10):
        cleared = client.post(f"/billing/resale/{a.pk}/", {"resale_price": ""}, **HTMX)
    assert 'value=""' in cleared.content.decode()
    assert resale_settings(tenant.partner.pk).override_of(a.pk) is None


@pytest.mark.parametrize("typed", ["-1", "80.001", "eighty", "1" * 40])
def test_a_refused_price_shows_in_its_row_and_changes_nothing(tenant, typed):
    a = make_sub_account(tenant.partner, "Alpha")
    client = browser(tenant)
    before = db_snapshot()
    answer = client.post(f"/billing/resale/{a.pk}/", {"resale_price": typed}, **HTMX)
    assert answer.status_code == 422
    row = answer.content.decode()
    assert 'aria-invalid="true"' in row and 'role="alert"' in row
    assert f'value="{typed}"' in row  # what was typed stays, to correct it
    assert db_snapshot() == before


def test_without_javascript_a_row_posts_and_the_page_comes_back(tenant):
    a = make_sub_account(tenant.partner, "Alpha")
    client = browser(tenant)
    answer = client.post(f"/billing/resale/{a.pk}/", {"resale_price": "70"}, follow=True)
    assert answer.redirect_chain[-1][0] == "/billing/resale/"
    assert "Resale price of Alpha saved." in answer.content.decode()
    refused = client.post(f"/billing/resale/{a.pk}/", {"resale_price": "-3"}, follow=True)
    assert "Alpha: Resale price must be" in refused.content.decode()


def test_the_default_form(tenant):
    client = browser(tenant)
    with frozen_at(JULY_10):
        saved = client.post("/billing/resale/", {"default_resale_price": "65"}, follow=True)
    assert "Default resale price 65.00 USD from August 2026." in saved.content.decode()
    assert resale_settings(tenant.partner.pk).default == Decimal("65.00")
    before = db_snapshot()
    refused = client.post("/billing/resale/", {"default_resale_price": "-65"})
    assert refused.status_code == 422
    assert "Resale price must be between 0 and 99999999." in refused.content.decode()
    assert db_snapshot() == before
    with frozen_at(JULY_10):
        cleared = client.post("/billing/resale/", {"default_resale_price": ""}, follow=True)
    assert "Default resale price cleared from August 2026." in cleared.content.decode()


def test_search_and_pages_for_many_sub_accounts(tenant):
    for i in range(60):
        make_sub_account(tenant.partner, f"Client {i:02d}")
    make_sub_account(tenant.partner, "Zeta Unique")
    client = browser(tenant)
    first = client.get("/billing/resale/").content.decode()
    assert "Page 1 of 2" in first and "Client 00" in first and "Client 55" not in first
    second = client.get("/billing/resale/", {"page": 2}).content.decode()
    assert "Client 55" in second and "Zeta Unique" in second
    found = client.get(
        "/billing/resale/", {"q": "zeta"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="results"
    )
    text = found.content.decode()
    assert text.strip().startswith('<div id="results">')
    assert "Zeta Unique" in text and "Client 00" not in text


def test_the_page_reads_a_fixed_number_of_queries(tenant):
    for i in range(3):
        make_sub_account(tenant.partner, f"First {i}")
    client = browser(tenant)
    client.get("/billing/resale/")

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/billing/resale/").status_code == 200
        return len(ctx.captured_queries)

    few = count()
    for i in range(30):
        make_sub_account(tenant.partner, f"Client {i}")
    assert count() == few


def test_available_and_another_partners_sub_accounts(tenant, other_tenant):
    client = browser(tenant)
    theirs = make_sub_account(other_tenant.partner, "Theirs")
    pool = available_pool(tenant.partner.pk)
    before = db_snapshot()
    foreign = client.post(f"/billing/resale/{theirs.pk}/", {"resale_price": "1"}, **HTMX)
    assert foreign.status_code == 404
    refused = client.post(f"/billing/resale/{pool.pk}/", {"resale_price": "1"}, **HTMX)
    assert refused.status_code == 422
    assert "The Available pool has no resale price." in refused.content.decode()
    assert db_snapshot() == before
    assert not ResalePriceChange.objects.exists()


@pytest.mark.parametrize("role", ["manager", "viewer"])
def test_other_roles_get_403_and_no_link(tenant, role):
    a = make_sub_account(tenant.partner, "Alpha")
    client = browser(tenant, role)
    assert client.get("/billing/resale/").status_code == 403
    before = db_snapshot()
    assert client.post(f"/billing/resale/{a.pk}/", {"resale_price": "1"}, **HTMX).status_code == 403
    assert client.post("/billing/resale/", {"default_resale_price": "1"}).status_code == 403
    assert db_snapshot() == before
    home = client.get("/sub-accounts/").content.decode()
    assert "Resale prices" not in home and "/billing/margins/" not in home


def test_admins_and_billing_get_the_billing_sections(tenant):
    for role in ("admin", "billing"):
        html = browser(tenant, role).get("/billing/").content.decode()
        nav = html[html.index('<nav aria-label="Billing"') :]
        nav = nav[: nav.index("</nav>")]
        assert 'href="/billing/resale/">Resale prices</a>' in nav
        assert 'href="/billing/margins/">Margins</a>' in nav
        assert 'href="/billing/" aria-current="page">Current cycle</a>' in nav
