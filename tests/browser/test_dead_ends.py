"""Issue 18 point 10: a locked sub-account's lines say why they cannot move instead of
offering Move and Disconnect; its request pages say why instead of a form."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD
from tests.factories import force_state, make_client_line, make_sub_account, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_locked_sub_account_offers_no_dead_end(live_server, page, log_in, tenant):
    make_user(tenant.partner, "ann@acme.example", "admin", password=PASSWORD)
    client = make_sub_account(tenant.partner, "Client A – Sales")
    line = make_client_line(client)
    force_state(client, lock_reason="merge request #7 is open")
    log_in(page, "ann@acme.example")

    page.goto(f"{live_server.url}/sub-accounts/{client.pk}/")
    row = page.get_by_role("row", name=line.number)
    expect(row).to_contain_text("locked by merge request #7 is open")
    expect(row.get_by_role("link", name=f"Move {line.number}")).to_have_count(0)
    expect(row.get_by_role("link", name=f"Disconnect {line.number}")).to_have_count(0)
    expect(page.get_by_role("link", name="Request merge", exact=False)).to_have_count(0)

    response = page.goto(f"{live_server.url}/sub-accounts/{client.pk}/request-merge/")
    assert response is not None and response.status == 409
    expect(page.get_by_role("status")).to_contain_text(
        "Client A – Sales is locked: merge request #7 is open."
    )
    expect(page.locator("form.card")).to_have_count(0)
    page.get_by_role("link", name="Back to Client A – Sales").click()
    expect(page).to_have_url(f"{live_server.url}/sub-accounts/{client.pk}/")
