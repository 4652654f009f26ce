"""Forms in a real browser (issue 18, point 8): every error at once, labelled, focus on the
first; the phone as the hint writes it; the line-request form makes one order however
often it is clicked."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from portal.lines.models import LineOrder
from portal.partners.models import SubAccount
from tests.browser.conftest import PASSWORD
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_create_sub_account_shows_every_error_at_once_and_focuses_the_first(
    live_server, page, log_in, screenshot, tenant
):
    make_user(tenant.partner, "ann@acme.example", "admin", password=PASSWORD)
    log_in(page, "ann@acme.example")
    page.goto(live_server.url + "/sub-accounts/")
    page.get_by_role("link", name="Create sub-account").click()
    name = page.get_by_label("Sub-account name")
    expect(name).to_have_attribute("maxlength", "120")
    page.get_by_label("Contact email").fill("ann@")
    page.get_by_label("Contact phone").fill("(415) 555-0100")
    page.get_by_label("Internal reference").fill("REF-7")
    page.get_by_role("button", name="Create sub-account").click()

    summary = page.get_by_role("alert").filter(has_text="problems to fix")
    expect(summary).to_contain_text("There are 3 problems to fix")
    expect(summary.get_by_role("link", name="Sub-account name")).to_be_visible()
    expect(summary.get_by_role("link", name="Contact email")).to_be_visible()
    expect(summary.get_by_role("link", name="Contact phone")).to_be_visible()
    expect(page.get_by_label("Sub-account name")).to_be_focused()
    for label in ("Sub-account name", "Contact email", "Contact phone"):
        expect(page.get_by_label(label)).to_have_attribute("aria-invalid", "true")
    phone = page.get_by_label("Contact phone")
    expect(phone).to_have_accessible_description(
        "With the country code, e.g. +1 415 555 0100. Contact phone: '(415) 555-0100' is not "
        "a phone number with its country code, e.g. +1 415 555 0100."
    )
    expect(page.get_by_text("contact_phone:")).to_have_count(0)
    expect(page.get_by_label("Internal reference")).to_have_value("REF-7")
    screenshot(page, "sub-account-form-errors")
    assert not SubAccount.objects.filter(partner=tenant.partner, kind="standard").exists()

    # Fixed as the hint writes it: spaces in the phone are fine, stored as E.164.
    page.get_by_label("Sub-account name").fill("Client ABC – Sales Campaign")
    page.get_by_label("Contact email").fill("ann@client.example")
    page.get_by_label("Contact phone").fill("+1 415 555 0100")
    page.get_by_role("button", name="Create sub-account").click()
    expect(page.get_by_text("Sub-account “Client ABC – Sales Campaign” created.")).to_be_visible()
    created = SubAccount.objects.get(partner=tenant.partner, kind="standard")
    assert created.contact_phone == "+14155550100"


def test_request_lines_clicked_twice_makes_one_order(live_server, page, log_in, tenant):
    make_user(tenant.partner, "ann@acme.example", "admin", password=PASSWORD)
    log_in(page, "ann@acme.example")
    page.goto(live_server.url + "/lines/orders/")
    page.get_by_label("Quantity").fill("3")
    form = page.locator("form[data-submit-once]")
    sent = form.evaluate("f => Object.fromEntries(new FormData(f))")
    page.get_by_role("button", name="Request lines").dblclick()
    expect(page.get_by_text("Lines appear in Available as soon as numbers")).to_be_visible()
    assert LineOrder.objects.filter(partner=tenant.partner).count() == 1

    # The same form posted again (a resubmit, a second tab): no second order.
    page.evaluate(
        """sent => {
            const f = document.createElement("form");
            f.method = "post";
            f.action = "/lines/orders/";
            for (const [name, value] of Object.entries(sent)) {
                const input = document.createElement("input");
                input.type = "hidden"; input.name = name; input.value = value;
                f.appendChild(input);
            }
            document.body.appendChild(f);
            f.submit();
        }""",
        sent,
    )
    expect(page.get_by_text("This request was already sent")).to_be_visible()
    assert LineOrder.objects.filter(partner=tenant.partner).count() == 1
