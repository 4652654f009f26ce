"""Analytics in a real browser: charts drawn under the CSP, the date range, sorting, a
sub-account's per-line usage and the CSV downloads."""

from __future__ import annotations

import csv
import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from portal.core import clock
from tests.analytics.support import assign_at, event, ingest, lines_at
from tests.browser.conftest import PASSWORD
from tests.factories import make_sub_account, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def build_traffic(partner):
    """Two sub-accounts busy over the last ten days (UTC partner): Alpha sends more, and
    its line A (limit 4) starts 1 + day % 4 new conversations a day, half answered."""
    # Each day's messages an hour before now, so none is in the future.
    base = clock.now().astimezone(dt.UTC) - dt.timedelta(hours=1)
    start = base - dt.timedelta(days=12)
    alpha = make_sub_account(partner, "Alpha – Sales")
    beta = make_sub_account(partner, "Beta – Support")
    line_a, line_b, line_a2 = lines_at(partner, 3, start)
    assign_at(line_a, alpha, start, daily_limit=4)
    assign_at(line_a2, alpha, start, daily_limit=20)
    assign_at(line_b, beta, start, daily_limit=10)
    events = []
    for day in range(10):
        at = base - dt.timedelta(days=day)
        for n in range(1 + day % 4):
            contact = f"+1415555{day:02d}{n:02d}"
            events.append(event(f"a{day}-{n}", line_a, "outbound", contact, at))
            if n % 2 == 0:
                events.append(
                    event(f"r{day}-{n}", line_a, "inbound", contact, at + dt.timedelta(minutes=5))
                )
        events.append(event(f"b{day}", line_b, "outbound", f"+1415556{day:04d}", at))
    report = ingest(*events)
    assert report.rejected == []
    return alpha, beta, line_a


def canvas_is_drawn(page, name: str) -> bool:
    """Some pixel of the chart's canvas is not transparent."""
    return page.evaluate(
        """(name) => {
            const c = document.querySelector(`canvas[data-chart="${name}"]`);
            if (!c || !c.width || !c.height) return false;
            const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) return true;
            return false;
        }""",
        name,
    )


def test_analytics_overview_sub_account_and_csv(live_server, page, log_in, tenant, tmp_path):
    make_user(tenant.partner, "viewer@acme.example", "viewer", password=PASSWORD)
    _alpha, _beta, line_a = build_traffic(tenant.partner)

    log_in(page, "viewer@acme.example")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Analytics").click()
    expect(page.get_by_role("heading", name="Analytics", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Last 30 days")).to_have_attribute("aria-current", "true")

    # The charts are drawn (under script-src 'self', style-src 'self') and named.
    for name in ("messages", "conversations", "usage"):
        canvas = page.locator(f'canvas[data-chart="{name}"]')
        expect(canvas).to_be_visible()
        assert canvas.get_attribute("aria-label")
        page.wait_for_function(
            'n => { const c = document.querySelector(`canvas[data-chart="${n}"]`);'
            " return c && c.width > 0; }",
            arg=name,
        )
        assert canvas_is_drawn(page, name), name
    # Their numbers stay one click away, as tables.
    tables = page.locator("details.chart-table")
    expect(tables.first).not_to_have_attribute("open", "")
    tables.first.locator("summary").click()
    expect(tables.first.get_by_role("table")).to_be_visible()

    # Change the date range: the last 7 days.
    table = page.get_by_role("table", name=re.compile("^Sub-accounts compared"))
    page.get_by_role("link", name="Last 7 days").click()
    expect(page.get_by_role("link", name="Last 7 days")).to_have_attribute("aria-current", "true")
    today = clock.now().astimezone(dt.UTC).date()
    expect(page.get_by_label("Start date")).to_have_value(str(today - dt.timedelta(days=6)))
    # A typed range, then a bad one that is refused in place.
    page.get_by_label("Start date").fill(str(today - dt.timedelta(days=3)))
    page.get_by_label("End date").fill(str(today))
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(f"start={today - dt.timedelta(days=3)}"))
    page.get_by_label("Start date").fill(str(today + dt.timedelta(days=5)))
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("alert")).to_contain_text("must be on or before the end date")
    page.get_by_role("link", name="Last 30 days").click()

    # Sort: received, largest first; then smallest first.
    table = page.get_by_role("table", name=re.compile("^Sub-accounts compared"))
    table.get_by_role("link", name=re.compile("^Received")).click()
    header = table.get_by_role("columnheader", name=re.compile("^Received"))
    expect(header).to_have_attribute("aria-sort", "descending")
    expect(table.locator("tbody tr").first).to_contain_text("Alpha – Sales")
    table.get_by_role("link", name=re.compile("^Received")).click()
    expect(header).to_have_attribute("aria-sort", "ascending")
    expect(table.locator("tbody tr").last).to_contain_text("Alpha – Sales")

    # The comparison as CSV.
    with page.expect_download() as info:
        page.get_by_role("link", name=re.compile("^Download CSV")).click()
    path = tmp_path / "compare.csv"
    info.value.save_as(path)
    rows = list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))
    assert [r["sub_account"] for r in rows][-1] == "Alpha – Sales"  # the page's order
    alpha_row = rows[-1]
    assert int(alpha_row["messages_sent"]) == sum(1 + d % 4 for d in range(10))

    # One sub-account: totals, charts and per-line usage.
    page.get_by_role("link", name="Alpha – Sales").click()
    expect(page.get_by_role("heading", name="Alpha – Sales", level=1)).to_be_visible()
    assert canvas_is_drawn(page, "messages")
    lines = page.get_by_role("table", name=re.compile("^Per-line usage"))
    expect(lines.get_by_role("row")).to_have_count(3)  # header + two lines
    lines.get_by_role("link", name=re.compile("^Days ≥ 100")).click()
    expect(lines.get_by_role("columnheader", name=re.compile("^Days ≥ 100"))).to_have_attribute(
        "aria-sort", "descending"
    )
    busiest = lines.locator("tbody tr").first
    expect(busiest).to_contain_text("4")  # line A's daily limit
    # Line A reaches its limit of 4 on the days with 4 new conversations (days 3 and 7).
    expect(busiest.locator("td").last).to_have_text("2")
    with page.expect_download() as info:
        page.get_by_role("link", name=re.compile("^Download CSV")).click()
    path = tmp_path / "lines.csv"
    info.value.save_as(path)
    line_rows = list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))
    assert line_rows[0]["number"] == "'" + line_a.number
    assert line_rows[0]["days_at_100_percent"] == "2"
