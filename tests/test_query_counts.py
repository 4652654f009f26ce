"""Lists and pages run a fixed number of queries whatever they hold (issue 7; bulk work is
set-based: docs/architecture.md, "Rules that keep it correct").

Each endpoint and page is measured with 5 rows of everything and again with 50 (50
sub-accounts, 100 lines, 50 orders, 50 invoices, hundreds of audit events): the number
of queries must be the same. Every request is made once before it is counted, so
throttled bookkeeping (an API key's ``last_used_at``, a session's refresh) falls on the
uncounted call.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal.billing.invoicing import invoice_issue
from portal.billing.periods import Cycle
from portal.core.clock import frozen_at
from portal.lines.services import line_move, line_order_create
from portal.partners.models import SubAccount, SubAccountKind
from tests.factories import SYSTEM, make_lines, make_sub_account, make_user

SMALL, LARGE = 5, 50


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    """No collectstatic in tests: serve assets by their plain names."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


class Platform:
    """A partner grown step by step to ``n`` of everything, through the services."""

    def __init__(self, partner) -> None:
        self.partner = partner
        self.subs: list[SubAccount] = []
        self.invoices = 0

    def grow_to(self, n: int) -> None:
        partner = self.partner
        new = [make_sub_account(partner) for _ in range(n - len(self.subs))]
        self.subs.extend(new)
        # One line into each new sub-account, and as many again into the first one.
        lines = make_lines(partner, 2 * len(new))
        for line, sa in zip(lines, new + [self.subs[0]] * len(new), strict=True):
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=sa.pk)
        for _ in new:
            # An area code with no stock: these stay pending and leave later imports alone.
            line_order_create(principal=SYSTEM.acting_for(partner.pk), quantity=1, area_code="999")
        # One invoice a month, from January 2020 (long before the lines: empty invoices
        # are listed like any other).
        while self.invoices < n:
            cycle = Cycle(2020 + self.invoices // 12, 1 + self.invoices % 12, partner.timezone)
            with frozen_at(cycle.start):
                invoice_issue(principal=SYSTEM, partner=partner, cycle=cycle)
            self.invoices += 1

    @property
    def big(self) -> SubAccount:
        """The sub-account holding the most lines."""
        return self.subs[0]

    @property
    def pool(self) -> SubAccount:
        return SubAccount.objects.get(partner=self.partner, kind=SubAccountKind.AVAILABLE)


def queries(call: Callable[[], object]) -> int:
    call()  # throttled bookkeeping happens here, uncounted
    with CaptureQueriesContext(connection) as ctx:
        response = call()
    assert response.status_code == 200, (response.status_code, response.content[:300])
    return len(ctx.captured_queries)


def measure(platform: Platform, api, browser: Client) -> dict[str, int]:
    big = platform.big.pk
    api_paths = [
        "/sub-accounts",
        "/lines",
        f"/lines?sub_account_id={big}",
        "/line-orders",
        "/audit-events",
        "/invoices",
        "/billing/summary",
        "/billing/resale",
        "/billing/margins",
        "/notifications",  # the shared inbox: an item per invoice
    ]
    pages = [
        "/sub-accounts/",
        "/sub-accounts/?sort=-lines",
        # Sorted by a figure: every sub-account's cost and last 30 days, ordered in Python.
        "/sub-accounts/?sort=-this_month",
        "/sub-accounts/?sort=-volume_limit_usage",
        "/sub-accounts/?status=all&sort=flags",
        f"/sub-accounts/{big}/",
        "/lines/",
        f"/lines/?sub_account={big}",
        "/invoices/",
        "/billing/",
        "/billing/resale/",
        "/billing/margins/",
        "/audit/",
        "/notifications/",  # the admin's inbox: an item per invoice
    ]
    counts = {f"API {p}": queries(lambda p=p: api.get(p, limit=500)) for p in api_paths}
    counts.update({f"page {p}": queries(lambda p=p: browser.get(p)) for p in pages})
    return counts


def test_lists_and_pages_run_the_same_queries_for_5_and_50_rows(api, tenant):
    platform = Platform(tenant.partner)
    admin = make_user(tenant.partner, "counts-admin@example.com", "admin")
    browser = Client()
    browser.force_login(admin)

    platform.grow_to(SMALL)
    small = measure(platform, api, browser)
    platform.grow_to(LARGE)
    large = measure(platform, api, browser)

    assert large == small
    # The pages really grew: the lists hold the larger numbers now.
    assert api.get("/sub-accounts", limit=500).json()["count"] == LARGE + 1  # + Available
    lines = api.get("/lines", sub_account_id=platform.big.pk, limit=500).json()
    assert lines["count"] == LARGE + 1
    assert api.get("/invoices", limit=500).json()["count"] == LARGE
    assert api.get("/audit-events", limit=500).json()["count"] > 2 * LARGE
    summary = api.get("/billing/summary").json()
    assert len(summary["sub_accounts"]) >= LARGE
    # And stayed small: a page is a handful of queries, not one per row. The Sub-accounts
    # list reads Billing's summary (here drafting the month's invoice: not issued in this
    # test) and the Analytics comparison's figures besides its own rows.
    listing = {k: v for k, v in large.items() if k.split("?")[0] == "page /sub-accounts/"}
    assert max(listing.values()) <= 30, listing
    assert max(v for k, v in large.items() if k not in listing) <= 25, large


# --- Deep pages: ids from the index first, the same rows --------------------------------


def test_deep_pages_read_ids_first_and_give_the_same_rows(tenant, monkeypatch):
    from django.db.models import QuerySet

    from portal.lines.models import Line
    from portal.lines.selectors import line_list
    from portal.partners.models import DeferredJoinQuerySet
    from portal.partners.selectors import sub_account_list
    from portal.partners.views import _standard_page

    platform = Platform(tenant.partner)
    platform.grow_to(8)  # 8 sub-accounts + Available, 16 lines, 9 of them in the first
    principal = tenant.principal()
    monkeypatch.setattr(DeferredJoinQuerySet, "DEFERRED_JOIN_OFFSET", 2)

    listed = sub_account_list(principal=principal)
    querysets = [
        listed,
        listed.values("id", "name", "line_count"),
        *(_standard_page(listed, sort) for sort in ("name", "-name", "lines", "-lines")),
        line_list(principal=principal).select_related("sub_account"),
        line_list(principal=principal, sub_account_id=platform.big.pk),
    ]
    for qs in querysets:
        for offset in range(12):
            page = qs[offset : offset + 3]
            plain = QuerySet.__getitem__(qs, slice(offset, offset + 3))
            if offset >= 2:
                assert "IN (SELECT" in str(page.query).upper()
            assert list(page) == list(plain), (str(qs.query), offset)
    # Deep or not, one query for the page.
    deep = line_list(principal=principal)[10:13]
    with CaptureQueriesContext(connection) as ctx:
        rows = list(deep)
    assert len(ctx.captured_queries) == 1 and len(rows) == 3
    assert all(isinstance(row, Line) for row in rows)


def test_a_sub_accounts_lines_are_its_active_lines(tenant):
    from portal.lines.models import Line, LineStatus
    from portal.lines.selectors import line_list
    from portal.lines.services import line_disconnect

    platform = Platform(tenant.partner)
    platform.grow_to(3)
    big = platform.big
    principal = tenant.principal()
    first = Line.objects.filter(sub_account=big).order_by("pk").first()
    line_disconnect(principal=SYSTEM, line_id=first.pk)
    expected = list(
        Line.objects.filter(sub_account=big, status=LineStatus.ACTIVE).order_by("number", "pk")
    )
    assert len(expected) == 3  # one of its four lines is gone
    for status in (None, "active"):
        assert list(line_list(principal=principal, sub_account_id=big.pk, status=status)) == (
            expected
        )
    assert not line_list(principal=principal, sub_account_id=big.pk, status="disconnected")
    assert first in line_list(principal=principal, status="disconnected")


def test_line_counts_from_the_sub_accounts_match_the_lines(tenant, other_tenant):
    from portal.lines.selectors import line_list, line_list_count
    from portal.lines.services import line_disconnect

    for partner in (tenant.partner, other_tenant.partner):
        platform = Platform(partner)
        platform.grow_to(4)
        make_lines(partner, 2)  # two more in Available
    principal = tenant.principal()
    some = line_list(principal=principal, status="active").first()
    line_disconnect(principal=SYSTEM, line_id=some.pk)
    sub_accounts = [None, *SubAccount.objects.filter(partner=tenant.partner), 2**70]
    for sub_account in sub_accounts:
        sub_account_id = getattr(sub_account, "pk", sub_account)
        for status, search in (("active", None), ("active", "555"), (None, None)):
            criteria = {"sub_account_id": sub_account_id, "status": status, "search": search}
            known = line_list_count(principal=principal, **criteria)
            if search or status is None:
                assert known is None
            else:
                assert known == line_list(principal=principal, **criteria).count()
    # Staff see every partner's lines, and their count.
    staff = SYSTEM
    assert line_list_count(principal=staff, status="active") == (
        line_list(principal=staff, status="active").count()
    )
    admin = make_user(tenant.partner, "count-page@example.com", "admin")
    browser = Client()
    browser.force_login(admin)
    active = line_list(principal=principal, status="active").count()
    assert f"{active} lines." in browser.get("/lines/").content.decode()
