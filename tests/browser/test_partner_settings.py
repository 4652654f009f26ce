"""Settings → Partner in a real browser: an admin turns on self-service approvals, and
then another admin approves, from the request's page, a merge the first one asked for
(the requester sees no Approve); refusals show on their fields; the page fits a phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from portal.accounts.models import User
from portal.core.principal import Principal
from portal.partners.models import Partner
from portal.workflows.services import merges
from tests.browser.conftest import PASSWORD
from tests.factories import make_partner, make_sub_account, make_user
from tests.workflows.support import fill

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def partner():
    partner = make_partner("Acme Resellers", timezone="America/New_York")
    make_user(partner, "ann@acme.example", "admin", password=PASSWORD)
    make_user(partner, "bob@acme.example", "admin", password=PASSWORD)
    return partner


def log_out(page) -> None:
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/login/"))


def test_self_service_lets_another_admin_approve_from_the_request_page(
    live_server, page, log_in, partner, screenshot
):
    source = make_sub_account(partner, "Client A – Sales")
    target = make_sub_account(partner, "Client A – Support")
    fill(source, 2)
    ann = Principal.for_user(User.objects.get(email="ann@acme.example"))
    merge = merges.merge_request_create(principal=ann, source_ids=[source.pk], target_id=target.pk)
    request_url = f"{live_server.url}/requests/merge/{merge.pk}/"

    log_in(page, "ann@acme.example")
    page.goto(request_url)
    expect(page.get_by_role("heading", name=re.compile("Merge request #"))).to_contain_text(
        "Pending approval"
    )
    expect(page.get_by_role("button", name=re.compile("^Approve"))).to_have_count(0)

    page.get_by_role("link", name="Settings").first.click()
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Partner").click()
    expect(page.get_by_role("link", name="Partner", exact=True)).to_have_attribute(
        "aria-current", "page"
    )
    provider = page.get_by_role("region", name="Set by your provider")
    expect(provider).to_contain_text("America/New_York")
    expect(provider).to_contain_text("50.00 USD")
    toggle = page.get_by_role("checkbox", name="Self-service approvals")
    expect(toggle).not_to_be_checked()
    toggle.check()
    page.get_by_label("Display name for your clients").fill("Acme Connect")
    screenshot(page, "partner-settings-1280")
    page.get_by_role("button", name="Save partner settings").click()
    expect(page.get_by_text("Partner settings saved.")).to_be_visible()
    expect(page.get_by_role("checkbox", name="Self-service approvals")).to_be_checked()
    expect(page.get_by_label("Display name for your clients")).to_have_value("Acme Connect")
    assert Partner.objects.get(pk=partner.pk).self_service_requests is True

    # The requester still may not approve their own request.
    page.goto(request_url)
    expect(page.get_by_role("button", name=re.compile("^Cancel request"))).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("^Approve"))).to_have_count(0)
    log_out(page)

    log_in(page, "bob@acme.example")
    page.goto(request_url)
    page.get_by_label("Type the target's name to confirm").fill("Client A – Support")
    page.get_by_role("button", name=re.compile("^Approve")).click()
    expect(page.get_by_role("heading", name=re.compile("Merge request #"))).not_to_contain_text(
        "Pending approval"
    )
    merge.refresh_from_db()
    assert merge.status in {"approved", "processing", "completed"}
    assert merge.decided_by_label == "bob@acme.example"


def test_refusals_show_on_their_fields_and_the_page_fits_a_phone(
    live_server, page, log_in, partner, screenshot
):
    log_in(page, "ann@acme.example")
    page.goto(live_server.url + "/settings/partner/")
    limit = page.get_by_label("Default daily limit for new lines")
    days = page.get_by_label("Days a deleted sub-account can be restored")
    expect(limit).to_have_value("50")
    expect(days).to_have_value("30")
    limit.fill("0")
    days.fill("400")
    page.get_by_role("button", name="Save partner settings").click()
    expect(page.get_by_role("alert")).to_contain_text("There are 2 problems to fix")
    expect(limit).to_have_attribute("aria-invalid", "true")
    expect(limit).to_have_accessible_description(re.compile("between 1 and 100,000"))
    expect(days).to_have_accessible_description(re.compile("between 7 and 365"))
    assert Partner.objects.get(pk=partner.pk).default_daily_limit == 50
    limit.fill("120")
    days.fill("14")
    page.get_by_role("button", name="Save partner settings").click()
    expect(page.get_by_text("Partner settings saved.")).to_be_visible()
    fresh = Partner.objects.get(pk=partner.pk)
    assert (fresh.default_daily_limit, fresh.deletion_retention_days) == (120, 14)

    page.set_viewport_size({"width": 375, "height": 780})
    page.reload()
    screenshot(page, "partner-settings-375")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    expect(page.get_by_role("button", name="Save partner settings")).to_be_visible()
