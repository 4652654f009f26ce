"""domain §2: a line moved back to Available on the Lines page loses its former client's
details; the Audit log shows what it had (issue 18, point 11)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from portal.lines.models import Line
from tests.browser.conftest import PASSWORD
from tests.factories import make_client_line, make_sub_account, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_line_moved_back_to_available_drops_its_clients_details(
    live_server, page, log_in, screenshot, tenant
):
    make_user(tenant.partner, "ann@acme.example", "admin", password=PASSWORD)
    client = make_sub_account(tenant.partner, "Client A – Sales")
    line = make_client_line(client)
    log_in(page, "ann@acme.example")
    page.goto(live_server.url + "/lines/")
    row = page.get_by_role("row", name=line.number)
    expect(row).to_contain_text("Front desk")

    page.get_by_role("link", name=f"Move {line.number}").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Sub-account").select_option(label="Available")
    dialog.get_by_role("button", name="Confirm").click()
    page.get_by_text("moved to Available").wait_for()

    row = page.get_by_role("row", name=line.number)
    expect(row).not_to_contain_text("Front desk")
    expect(row).not_to_contain_text("ann@client.example")
    line.refresh_from_db()
    assert (line.label, line.user_name, line.user_email, line.daily_limit) == ("", "", "", 50)

    page.goto(f"{live_server.url}/audit/?line={line.pk}")
    moved = page.get_by_role("cell", name=re.compile("back in Available it dropped"))
    expect(moved).to_contain_text("label “Front desk”")
    expect(moved).to_contain_text("user email “ann@client.example”")
    screenshot(page, "audit-back-in-available")
    assert Line.objects.get(pk=line.pk).sub_account.kind == "available"
