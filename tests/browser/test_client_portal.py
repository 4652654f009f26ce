"""A partner's client in a real browser (domain §8.2): its four sections headed with the
reseller's display name, its statements and their PDF; and an admin granting a client
sub-accounts by name where the partner has too many for a select."""

from __future__ import annotations

import io
import re

import pytest
from playwright.sync_api import expect
from pypdf import PdfReader

from portal.accounts.models import Membership
from portal.accounts.services import user_create
from portal.partners.models import Partner
from tests.billing.statement_history import statement_history
from tests.browser.conftest import PASSWORD
from tests.factories import SYSTEM, make_sub_account, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_client_reads_its_sub_accounts_and_statements_under_the_resellers_name(
    live_server, page, log_in, tenant, tmp_path, screenshot
):
    partner = tenant.partner
    Partner.objects.filter(pk=partner.pk).update(display_name="Shiny Messaging")
    h = statement_history(partner)
    user_create(
        principal=SYSTEM.acting_for(partner.pk),
        email="priya@client-a.example",
        role="client",
        password=PASSWORD,
        sub_account_ids=[h.a.pk],
    )

    log_in(page, "priya@client-a.example")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(
        ["Sub-accounts", "Lines", "Analytics", "Statements", "Your account"]
    )
    expect(page.locator("header")).to_contain_text("Shiny Messaging")
    expect(page.locator("body")).not_to_contain_text("Acme Resellers")
    expect(page.get_by_role("link", name="Client A – Sales")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("Client B – Support")

    nav.get_by_role("link", name="Statements").click()
    expect(page.get_by_role("heading", name="Statements", exact=True)).to_be_visible()
    expect(nav.get_by_role("link", name="Statements")).to_have_attribute("aria-current", "page")
    table = page.get_by_role("table", name="July 2026")
    expect(table.locator("tbody tr")).to_have_count(1)  # Client B's is not its own
    screenshot(page, "client-statements-desktop")
    table.get_by_role("link", name=re.compile("^Statement 2 of Client A")).click()
    expect(page.get_by_role("heading", name=re.compile("^Statement 2"))).to_be_visible()
    expect(page.locator("main")).to_contain_text("Shiny Messaging")
    with page.expect_download() as info:
        page.get_by_role("link", name=re.compile("^Download PDF")).click()
    path = tmp_path / "statement.pdf"
    info.value.save_as(path)
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(path.read_bytes())).pages)
    assert "Shiny Messaging" in text and "Acme Resellers" not in text
    assert "50.00" not in text  # the provider's price is nowhere on it

    # The partner's other sub-account is missing, its billing an area it never has.
    response = page.goto(live_server.url + f"/sub-accounts/{h.b.pk}/")
    assert response is not None and response.status == 404
    response = page.goto(live_server.url + "/invoices/")
    assert response is not None and response.status == 403


def test_an_admin_grants_a_client_by_name_past_a_select(
    live_server, page, log_in, tenant, monkeypatch, screenshot
):
    monkeypatch.setattr("portal.accounts.views.SELECT_LIMIT", 3)
    partner = tenant.partner
    for i in range(6):
        make_sub_account(partner, f"Acme {i} – Sales")
    make_user(partner, "admin@acme.example", "admin", password=PASSWORD)

    log_in(page, "admin@acme.example")
    page.goto(live_server.url + "/settings/users/")
    page.get_by_role("link", name="Invite user").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Email").fill("client@acme-client.example")
    dialog.get_by_label("Role").select_option(label="Client")
    find = dialog.get_by_label("Find a sub-account")
    names = dialog.get_by_label("Sub-accounts (for a client)")
    for typed, picked in (("acme 3", "Acme 3 – Sales"), ("acme 5", "Acme 5 – Sales")):
        find.press_sequentially(typed)
        option = page.locator(f'#sub-account-options option[value="{picked}"]')
        expect(option).to_be_attached()
        find.fill(picked)
        find.dispatch_event("change")
        expect(find).to_have_value("")
    expect(names).to_have_value("Acme 3 – Sales\nAcme 5 – Sales")
    screenshot(page, "client-grant-by-name")
    dialog.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    row = page.get_by_role("row", name=re.compile("^client@acme-client.example"))
    expect(row).to_contain_text("Sees Acme 3 – Sales, Acme 5 – Sales")
    granted = Membership.objects.get(user__email="client@acme-client.example").sub_accounts
    assert sorted(granted.values_list("name", flat=True)) == ["Acme 3 – Sales", "Acme 5 – Sales"]
