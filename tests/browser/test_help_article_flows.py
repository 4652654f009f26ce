"""The help article's flows, clicked through in a real browser with the domain §6 labels."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from portal.audit.models import AuditEvent
from portal.lines.models import Line
from portal.partners.models import SubAccount
from tests.browser.conftest import PASSWORD
from tests.factories import SYSTEM, make_lines, make_sub_account, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin(tenant):
    return make_user(tenant.partner, "admin@acme.example", "admin", password=PASSWORD)


def test_login_shows_partner_role_and_sub_accounts_with_counts(
    live_server, page, log_in, tenant, admin
):
    sales = make_sub_account(tenant.partner, "Client ABC – Sales Campaign")
    make_lines(tenant.partner, 3)
    log_in(page, "admin@acme.example")

    expect(page.get_by_role("heading", name="Sub-accounts")).to_be_visible()
    header = page.get_by_role("banner").inner_text()
    assert "Acme Resellers" in header and "Admin" in header
    rows = page.get_by_role("row")
    assert "Available" in rows.nth(1).inner_text()  # first after the header row
    assert "3" in page.get_by_role("row", name=re.compile("^Available")).inner_text()
    expect(page.get_by_role("row", name=re.compile(sales.name))).to_be_visible()


def test_wrong_password_is_refused(live_server, page, tenant, admin):
    page.goto(live_server.url + "/login/")
    page.get_by_label("Email").fill("admin@acme.example")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    assert "/login/" in page.url


def test_create_sub_account_with_soft_hint(live_server, page, log_in, tenant, admin):
    log_in(page, "admin@acme.example")
    page.get_by_role("link", name="Create sub-account").click()
    page.get_by_label("Sub-account name").fill("Northside")
    # The pattern tip is a warning, never a block.
    expect(page.get_by_text("Tip: names like")).to_be_visible()
    page.get_by_label("Contact name").fill("Nora North")
    page.get_by_label("Contact email").fill("nora@northside.example")
    page.get_by_label("Contact phone").fill("+1 415 555 0123")
    page.get_by_label("Internal reference").fill("CRM-42")
    page.get_by_role("button", name="Create sub-account").click()

    expect(page.get_by_role("heading", name=re.compile("Northside"))).to_be_visible()
    created = SubAccount.objects.get(partner=tenant.partner, name="Northside")
    assert created.contact_phone == "+14155550123"
    assert created.internal_reference == "CRM-42"


def test_duplicate_name_is_refused_with_a_clear_message(live_server, page, log_in, tenant, admin):
    make_sub_account(tenant.partner, "Client ABC – Sales Campaign")
    log_in(page, "admin@acme.example")
    page.goto(live_server.url + "/sub-accounts/new/")
    page.get_by_label("Sub-account name").fill("client abc – sales campaign")
    page.get_by_role("button", name="Create sub-account").click()
    expect(page.get_by_text("already exists").first).to_be_visible()
    assert SubAccount.objects.filter(partner=tenant.partner).count() == 2  # pool + original


def test_request_lines_and_see_them_land_in_available(live_server, page, log_in, tenant, admin):
    from portal.lines.services import inventory_import
    from tests.factories import fresh_numbers

    inventory_import(principal=SYSTEM, csv_text="number\n" + "\n".join(fresh_numbers(2)) + "\n")
    log_in(page, "admin@acme.example")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Lines").click()
    page.get_by_role("link", name="Request lines").click()
    page.get_by_label("Quantity").fill("2")
    page.get_by_role("button", name="Request lines").click()
    expect(page.get_by_text("delivered to Available")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("Fulfilled"))).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Sub-accounts").click()
    assert "2" in page.get_by_role("row", name=re.compile("^Available")).inner_text()


def test_add_new_line_from_available(live_server, page, log_in, tenant, admin):
    target = make_sub_account(tenant.partner, "Client ABC – Sales Campaign")
    line = make_lines(tenant.partner, 1)[0]
    log_in(page, "admin@acme.example")
    page.get_by_role("link", name="Available").click()
    page.get_by_role("link", name=f"Add new line {line.number}").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Sub-account").select_option(label=target.name)
    dialog.get_by_label("Label").fill("Front desk")
    dialog.get_by_label("User name").fill("Jane Doe")
    dialog.get_by_label("User email").fill("jane@abc.example")
    dialog.get_by_label("Daily limit").fill("80")
    dialog.get_by_role("button", name="Confirm").click()

    page.get_by_text(f"Line {line.number} added to {target.name}").wait_for()
    line.refresh_from_db()
    assert (line.sub_account_id, line.label, line.user_email, line.daily_limit) == (
        target.pk,
        "Front desk",
        "jane@abc.example",
        80,
    )


def test_move_one_line_then_many(live_server, page, log_in, tenant, admin):
    a = make_sub_account(tenant.partner, "Client A – Sales")
    b = make_sub_account(tenant.partner, "Client B – Support")
    lines = make_lines(tenant.partner, 3)
    log_in(page, "admin@acme.example")
    page.goto(live_server.url + "/lines/")

    page.get_by_role("link", name=f"Move {lines[0].number}").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Sub-account").select_option(label=a.name)
    dialog.get_by_role("button", name="Confirm").click()
    page.get_by_text(f"moved to {a.name}").wait_for()

    page.get_by_label(f"Select {lines[1].number}").check()
    page.get_by_label(f"Select {lines[2].number}").check()
    page.get_by_role("button", name="Move selected lines").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Sub-account").select_option(label=b.name)
    dialog.get_by_role("button", name="Confirm").click()
    page.get_by_text("Moved 2 lines").wait_for()

    homes = dict(Line.objects.filter(pk__in=[x.pk for x in lines]).values_list("pk", "sub_account"))
    assert homes == {lines[0].pk: a.pk, lines[1].pk: b.pk, lines[2].pk: b.pk}
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.line_count, b.line_count) == (1, 2)


def test_dialog_returns_focus_and_shows_errors_in_place(live_server, page, log_in, tenant, admin):
    make_sub_account(tenant.partner, "Client A – Sales")
    line = make_lines(tenant.partner, 1)[0]
    log_in(page, "admin@acme.example")
    page.goto(live_server.url + "/lines/")
    opener = page.get_by_role("link", name=f"Add new line {line.number}")
    opener.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Confirm").click()  # nothing chosen
    expect(dialog.get_by_text("This field is required.").first).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    assert page.evaluate("document.activeElement.textContent").startswith("Add new line")
    line.refresh_from_db()
    assert line.sub_account.kind == "available"


def test_disconnect_needs_confirmation(live_server, page, log_in, tenant, admin):
    line = make_lines(tenant.partner, 1)[0]
    log_in(page, "admin@acme.example")
    page.goto(live_server.url + "/lines/")
    page.get_by_role("link", name=f"Disconnect {line.number}").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Disconnect").click()
    expect(dialog.get_by_role("alert")).to_be_visible()
    line.refresh_from_db()
    assert line.status == "active"
    dialog.get_by_label("Type the number to confirm").fill(line.number)
    dialog.get_by_role("button", name="Disconnect").click()
    page.get_by_text(f"Line {line.number} disconnected").wait_for()
    line.refresh_from_db()
    assert line.status == "disconnected"


def test_audit_log_lists_changes(live_server, page, log_in, tenant, admin):
    a = make_sub_account(tenant.partner, "Client A – Sales")
    line = make_lines(tenant.partner, 1)[0]
    from portal.lines.services import line_move

    line_move(principal=SYSTEM.acting_for(tenant.partner.pk), line_id=line.pk, sub_account_id=a.pk)
    log_in(page, "admin@acme.example")
    page.get_by_role("link", name="Audit log").click()
    row = page.get_by_role("row", name=re.compile("Line moved"))
    assert "moved from Available to Client A – Sales" in row.inner_text()
    page.get_by_label("Action").select_option(label="Sub-account created")
    page.wait_for_url(re.compile("action=sub_account.create"))
    assert page.get_by_role("row", name=re.compile("Line moved")).count() == 0


def test_viewer_sees_no_change_buttons_and_server_refuses(live_server, page, log_in, tenant):
    make_user(tenant.partner, "viewer@acme.example", "viewer", password=PASSWORD)
    line = make_lines(tenant.partner, 1)[0]
    a = make_sub_account(tenant.partner, "Client A – Sales")
    log_in(page, "viewer@acme.example")
    assert page.get_by_role("link", name="Create sub-account").count() == 0
    page.goto(live_server.url + "/lines/")
    assert page.get_by_role("link", name=re.compile("^(Move|Add new line|Disconnect)")).count() == 0
    assert page.get_by_role("link", name="Audit log").count() == 0

    # Even a hand-made request is refused by the server.
    before = AuditEvent.objects.count()
    status = page.evaluate(
        """async ([url, id]) => {
            const headers = JSON.parse(document.body.getAttribute('hx-headers'));
            const token = headers['X-CSRFToken'];
            const r = await fetch(url, {method: 'POST', headers: {'X-CSRFToken': token,
              'Content-Type': 'application/x-www-form-urlencoded'}, body: 'sub_account=' + id});
            return r.status; }""",
        [f"{live_server.url}/lines/{line.pk}/move/", a.pk],
    )
    assert status == 403
    line.refresh_from_db()
    assert line.sub_account.kind == "available"
    assert AuditEvent.objects.count() == before


def test_phone_width_has_no_sideways_scroll(live_server, browser, log_in, tenant, admin):
    make_sub_account(tenant.partner, "Client ABC – A Very Long Use Case Name For Phones")
    make_lines(tenant.partner, 2)
    context = browser.new_context(viewport={"width": 375, "height": 800})
    phone = context.new_page()
    log_in(phone, "admin@acme.example")
    for path in ("/sub-accounts/", "/lines/", "/lines/orders/", "/audit/"):
        phone.goto(live_server.url + path)
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, (path, width)
    context.close()


def test_audit_log_filters_by_sub_account(live_server, page, log_in, tenant, admin):
    a = make_sub_account(tenant.partner, "Client A – Sales")
    make_sub_account(tenant.partner, "Client B – Support")
    log_in(page, "admin@acme.example")
    page.goto(live_server.url + "/audit/")
    page.get_by_label("Sub-account").select_option(label=a.name)
    page.wait_for_url(re.compile(f"sub_account={a.pk}"))
    rows = page.get_by_role("row", name=re.compile("Sub-account created"))
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(a.name)
