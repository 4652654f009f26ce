"""Pickers at scale in a real browser (issue 18 point 13): for a partner with 1,200
sub-accounts the merge target, another source and a deletion's destination are typed
with suggestions, and the last sub-account alphabetically can be chosen."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from portal.workflows.models import DeletionRequest, MergeRequest
from tests.browser.conftest import PASSWORD
from tests.factories import make_partner, make_sub_account, make_user
from tests.workflows.support import fill
from tests.workflows.test_pickers_at_scale import crowd

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def crowded():
    partner = make_partner("Crowded Resellers")
    crowd(partner)
    source = make_sub_account(partner, "Aardvark Source")
    fill(source, 2)
    last = make_sub_account(partner, "Zulu Target")
    make_user(partner, "admin@crowded.example", "admin", password=PASSWORD)
    return source, last


def test_merge_target_and_another_source_typed_with_suggestions(
    live_server, page, log_in, crowded, screenshot
):
    source, last = crowded
    log_in(page, "admin@crowded.example")
    page.goto(f"{live_server.url}/sub-accounts/{source.pk}/request-merge/")
    target = page.get_by_label("Merge into (target)")
    target.press_sequentially("zulu", delay=30)
    expect(page.locator('#target-options option[value="Zulu Target"]')).to_be_attached()
    target.fill("Zulu Target")
    page.get_by_label("Add another sub-account to merge").press_sequentially("1199", delay=30)
    expect(page.locator('#also-merge-options option[value="Bulk 1199"]')).to_be_attached()
    page.get_by_label("Add another sub-account to merge").fill("Bulk 1199")
    page.get_by_role("button", name="Preview merge").click()

    expect(page.get_by_role("checkbox", name=re.compile("Bulk 1199"))).to_be_checked()
    preview = page.get_by_role("region", name="Preview")
    expect(preview).to_contain_text("Total into Zulu Target")
    expect(preview.get_by_role("row", name=re.compile("Bulk 1199"))).to_be_visible()
    screenshot(page, "merge-picker-at-scale")
    page.get_by_label("Type the target's name to confirm").fill("Zulu Target")
    page.get_by_role("button", name="Request merge").click()
    expect(page.get_by_role("heading", name=re.compile("Merge request #"))).to_contain_text(
        "Pending approval"
    )
    merge = MergeRequest.objects.get()
    assert merge.target_id == last.pk
    assert {s.sub_account.name for s in merge.sources.all()} == {"Aardvark Source", "Bulk 1199"}


def test_unknown_target_is_refused_under_its_field(live_server, page, log_in, crowded):
    source, _ = crowded
    log_in(page, "admin@crowded.example")
    page.goto(f"{live_server.url}/sub-accounts/{source.pk}/request-merge/")
    page.get_by_label("Merge into (target)").fill("Nobody Here")
    page.get_by_role("button", name="Preview merge").click()
    expect(page.get_by_text("No active sub-account is named “Nobody Here”.").first).to_be_visible()
    assert not MergeRequest.objects.exists()


def test_deletion_destination_typed_with_suggestions(live_server, page, log_in, crowded):
    source, last = crowded
    log_in(page, "admin@crowded.example")
    page.goto(f"{live_server.url}/sub-accounts/{source.pk}/request-deletion/")
    page.get_by_label("Move all lines to another sub-account").check()
    destination = page.get_by_label("Move the lines to")
    destination.press_sequentially("Zulu", delay=30)
    expect(page.locator('#move-to-options option[value="Zulu Target"]')).to_be_attached()
    destination.fill("Zulu Target")
    page.get_by_role("button", name="Request deletion").click()
    expect(page.get_by_role("heading", name=re.compile("Deletion request #"))).to_contain_text(
        "Pending approval"
    )
    assert DeletionRequest.objects.get().move_to_id == last.pk
