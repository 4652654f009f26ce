"""Issue 18 point 1: a sub-account's page is its workspace. Every tab shows that
sub-account only, answers 404 for another partner's, 403 for a role that may not use it,
and runs the same number of queries however much the partner holds."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal.billing.invoicing import invoice_issue
from portal.billing.money import format_amount
from portal.billing.periods import Cycle, cycle_containing
from portal.billing.summary import billing_summary, sub_account_charges
from portal.core import clock
from portal.core.clock import frozen_at
from portal.lines.services import line_move
from portal.partners.models import SubAccount
from portal.workflows.services.deletions import deletion_request_create
from portal.workflows.services.merges import merge_request_create
from tests.factories import (
    SYSTEM,
    force_state,
    make_lines,
    make_sub_account,
    make_tenant,
    make_user,
)
from tests.test_query_counts import Platform

TABS = ("", "billing/", "analytics/", "requests/", "audit/")


def client_as(tenant, role: str) -> Client:
    client = Client()
    client.force_login(make_user(tenant.partner, f"ws-{role}@acme.example", role))
    return client


def issue(partner, cycle: Cycle):
    with frozen_at(cycle.start):
        return invoice_issue(principal=SYSTEM, partner=partner, cycle=cycle)


class World:
    """A and B with their own lines, invoices, requests and events; C merging into A."""

    def __init__(self, tenant) -> None:
        partner = tenant.partner
        self.partner = partner
        self.a = make_sub_account(
            partner,
            "Client A – Sales",
            contact_name="Priya Shah",
            contact_email="priya.shah@acmedental.example",
            contact_phone="+13125552001",
            internal_reference="CL-1001",
        )
        self.b = make_sub_account(partner, "Client B – Support")
        self.c = make_sub_account(partner, "Client C – Spare")
        self.d = make_sub_account(partner, "Client D – Old")
        now = clock.now()
        this = cycle_containing(now, partner.timezone)
        two_back = this.previous().previous()
        with frozen_at(two_back.start + dt.timedelta(days=3)):
            self.lines = make_lines(partner, 3)
            for line, sa in zip(self.lines, (self.a, self.a, self.b), strict=True):
                line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=sa.pk)
        self.first = issue(partner, two_back.next())
        with frozen_at(this.previous().start + dt.timedelta(days=9)):
            # The second line leaves A for B: A's log names it, and it is B's line now.
            line_move(principal=SYSTEM, line_id=self.lines[1].pk, sub_account_id=self.b.pk)
        self.second = issue(partner, this)
        acting = SYSTEM.acting_for(partner.pk)
        self.merge = merge_request_create(
            principal=acting, source_ids=[self.c.pk], target_id=self.a.pk, reason="tidy"
        )
        self.deletion = deletion_request_create(
            principal=acting, sub_account_id=self.d.pk, line_disposition=""
        )
        self.a.refresh_from_db()
        self.b.refresh_from_db()


@pytest.fixture
def world(tenant) -> World:
    return World(tenant)


def text(client: Client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code)
    return response.content.decode()


def test_each_tab_shows_this_sub_account_only(tenant, world):
    admin = client_as(tenant, "admin")
    a, b = f"/sub-accounts/{world.a.pk}/", f"/sub-accounts/{world.b.pk}/"
    first, second, third = (line.number for line in world.lines)

    lines_a, lines_b = text(admin, a), text(admin, b)
    assert first in lines_a and second not in lines_a and third not in lines_a
    assert second in lines_b and third in lines_b and first not in lines_b

    billing_a, billing_b = text(admin, a + "billing/"), text(admin, b + "billing/")
    for invoice in (world.first, world.second):
        mine = f"/invoices/{invoice.pk}/sections/{world.a.pk}/"
        theirs = f"/invoices/{invoice.pk}/sections/{world.b.pk}/"
        assert mine in billing_a and theirs not in billing_a
        assert theirs in billing_b and mine not in billing_b
        assert admin.get(mine).status_code == 200

    analytics_a = text(admin, a + "analytics/")
    assert 'aria-label="Date range"' in analytics_a  # the Analytics page's period form

    requests_a, requests_b = text(admin, a + "requests/"), text(admin, b + "requests/")
    assert f"/requests/merge/{world.merge.pk}/" in requests_a
    assert f"/requests/merge/{world.merge.pk}/" not in requests_b
    assert f"/requests/deletion/{world.deletion.pk}/" not in requests_a
    requests_d = text(admin, f"/sub-accounts/{world.d.pk}/requests/")
    assert f"/requests/deletion/{world.deletion.pk}/" in requests_d

    audit_a, audit_b = text(admin, a + "audit/"), text(admin, b + "audit/")
    assert first in audit_a and first not in audit_b  # the first line was never B's
    assert second in audit_a and second in audit_b  # moved from A to B: names both
    assert third in audit_b and third not in audit_a
    one_line = text(admin, a + f"audit/?line={world.lines[0].pk}")
    assert first in one_line and second not in one_line


def test_tabs_mark_the_current_one_and_keep_the_header(tenant, world):
    admin = client_as(tenant, "admin")
    labels = ("Lines", "Billing", "Analytics", "Requests", "Audit log")
    for tab, label in zip(TABS, labels, strict=True):
        html = text(admin, f"/sub-accounts/{world.a.pk}/{tab}")
        nav = html[html.index('aria-label="Sub-account sections"') :]
        nav = nav[: nav.index("</nav>")]
        assert re.search(rf'aria-current="page">{label}</a>', nav), (tab, nav)
        assert nav.count('aria-current="page"') == 1
        assert "Client A – Sales" in html and "This month" in html
        assert "priya.shah@acmedental.example" in html and "CL-1001" in html
        assert "+1\u00a0312\u00a0555\u00a02001" in html  # the phone as people read it


def test_another_partners_sub_account_is_missing_on_every_tab(tenant, world):
    other = make_tenant("Other Resellers")
    theirs = make_sub_account(other.partner, "Their client")
    admin = client_as(tenant, "admin")
    for tab in TABS:
        assert admin.get(f"/sub-accounts/{theirs.pk}/{tab}").status_code == 404, tab
        assert admin.get(f"/sub-accounts/99999999999/{tab}").status_code == 404, tab
    # Even for a role the tab refuses: the wall answers first.
    viewer = client_as(tenant, "viewer")
    for tab in TABS:
        assert viewer.get(f"/sub-accounts/{theirs.pk}/{tab}").status_code == 404, tab


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("admin", {"", "billing/", "analytics/", "requests/", "audit/"}),
        ("manager", {"", "billing/", "analytics/", "requests/", "audit/"}),
        ("billing", {"", "billing/", "analytics/", "requests/", "audit/"}),
        ("viewer", {"", "analytics/"}),
    ],
)
def test_a_tab_the_role_may_not_use_is_hidden_and_refused(tenant, world, role, allowed):
    client = client_as(tenant, role)
    base = f"/sub-accounts/{world.a.pk}/"
    html = text(client, base)
    for tab in TABS:
        status = client.get(base + tab).status_code
        assert status == (200 if tab in allowed else 403), (tab, status)
        if tab:
            assert (f'href="{base}{tab}"' in html) == (tab in allowed), tab
    assert ("This month" in html) == ("billing/" in allowed)


def test_invoices_on_the_billing_tab_only_for_those_who_read_invoices(tenant, world):
    base = f"/sub-accounts/{world.a.pk}/billing/"
    link = f'href="/invoices/{world.first.pk}/"'
    assert link in text(client_as(tenant, "billing"), base)
    manager = text(client_as(tenant, "manager"), base)
    assert "Prorations accruing" in manager
    assert "/invoices/" not in manager


def test_actions_follow_role_and_state(tenant, world):
    admin, viewer = client_as(tenant, "admin"), client_as(tenant, "viewer")
    b = world.b
    html = text(admin, f"/sub-accounts/{b.pk}/")
    assert f"/sub-accounts/{b.pk}/edit/" in html
    assert f"/sub-accounts/{b.pk}/request-merge/" in html
    assert f"/sub-accounts/{b.pk}/request-deletion/" in html
    html = text(viewer, f"/sub-accounts/{b.pk}/")
    assert "/edit/" not in html and "request-merge" not in html and "request-deletion" not in html

    force_state(b, status="merged", merged_into=world.a)
    for tab in ("", "analytics/"):
        html = text(admin, f"/sub-accounts/{b.pk}/{tab}")
        assert "Client B – Support was merged into Client A – Sales; it is read-only." in html
        assert "/edit/" not in html and "request-merge" not in html
    html = text(admin, f"/sub-accounts/{world.d.pk}/")  # pending approval: locked
    assert "request-merge" not in html and "Locked:" in html
    force_state(world.d, status="pending_deletion")
    html = text(admin, f"/sub-accounts/{world.d.pk}/")
    assert "is pending deletion; it is read-only." in html and "/edit/" not in html


def test_available_has_no_merge_or_deletion_and_says_why(tenant, world):
    pool = SubAccount.objects.get(partner=tenant.partner, kind="available")
    html = text(client_as(tenant, "admin"), f"/sub-accounts/{pool.pk}/")
    assert "Edit notes" in html and "request-merge" not in html
    assert "Available cannot be merged or deleted" in html


def _summary_total(principal, sub_account_id: int):
    rows = billing_summary(principal=principal).rows
    return next(r.total for r in rows if r.sub_account_id == sub_account_id)


def test_this_months_cost_is_its_row_of_the_billing_summary(tenant, world):
    principal = SYSTEM.acting_for(tenant.partner.pk)
    admin = client_as(tenant, "admin")
    # A move this cycle: prorations accrue for both ends (A is locked by the merge).
    pool = SubAccount.objects.get(partner=tenant.partner, kind="available")
    line_move(principal=SYSTEM, line_id=world.lines[2].pk, sub_account_id=pool.pk)
    for sa in (world.b, pool):
        sa = SubAccount.objects.select_related("partner", "merged_into").get(pk=sa.pk)
        charges = sub_account_charges(principal=principal, sub_account=sa)
        assert charges.row.accruing_prorations != 0
        assert charges.row.total == _summary_total(principal, sa.pk)
        shown = format_amount(charges.row.total, charges.currency)
        assert f"{shown} {charges.currency}</strong>" in text(admin, f"/sub-accounts/{sa.pk}/")


def test_this_months_cost_before_the_cycles_invoice(tenant):
    """Without the cycle's invoice the draft is computed: the same figure as the summary."""
    partner = tenant.partner
    a = make_sub_account(partner, "Client A – Sales")
    this = cycle_containing(clock.now(), partner.timezone)
    with frozen_at(this.previous().start + dt.timedelta(days=2)):
        line = make_lines(partner, 1)[0]
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=a.pk)
    principal = SYSTEM.acting_for(partner.pk)
    a = SubAccount.objects.select_related("partner", "merged_into").get(pk=a.pk)
    charges = sub_account_charges(principal=principal, sub_account=a)
    assert charges.invoice is None and charges.row.recurring > 0
    assert charges.row.total == _summary_total(principal, a.pk)


def _tab_queries(browser: Client, url: str) -> int:
    browser.get(url)
    with CaptureQueriesContext(connection) as ctx:
        response = browser.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(ctx.captured_queries)


def test_every_tab_runs_the_same_queries_for_5_and_50_rows(tenant):
    platform = Platform(tenant.partner)
    browser = client_as(tenant, "admin")
    platform.grow_to(5)
    # The cycle's invoice, as the worker issues it: the header reads one section.
    issue(tenant.partner, cycle_containing(clock.now(), tenant.partner.timezone))

    def measure() -> dict[str, int]:
        big = platform.big.pk
        return {tab: _tab_queries(browser, f"/sub-accounts/{big}/{tab}") for tab in TABS}

    small = measure()
    platform.grow_to(50)
    large = measure()
    assert large == small
    assert max(large.values()) <= 30, large


def test_bad_page_and_line_values_are_not_errors(tenant, world):
    admin = client_as(tenant, "admin")
    assert admin.get(f"/sub-accounts/{world.a.pk}/audit/?page=x&line=abc").status_code == 200
    assert admin.get(f"/sub-accounts/{world.a.pk}/billing/?page=999").status_code == 200
