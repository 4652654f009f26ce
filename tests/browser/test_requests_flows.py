"""Merge and deletion requests clicked through in a real browser (issue 6, point 6).

The merge's background task is run inline (the services the task calls), so the
test controls when progress happens and sees the page follow it live.
"""

from __future__ import annotations

import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from portal.accounts.models import User
from portal.accounts.services import staff_create
from portal.core.principal import Principal
from portal.lines.models import Line
from portal.partners.models import SubAccount
from portal.workflows.models import DeletionRequest, MergeRequest
from portal.workflows.services import merges
from portal.workflows.tasks import process_merge_request
from tests.browser.conftest import PASSWORD
from tests.factories import SYSTEM, make_partner, make_sub_account, make_user
from tests.workflows.support import fill

pytestmark = pytest.mark.django_db(transaction=True)
RUNNER = Principal.system("task:merge")


@pytest.fixture
def partner():
    return make_partner("Acme Resellers")


@pytest.fixture
def people(partner):
    make_user(partner, "manager@acme.example", "manager", password=PASSWORD)
    make_user(partner, "admin@acme.example", "admin", password=PASSWORD)
    staff_create(principal=SYSTEM, email="ops@provider.example", password=PASSWORD)


def log_out(page) -> None:
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/login/"))


def staff_decides(page, log_in, live_server, *, button: str, reason: str | None = None) -> None:
    log_in(page, "ops@provider.example")
    page.goto(live_server.url + "/staff/approvals/")
    if reason is not None:
        page.get_by_label(re.compile(r"Reason for rejecting")).first.fill(reason)
    page.get_by_role("button", name=button).click()


def test_merge_preview_confirm_approve_progress_complete(
    live_server, page, log_in, partner, people
):
    source = make_sub_account(partner, "Client A – Sales")
    target = make_sub_account(partner, "Client A – Support")
    fill(source, 3)
    fill(target, 1)

    log_in(page, "manager@acme.example")
    page.goto(f"{live_server.url}/sub-accounts/{source.pk}/")
    page.get_by_role("link", name="Request merge").click()
    page.get_by_label("Merge into (target)").select_option(str(target.pk))
    page.get_by_role("button", name="Preview merge").click()

    preview = page.get_by_role("region", name="Preview")
    expect(preview.get_by_role("row", name=re.compile("Client A – Sales 3"))).to_be_visible()
    expect(preview).to_contain_text("No prorations")
    expect(preview).to_contain_text("next cycle")
    expect(preview).to_contain_text("analytics will include the whole history")

    page.get_by_label("Type the target's name to confirm").fill("Client A")
    page.get_by_role("button", name="Request merge").click()
    expect(page.get_by_text("“Client A – Support”, to confirm").first).to_be_visible()
    assert not MergeRequest.objects.exists()

    page.get_by_label("Type the target's name to confirm").fill("Client A – Support")
    page.get_by_role("button", name="Request merge").click()
    expect(page.get_by_role("heading", name=re.compile("Merge request #"))).to_contain_text(
        "Pending approval"
    )
    merge = MergeRequest.objects.get()
    assert SubAccount.objects.get(pk=source.pk).lock_reason
    log_out(page)

    log_in(page, "ops@provider.example")
    page.goto(live_server.url + "/staff/approvals/")
    page.get_by_role("link", name=f"Review and approve merge request #{merge.pk}").click()
    page.get_by_label("Type the target's name to confirm").fill("client a - support")
    page.get_by_role("button", name=f"Approve merge request #{merge.pk}").click()
    expect(page.get_by_text(f"Merge request #{merge.pk} approved.")).to_be_visible()
    assert mail.outbox[-1].to == ["manager@acme.example"]
    log_out(page)

    # Processing starts: one batch of one line, then the page shows it and polls.
    merges.merge_request_start(principal=RUNNER, request_id=merge.pk)
    merges.merge_request_move_batch(principal=RUNNER, request_id=merge.pk, batch_size=1)
    log_in(page, "manager@acme.example")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Requests").click()
    page.get_by_role("link", name=f"#{merge.pk} merge request").click()
    expect(page.get_by_role("status").filter(has_text="lines moved")).to_contain_text(
        "1 of 3 lines moved"
    )
    expect(page.locator("#merge-progress-bar")).to_have_attribute("value", "1")

    process_merge_request.call(merge.pk)  # the worker's task, run inline

    # The page follows the end live.
    expect(page.get_by_role("heading", name=re.compile("Merge request #"))).to_contain_text(
        "Completed", timeout=15_000
    )
    expect(page.get_by_role("status").filter(has_text="lines moved")).to_contain_text(
        "3 of 3 lines moved"
    )
    assert set(Line.objects.filter(status="active").values_list("sub_account_id", flat=True)) <= {
        target.pk,
        SubAccount.objects.get(partner=partner, kind="available").pk,
    }
    page.get_by_role("link", name="Client A – Sales").first.click()
    expect(page.get_by_text("Merged into")).to_be_visible()
    expect(page.get_by_role("link", name="Request merge")).to_have_count(0)


