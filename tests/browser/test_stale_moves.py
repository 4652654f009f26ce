"""Two people move one line from pages drawn before either moved it (domain §7)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from portal.audit.models import AuditEvent
from portal.lines.models import Line
from tests.browser.conftest import PASSWORD
from tests.factories import make_lines, make_sub_account, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def second_page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def test_two_stale_pages_move_one_line_one_wins_one_is_told(
    live_server, page, second_page, log_in, tenant
):
    make_user(tenant.partner, "ann@acme.example", "admin", password=PASSWORD)
    make_user(tenant.partner, "bob@acme.example", "manager", password=PASSWORD)
    a = make_sub_account(tenant.partner, "Client A – Sales")
    b = make_sub_account(tenant.partner, "Client B – Support")
    line = make_lines(tenant.partner, 1)[0]
    ann, bob = page, second_page
    log_in(ann, "ann@acme.example")
    log_in(bob, "bob@acme.example")
    for person in (ann, bob):
        person.goto(live_server.url + "/lines/")

    # Bob opens the Move dialog first; Ann moves the line while it is open.
    bob.get_by_role("link", name=f"Move {line.number}").click()
    bob_dialog = bob.get_by_role("dialog")
    bob_dialog.get_by_label("Sub-account").select_option(label=b.name)

    ann.get_by_role("link", name=f"Move {line.number}").click()
    ann_dialog = ann.get_by_role("dialog")
    ann_dialog.get_by_label("Sub-account").select_option(label=a.name)
    ann_dialog.get_by_role("button", name="Confirm").click()
    ann.get_by_text(f"moved to {a.name}").wait_for()

    bob_dialog.get_by_role("button", name="Confirm").click()
    alert = bob_dialog.get_by_role("alert")
    expect(alert).to_contain_text(f"Line {line.number} is no longer in “Available”")
    expect(alert).to_contain_text(f"it was moved to “{a.name}” at ")
    expect(alert).to_contain_text("Reload and try again.")
    line.refresh_from_db()
    assert line.sub_account_id == a.pk
    assert AuditEvent.objects.filter(action="line.move").count() == 1

    # Reloaded, Bob sees it in A and can move it from there.
    bob.reload()
    bob.get_by_role("link", name=f"Move {line.number}").click()
    bob_dialog = bob.get_by_role("dialog")
    expect(bob_dialog.get_by_text(f"Now in {a.name}")).to_be_visible()
    bob_dialog.get_by_label("Sub-account").select_option(label=b.name)
    bob_dialog.get_by_role("button", name="Confirm").click()
    bob.get_by_text(f"moved to {b.name}").wait_for()
    line.refresh_from_db()
    assert line.sub_account_id == b.pk


def test_two_stale_pages_bulk_move_one_wins_one_is_told(
    live_server, page, second_page, log_in, tenant
):
    make_user(tenant.partner, "ann@acme.example", "admin", password=PASSWORD)
    make_user(tenant.partner, "bob@acme.example", "manager", password=PASSWORD)
    a = make_sub_account(tenant.partner, "Client A – Sales")
    b = make_sub_account(tenant.partner, "Client B – Support")
    lines = make_lines(tenant.partner, 2)
    ann, bob = page, second_page
    log_in(ann, "ann@acme.example")
    log_in(bob, "bob@acme.example")
    for person, target in ((ann, a), (bob, b)):
        person.goto(live_server.url + "/lines/")
        for line in lines:
            person.get_by_label(f"Select {line.number}").check()
        person.get_by_role("button", name="Move selected lines").click()
        person.get_by_role("dialog").get_by_label("Sub-account").select_option(label=target.name)

    ann.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    ann.get_by_text("Moved 2 lines").wait_for()
    bob_dialog = bob.get_by_role("dialog")
    bob_dialog.get_by_role("button", name="Confirm").click()
    alert = bob_dialog.get_by_role("alert")
    expect(alert).to_contain_text("2 of the 2 lines moved since you saw them, so none was moved.")
    expect(alert).to_contain_text(f"it was moved to “{a.name}” at ")
    ids = [line.pk for line in lines]
    assert set(Line.objects.filter(pk__in=ids).values_list("sub_account_id", flat=True)) == {a.pk}
    assert AuditEvent.objects.filter(action="line.move").count() == 2
