"""A request's page follows it live (issue 18 point 7): opened while the request waits for
approval, it shows the approval, the lines moving and the end without being reloaded.

The decisions and the merge's batches are made through the services in the test, as staff
and the worker would make them, while the requester's page stays open.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from portal.accounts.models import User
from portal.accounts.services import staff_create
from portal.core.principal import Principal
from portal.workflows.services import deletions, merges
from portal.workflows.tasks import process_merge_request
from tests.browser.conftest import PASSWORD
from tests.factories import SYSTEM, make_partner, make_sub_account, make_user
from tests.workflows.support import fill

pytestmark = pytest.mark.django_db(transaction=True)
RUNNER = Principal.system("task:merge")


@pytest.fixture
def partner():
    return make_partner("Live Resellers")


@pytest.fixture
def people(partner):
    manager = make_user(partner, "manager@live.example", "manager", password=PASSWORD)
    staff = staff_create(principal=SYSTEM, email="ops@provider.example", password=PASSWORD)
    return Principal.for_user(manager), Principal.for_user(User.objects.get(pk=staff.pk))


def _mark_page(page) -> None:
    """A flag in the page's window: a reload would lose it."""
    page.evaluate("window.__notReloaded = true")


def _not_reloaded(page) -> bool:
    return page.evaluate("window.__notReloaded === true")


def test_pending_merge_page_follows_approval_progress_and_completion(
    live_server, page, log_in, partner, people
):
    manager, staff = people
    source = make_sub_account(partner, "Client L – Old")
    target = make_sub_account(partner, "Client L – New")
    fill(source, 3)
    merge = merges.merge_request_create(
        principal=manager, source_ids=[source.pk], target_id=target.pk
    )

    log_in(page, "manager@live.example")
    page.goto(f"{live_server.url}/requests/merge/{merge.pk}/")
    heading = page.get_by_role("heading", name=re.compile("Merge request #"))
    expect(heading).to_contain_text("Pending approval")
    expect(page.get_by_role("button", name=re.compile("Cancel request"))).to_be_visible()
    _mark_page(page)

    merges.merge_request_approve(principal=staff, request_id=merge.pk, reason="Fine by us")
    expect(heading).to_contain_text("Approved")
    expect(page.get_by_text("Fine by us").first).to_be_visible()
    # Approved: nothing left to cancel, and the history says who approved.
    expect(page.get_by_role("button", name=re.compile("Cancel request"))).to_have_count(0)
    expect(page.get_by_role("region", name="History")).to_contain_text("ops@provider.example")

    merges.merge_request_start(principal=RUNNER, request_id=merge.pk)
    merges.merge_request_move_batch(principal=RUNNER, request_id=merge.pk, batch_size=1)
    expect(heading).to_contain_text("Processing")
    expect(page.get_by_role("status").filter(has_text="lines moved")).to_contain_text(
        "1 of 3 lines moved"
    )
    merges.merge_request_move_batch(principal=RUNNER, request_id=merge.pk, batch_size=1)
    expect(page.get_by_role("status").filter(has_text="lines moved")).to_contain_text(
        "2 of 3 lines moved"
    )

    process_merge_request.call(merge.pk)
    expect(heading).to_contain_text("Completed")
    expect(page.get_by_role("status").filter(has_text="lines moved")).to_contain_text(
        "3 of 3 lines moved"
    )
    assert _not_reloaded(page)
    # A final state stops asking.
    expect(page.locator(".request-poll")).to_have_count(0)


def test_pending_deletion_page_follows_approval(live_server, page, log_in, partner, people):
    manager, staff = people
    doomed = make_sub_account(partner, "Client L – Promo")
    request = deletions.deletion_request_create(principal=manager, sub_account_id=doomed.pk)

    log_in(page, "manager@live.example")
    page.goto(f"{live_server.url}/requests/deletion/{request.pk}/")
    heading = page.get_by_role("heading", name=re.compile("Deletion request #"))
    expect(heading).to_contain_text("Pending approval")
    _mark_page(page)

    deletions.deletion_request_approve(principal=staff, request_id=request.pk)
    expect(heading).to_contain_text("Scheduled")
    expect(page.get_by_text("restorable until then")).to_be_visible()
    assert _not_reloaded(page)
    expect(page.locator(".request-poll")).to_have_count(0)


def test_rejected_while_open_shows_the_rejection(live_server, page, log_in, partner, people):
    manager, staff = people
    source = make_sub_account(partner, "Client L – A")
    target = make_sub_account(partner, "Client L – B")
    merge = merges.merge_request_create(
        principal=manager, source_ids=[source.pk], target_id=target.pk
    )
    log_in(page, "manager@live.example")
    page.goto(f"{live_server.url}/requests/merge/{merge.pk}/")
    _mark_page(page)
    merges.merge_request_reject(principal=staff, request_id=merge.pk, reason="Keep apart")
    expect(page.get_by_role("heading", name=re.compile("Merge request #"))).to_contain_text(
        "Rejected"
    )
    expect(page.get_by_text("Keep apart").first).to_be_visible()
    assert _not_reloaded(page)


def test_audit_log_and_history_read_in_words(
    live_server, page, log_in, partner, people, screenshot
):
    manager, staff = people
    source = make_sub_account(partner, "Client W – East")
    other = make_sub_account(partner, "Client W – West")
    target = make_sub_account(partner, "Client W – All")
    fill(source, 2)
    merge = merges.merge_request_create(
        principal=manager, source_ids=[source.pk, other.pk], target_id=target.pk
    )
    merges.merge_request_approve(principal=staff, request_id=merge.pk)
    process_merge_request.call(merge.pk)

    log_in(page, "manager@live.example")
    page.goto(f"{live_server.url}/requests/merge/{merge.pk}/")
    history = page.get_by_role("region", name="History")
    expect(history).to_contain_text("Merge requested by manager@live.example")
    expect(history).to_contain_text("Client W – East and Client W – West into Client W – All.")
    expect(history).to_contain_text("Merge completed by the merge worker")
    expect(history).not_to_contain_text("task:merge")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    page.get_by_label("Action").select_option(label="Merge completed")
    table = page.get_by_role("table", name="Audit events, newest first")
    expect(table.get_by_role("row")).to_have_count(2)
    expect(table).to_contain_text("the merge worker")
    expect(table).to_contain_text("2 lines moved")
    page.get_by_label("Action").select_option(label="Line moved by a merge")
    expect(table).to_contain_text("from Client W – East to Client W – All by merge request")
    expect(table).not_to_contain_text("['")
    page.get_by_label("Action").select_option(label="All actions")
    expect(table).to_contain_text("Merge requested")
    screenshot(page, "audit-log-words")
    page.set_viewport_size({"width": 375, "height": 800})
    screenshot(page, "audit-log-words-phone")
    page.goto(f"{live_server.url}/requests/merge/{merge.pk}/")
    screenshot(page, "merge-history-phone")