def test_deletion_with_disposition_approve_then_restore(live_server, page, log_in, partner, people):
    doomed = make_sub_account(partner, "Client B – Promo", contact_email="b@client.example")
    keeper = make_sub_account(partner, "Client B – Sales")
    fill(doomed, 2)

    log_in(page, "admin@acme.example")
    page.goto(f"{live_server.url}/sub-accounts/{doomed.pk}/")
    page.get_by_role("link", name="Request deletion").click()
    page.get_by_label("Move all lines to another sub-account").check()
    page.get_by_label("Move the lines to").select_option(str(keeper.pk))
    page.get_by_label("Reason").fill("Campaign over")
    page.get_by_role("button", name="Request deletion").click()
    expect(page.get_by_role("heading", name=re.compile("Deletion request #"))).to_contain_text(
        "Pending approval"
    )
    deletion = DeletionRequest.objects.get()
    log_out(page)

    staff_decides(page, log_in, live_server, button=f"Approve deletion request #{deletion.pk}")
    expect(page.get_by_text(f"Deletion request #{deletion.pk} approved.")).to_be_visible()
    assert SubAccount.objects.get(pk=doomed.pk).status == "pending_deletion"
    assert SubAccount.objects.get(pk=keeper.pk).line_count == 2
    log_out(page)

    log_in(page, "admin@acme.example")
    page.goto(f"{live_server.url}/requests/deletion/{deletion.pk}/")
    expect(page.get_by_text("restorable until then")).to_be_visible()
    page.get_by_role("button", name="Restore sub-account").click()
    expect(page.get_by_role("heading", name=re.compile("Deletion request #"))).to_contain_text(
        "Restored"
    )
    restored = SubAccount.objects.get(pk=doomed.pk)
    assert (restored.status, restored.line_count) == ("active", 0)


def test_staff_reject_needs_a_reason(live_server, page, log_in, partner, people):
    source = make_sub_account(partner, "Client C – Old")
    target = make_sub_account(partner, "Client C – New")
    merge = merges.merge_request_create(
        principal=Principal.for_user(User.objects.get(email="manager@acme.example")),
        source_ids=[source.pk],
        target_id=target.pk,
    )

    staff_decides(page, log_in, live_server, button=f"Reject merge request #{merge.pk}")
    expect(page.get_by_role("alert")).to_contain_text("reason")
    assert MergeRequest.objects.get(pk=merge.pk).status == "pending_approval"

    page.get_by_label(f"Reason for rejecting merge request #{merge.pk}").fill("Keep them apart")
    page.get_by_role("button", name=f"Reject merge request #{merge.pk}").click()
    expect(page.get_by_text(f"Merge request #{merge.pk} rejected.")).to_be_visible()
    expect(page.get_by_text("No merge request waits for approval.")).to_be_visible()
    assert "Keep them apart" in mail.outbox[-1].body
    log_out(page)

    log_in(page, "manager@acme.example")
    page.goto(f"{live_server.url}/requests/merge/{merge.pk}/")
    expect(page.get_by_role("heading", name=re.compile("Merge request #"))).to_contain_text(
        "Rejected"
    )
    expect(page.get_by_text("Keep them apart").first).to_be_visible()
