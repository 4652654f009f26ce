"""Logging in, passwords, Settings (users, API keys) and the staff pages, in a real browser."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client
from playwright.sync_api import expect

from portal.accounts.models import ApiKey, Membership, User
from portal.accounts.services import staff_create
from portal.audit.models import AuditEvent
from portal.lines.models import Line
from portal.lines.services import line_order_create
from portal.partners.models import Partner
from tests.browser.conftest import PASSWORD
from tests.factories import SYSTEM, fresh_numbers, make_partner, make_sub_account, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def partner():
    return make_partner("Acme Resellers")


@pytest.fixture
def admin(partner):
    return make_user(partner, "admin@acme.example", "admin", password=PASSWORD)


@pytest.fixture
def staff(db):
    return staff_create(principal=SYSTEM, email="ops@provider.example", password=PASSWORD)


def main_nav(page):
    return page.get_by_role("navigation", name="Main")


def submit_login(page, email: str, password: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def emailed_link() -> str:
    match = re.search(r"https?://\S+/password-reset/\S+/\S+/", mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    return match.group(0)


# --- Logging in and passwords ---------------------------------------------------------


def test_repeated_failures_pause_logging_in(live_server, page, admin):
    page.goto(live_server.url + "/login/")
    for _ in range(5):
        submit_login(page, "admin@acme.example", "wrong-password")
        expect(page.get_by_role("alert")).to_contain_text("didn't match")
    # The sixth try is refused even with the right password.
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        submit_login(page, "admin@acme.example", PASSWORD)
    assert answer.value.status == 429
    expect(page.get_by_role("alert")).to_contain_text("Too many failed login attempts")
    expect(page.get_by_role("alert")).to_contain_text("15 minutes")
    assert "/login/" in page.url
    # Another person is not locked out by those failures.
    make_user(admin.membership.partner, "viewer@acme.example", "viewer", password=PASSWORD)
    submit_login(page, "viewer@acme.example", PASSWORD)
    expect(page.get_by_role("heading", name="Sub-accounts")).to_be_visible()


def test_change_password_then_log_in_with_it(live_server, page, log_in, admin):
    log_in(page, "admin@acme.example")
    main_nav(page).get_by_role("link", name="Your account").click()
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("brand-new-secret-7")
    page.get_by_label("Confirm new password").fill("brand-new-secret-7")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Your password was changed.")).to_be_visible()
    assert AuditEvent.objects.filter(action="user.password_set", actor_id=admin.pk).count() == 1

    main_nav(page).get_by_role("link", name="Sub-accounts").click()  # still logged in
    expect(page.get_by_role("heading", name="Sub-accounts")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_text("You are logged out.")).to_be_visible()
    log_in(page, "admin@acme.example", "brand-new-secret-7")
    expect(page.get_by_role("heading", name="Sub-accounts")).to_be_visible()


def test_wrong_current_password_changes_nothing(live_server, page, log_in, admin):
    log_in(page, "admin@acme.example")
    page.goto(live_server.url + "/account/password/")
    page.get_by_label("Current password").fill("not-my-password")
    page.get_by_label("New password", exact=True).fill("brand-new-secret-7")
    page.get_by_label("Confirm new password").fill("brand-new-secret-7")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Your old password was entered incorrectly").first).to_be_visible()
    admin.refresh_from_db()
    assert admin.check_password(PASSWORD)


def test_password_reset_link_sets_a_password(live_server, page, log_in, admin):
    page.goto(live_server.url + "/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill("ADMIN@acme.example")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    assert mail.outbox[-1].to == ["admin@acme.example"]

    page.goto(emailed_link())
    expect(page.get_by_role("heading", name="Choose your password")).to_be_visible()
    page.get_by_label("New password", exact=True).fill("reset-secret-2026")
    page.get_by_label("Confirm new password").fill("reset-secret-2026")
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("heading", name="Password set")).to_be_visible()

    page.get_by_role("link", name="Log in").click()
    submit_login(page, "admin@acme.example", "reset-secret-2026")
    expect(page.get_by_role("heading", name="Sub-accounts")).to_be_visible()


def test_unknown_email_gets_the_same_answer_and_no_email(live_server, page):
    page.goto(live_server.url + "/password-reset/")
    page.get_by_label("Email").fill("nobody@acme.example")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    assert mail.outbox == []


# --- Settings → Users -----------------------------------------------------------------


def test_admin_invites_a_user_who_sets_a_password_then_changes_their_role(
    live_server, browser, page, log_in, partner, admin
):
    log_in(page, "admin@acme.example")
    main_nav(page).get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    page.get_by_role("link", name="Invite user").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Email").fill("Nora@Acme.example")
    dialog.get_by_label("Name").fill("Nora North")
    dialog.get_by_label("Role").select_option(label="Manager")
    dialog.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_text("Invitation sent to nora@acme.example.")).to_be_visible()
    row = page.get_by_role("row", name=re.compile("nora@acme.example"))
    expect(row).to_contain_text("Manager")
    expect(row).to_contain_text("Invited")

    nora = User.objects.get(email="nora@acme.example")
    assert not nora.has_usable_password()
    assert mail.outbox[-1].to == ["nora@acme.example"]

    page.get_by_role("link", name="Change role of nora@acme.example").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Role").select_option(label="Billing")
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("nora@acme.example is now Billing.")).to_be_visible()
    assert Membership.objects.get(user=nora).role == "billing"
    [event] = AuditEvent.objects.filter(action="user.role_change")
    assert (event.actor_id, event.object_id) == (admin.pk, str(nora.pk))
    assert event.data["before"] == {"role": "manager"} and event.data["after"] == {
        "role": "billing"
    }

    # Nora follows the emailed link in her own browser.
    context = browser.new_context()
    try:
        nora_page = context.new_page()
        nora_page.goto(emailed_link())
        nora_page.get_by_label("New password", exact=True).fill("nora-secret-2026")
        nora_page.get_by_label("Confirm new password").fill("nora-secret-2026")
        nora_page.get_by_role("button", name="Set password").click()
        nora_page.get_by_role("link", name="Log in").click()
        submit_login(nora_page, "nora@acme.example", "nora-secret-2026")
        expect(nora_page.get_by_role("banner")).to_contain_text("Billing")
    finally:
        context.close()


def test_last_admin_cannot_deactivate_themselves(live_server, page, log_in, admin):
    log_in(page, "admin@acme.example")
    page.goto(live_server.url + "/settings/users/")
    page.get_by_role("link", name="Deactivate admin@acme.example").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Deactivate").click()
    expect(dialog.get_by_role("alert")).to_contain_text("last active admin")
    admin.refresh_from_db()
    assert admin.is_active


def test_manager_sees_no_settings_and_gets_403(live_server, page, log_in, partner, admin):
    make_user(partner, "manager@acme.example", "manager", password=PASSWORD)
    log_in(page, "manager@acme.example")
    expect(main_nav(page).get_by_role("link", name="Sub-accounts")).to_be_visible()
    assert main_nav(page).get_by_role("link", name="Settings").count() == 0
    assert main_nav(page).get_by_role("link", name="Staff").count() == 0
    for path in ("/settings/users/", "/settings/api-keys/", "/settings/users/invite/"):
        response = page.goto(live_server.url + path)
        assert response.status == 403, path
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    response = page.goto(live_server.url + "/staff/partners/")
    assert response.status == 404


# --- Settings → API keys --------------------------------------------------------------


def test_admin_creates_a_key_sees_it_once_uses_it_then_revokes_it(
    live_server, page, log_in, partner, admin
):
    make_sub_account(partner, "Client ABC – Sales Campaign")
    log_in(page, "admin@acme.example")
    page.goto(live_server.url + "/settings/users/")
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="API keys").click()
    page.get_by_role("link", name="Create API key").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Key name").fill("CRM sync")
    dialog.get_by_label("Role").select_option(label="Manager")
    dialog.get_by_role("button", name="Create API key").click()
    expect(dialog.get_by_text("this is the only time it is shown")).to_be_visible()
    raw = dialog.get_by_label("Your new Manager key").input_value()
    assert raw.startswith("rpp_")

    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = api.get("/api/v1/sub-accounts")
    assert response.status_code == 200
    assert "Client ABC – Sales Campaign" in [s["name"] for s in response.json()["items"]]

    dialog.get_by_role("link", name="Done").click()
    row = page.get_by_role("row", name=re.compile("CRM sync"))
    expect(row).to_contain_text("Manager")
    expect(row).to_contain_text("Active")
    assert raw not in page.content()  # never shown again

    row.get_by_role("link", name="Revoke CRM sync").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("cannot be undone")
    dialog.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("API key “CRM sync” revoked.")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("CRM sync"))).to_contain_text("Revoked")
    assert ApiKey.objects.get(name="CRM sync").revoked_at is not None
    assert api.get("/api/v1/sub-accounts").status_code == 401


# --- Staff ----------------------------------------------------------------------------


def test_staff_import_reports_bad_rows_and_fulfils_a_waiting_order(
    live_server, page, log_in, partner, staff
):
    order = line_order_create(principal=SYSTEM.acting_for(partner.pk), quantity=2, area_code="212")
    assert order.status == "pending"
    good = fresh_numbers(2, "212")
    csv = f"number,area_code\n{good[0]},212\nnot-a-number,\n{good[1]},212\n"

    log_in(page, "ops@provider.example")
    expect(page.get_by_role("heading", name="Partners")).to_be_visible()
    page.get_by_role("navigation", name="Staff").get_by_role("link", name="Line orders").click()
    expect(page.get_by_role("row", name=re.compile("Acme Resellers"))).to_contain_text("212")

    page.get_by_role("navigation", name="Staff").get_by_role(
        "link", name="Number inventory"
    ).click()
    page.get_by_label("CSV file").set_input_files(
        files=[{"name": "numbers.csv", "mimeType": "text/csv", "buffer": csv.encode()}]
    )
    page.get_by_role("button", name="Import numbers").click()
    report = page.get_by_role("status").filter(has_text="Added")
    expect(report).to_contain_text("Added 2 numbers")
    expect(report).to_contain_text("delivered 2 lines")
    expect(report).to_contain_text("1 row rejected")
    bad = page.get_by_role("row", name=re.compile("not-a-number"))
    expect(bad).to_contain_text("3")
    expect(bad).to_contain_text("not a phone number")

    order.refresh_from_db()
    assert (order.status, order.fulfilled_count) == ("fulfilled", 2)
    assert set(Line.objects.filter(order=order).values_list("number", flat=True)) == set(good)
    page.get_by_role("link", name="See line orders and stock").click()
    expect(page.get_by_text("No order is waiting")).to_be_visible()


def test_staff_acts_for_a_partner_then_goes_back_to_all_partners(
    live_server, page, log_in, partner, staff
):
    make_sub_account(partner, "Client ABC – Sales Campaign")
    rival = make_partner("Rival Resellers")
    make_sub_account(rival, "Rival Client – Support")

    log_in(page, "ops@provider.example")
    expect(page.get_by_role("banner")).to_contain_text("All partners")
    # Without a partner, partner pages ask to choose one instead of mixing partners.
    main_nav(page).get_by_role("link", name="Sub-accounts").click()
    expect(page.get_by_role("heading", name="Choose a partner")).to_be_visible()
    page.get_by_role("link", name="All partners in Staff → Partners").click()

    page.get_by_role("button", name="Act for this partner (Acme Resellers)").click()
    expect(page.get_by_role("heading", name="Sub-accounts")).to_be_visible()
    expect(page.get_by_role("banner")).to_contain_text("Acme Resellers")
    expect(page.get_by_role("row", name=re.compile("Client ABC – Sales Campaign"))).to_be_visible()
    assert page.get_by_role("row", name=re.compile("Rival Client")).count() == 0

    main_nav(page).get_by_role("link", name="Staff").click()
    page.get_by_role("button", name="Back to all partners").click()
    expect(page.get_by_text("Back to all partners.")).to_be_visible()
    expect(page.get_by_role("banner")).to_contain_text("All partners")
    main_nav(page).get_by_role("link", name="Lines").click()
    expect(page.get_by_role("heading", name="Choose a partner")).to_be_visible()
    page.get_by_role("button", name="Act for Rival Resellers").click()
    expect(page.get_by_role("heading", name="Lines")).to_be_visible()  # back where it asked
    expect(page.get_by_role("banner")).to_contain_text("Rival Resellers")


def test_staff_creates_a_partner_with_an_invited_owner(live_server, page, log_in, staff):
    log_in(page, "ops@provider.example")
    page.get_by_role("navigation", name="Staff").get_by_role("link", name="Create partner").click()
    page.get_by_label("Partner name").fill("Fresh Lines Ltd")
    page.get_by_label("Timezone").fill("Europe/Paris")
    page.get_by_label("Currency").fill("EUR")
    page.get_by_label("Owner admin email").fill("owner@fresh.example")
    page.get_by_role("button", name="Create partner").click()
    expect(page.get_by_text("Partner “Fresh Lines Ltd” created.")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("Fresh Lines Ltd"))).to_be_visible()

    partner = Partner.objects.get(name="Fresh Lines Ltd")
    assert (partner.timezone, partner.currency) == ("Europe/Paris", "EUR")
    owner = Membership.objects.get(partner=partner)
    assert (owner.user.email, owner.role) == ("owner@fresh.example", "admin")
    assert mail.outbox[-1].to == ["owner@fresh.example"]
    assert "Fresh Lines Ltd" in mail.outbox[-1].subject


def test_bad_timezone_keeps_the_form_and_creates_nothing(live_server, page, log_in, staff):
    log_in(page, "ops@provider.example")
    page.goto(live_server.url + "/staff/partners/new/")
    page.get_by_label("Partner name").fill("Fresh Lines Ltd")
    page.get_by_label("Timezone").fill("Mars/Olympus")
    page.get_by_role("button", name="Create partner").click()
    expect(page.get_by_text("is not an IANA name").first).to_be_visible()
    assert not Partner.objects.filter(name="Fresh Lines Ltd").exists()


def test_approvals_page_is_an_honest_empty_state(live_server, page, log_in, staff):
    log_in(page, "ops@provider.example")
    page.get_by_role("navigation", name="Staff").get_by_role("link", name="Approvals").click()
    expect(page.get_by_text("Merge and deletion requests")).to_be_visible()
    expect(page.get_by_text("There is nothing to approve.")).to_be_visible()
