"""Staff approve an irreversible merge on a page that shows what will move and asks for the
target's name, typed however its dashes come out (issue 18, point 6)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from portal.accounts.services import staff_create
from portal.core.principal import Principal
from portal.workflows.models import MergeRequest
from portal.workflows.services import merges
from tests.browser.conftest import PASSWORD
from tests.factories import SYSTEM, make_sub_account, make_user
from tests.workflows.support import fill

pytestmark = pytest.mark.django_db(transaction=True)


def test_staff_confirm_a_merge_seeing_sources_target_and_line_counts(
    live_server, page, log_in, screenshot, tenant
):
    staff_create(principal=SYSTEM, email="ops@provider.example", password=PASSWORD)
    manager = make_user(tenant.partner, "manager@acme.example", "manager", password=PASSWORD)
    sales = make_sub_account(tenant.partner, "Client ABC – Sales")
    promo = make_sub_account(tenant.partner, "Client ABC – Promo")
    target = make_sub_account(tenant.partner, "Client ABC – Sales Campaign")
    fill(sales, 3)
    fill(promo, 2)
    merge = merges.merge_request_create(
        principal=Principal.for_user(manager),
        source_ids=[sales.pk, promo.pk],
        target_id=target.pk,
        reason="One campaign now",
    )

    log_in(page, "ops@provider.example")
    page.goto(live_server.url + "/staff/approvals/")
    page.get_by_role("link", name=f"Review and approve merge request #{merge.pk}").click()
    moves = page.get_by_role("table", name="What will move")
    expect(
        moves.get_by_role("row", name="Client ABC – Sales Client ABC – Sales Campaign 3")
    ).to_be_visible()
    expect(moves.get_by_role("row").filter(has_text="Client ABC – Promo")).to_contain_text("2")
    expect(moves.get_by_role("row").filter(has_text="Total into")).to_contain_text("5")
    expect(page.get_by_text("A merge cannot be undone.")).to_be_visible()

    # A part of the name is refused, in place, and focus goes to the field.
    field = page.get_by_label("Type the target's name to confirm")
    field.fill("Client ABC")
    page.get_by_role("button", name=f"Approve merge request #{merge.pk}").click()
    refusal = "Type the target's name, “Client ABC – Sales Campaign”, to confirm"
    expect(page.get_by_text(refusal).first).to_be_visible()
    field = page.get_by_label("Type the target's name to confirm")
    expect(field).to_be_focused()
    expect(field).to_have_attribute("aria-invalid", "true")
    screenshot(page, "staff-merge-confirmation-refused")
    assert MergeRequest.objects.get(pk=merge.pk).status == "pending_approval"

    # Typed with a hyphen for the en dash and in lower case: the same name.
    field.fill("client abc - sales campaign")
    screenshot(page, "staff-merge-confirmation")
    page.get_by_role("button", name=f"Approve merge request #{merge.pk}").click()
    expect(page.get_by_text(f"Merge request #{merge.pk} approved.")).to_be_visible()
    assert MergeRequest.objects.get(pk=merge.pk).status == "approved"
