"""Analytics pages without a browser: the figures are the API's, sorting, paging, CSV,
tenant walls, roles, bad dates, and a query count that does not grow with the partner."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal.accounts.services import staff_create
from portal.analytics import views
from portal.web.principal import ACTING_PARTNER_SESSION_KEY
from tests.analytics.support import T0, assign_at, event, ingest, lines_at, utc
from tests.conftest import Api
from tests.factories import SYSTEM, force_state, make_sub_account, make_user

PERIOD = {"start": "2025-03-01", "end": "2025-03-03"}


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    """No collectstatic in tests: serve assets by their plain names."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def client_for(user, acting_for=None) -> Client:
    client = Client()
    client.force_login(user)
    if acting_for is not None:
        session = client.session
        session[ACTING_PARTNER_SESSION_KEY] = acting_for.pk
        session.save()
    return client


@pytest.fixture
def book(tenant):
    """Alpha: one line (limit 3); Beta: one line (limit 4) and from noon on 2 March a
    second one (limit 50); Gamma (named like a formula) merged into Beta.

    1 March  Alpha: new c1 (answered), c2, c7 -> 3 new = its limit (over-pressured)
             Beta:  new c4 (answered)
    2 March  Alpha: new c3
             Beta:  c5 writes first (inbound conversation), Beta replies
             Gamma: new c6 (answered), then Gamma is merged into Beta
    """
    partner = tenant.partner
    line_a, line_b, line_c, line_g = lines_at(partner, 4, T0)
    alpha = make_sub_account(partner, "Alpha – Sales")
    beta = make_sub_account(partner, "Beta – Support")
    gamma = make_sub_account(partner, "=Gamma+1")
    assign_at(line_a, alpha, T0, daily_limit=3)
    assign_at(line_b, beta, T0, daily_limit=4)
    assign_at(line_c, beta, utc("2025-03-02 12:00"), daily_limit=50)
    assign_at(line_g, gamma, T0, daily_limit=10)
    report = ingest(
        event("a1", line_a, "outbound", "+14155550101", utc("2025-03-01 09:00")),
        event("a2", line_a, "outbound", "+14155550102", utc("2025-03-01 10:00")),
        event("a3", line_a, "inbound", "+14155550101", utc("2025-03-01 11:00")),
        event("a4", line_a, "outbound", "+14155550107", utc("2025-03-01 12:00")),
        event("a5", line_a, "outbound", "+14155550103", utc("2025-03-02 09:00")),
        event("b1", line_b, "outbound", "+14155550104", utc("2025-03-01 09:00")),
        event("b2", line_b, "inbound", "+14155550104", utc("2025-03-01 09:30")),
        event("b3", line_b, "inbound", "+14155550105", utc("2025-03-02 09:00")),
        event("b4", line_b, "outbound", "+14155550105", utc("2025-03-02 10:00")),
        event("g1", line_g, "outbound", "+14155550106", utc("2025-03-02 09:00")),
        event("g2", line_g, "inbound", "+14155550106", utc("2025-03-02 09:05")),
    )
    assert (report.accepted, report.rejected) == (11, [])
    force_state(gamma, status="merged", merged_into=beta)
    return {
        "alpha": alpha,
        "beta": beta,
        "gamma": gamma,
        "lines": {"a": line_a, "b": line_b, "c": line_c, "g": line_g},
    }


@pytest.fixture
def viewer(tenant):
    return client_for(make_user(tenant.partner, "viewer@acme.example", "viewer"))


def parse_csv(response) -> list[dict[str, str]]:
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def row_names(response) -> list[str]:
    return [row["name"] for row in response.context["rows"]]


# --- The overview -----------------------------------------------------------------------


def test_the_overview_shows_the_apis_figures(tenant, book, viewer):
    api_body = Api(tenant.keys["viewer"]).get("/analytics/sub-accounts", **PERIOD).json()
    response = viewer.get("/analytics/", PERIOD)
    assert response.status_code == 200
    html = response.content.decode()
    assert '<a href="/analytics/" aria-current="page">Analytics</a>' in html
    # Every row of the table matches the API's item, formatted.
    api_rows = {item["sub_account_id"]: item for item in api_body["items"]}
    page_rows = {row["sub_account_id"]: row for row in response.context["rows"]}
    assert page_rows.keys() == api_rows.keys()  # merged Gamma is not listed
    assert book["gamma"].pk not in page_rows
    for sa_id, item in api_rows.items():
        row = page_rows[sa_id]
        assert row["name"] == item["name"]
        for name in ("messages_sent", "messages_received", "new_conversations"):
            assert row[name] == f"{item[name]:,}"
        assert [key for key, _ in row["flags"]] == item["flags"]
    alpha = page_rows[book["alpha"].pk]
    assert alpha["response_rate"] == "25.0\u00a0%"
    assert ("over_pressured", "Over-pressured") in alpha["flags"]
    assert "Over-pressured</span>" in html
    # Beta includes merged Gamma's history: b1, b4 and g1 sent.
    assert page_rows[book["beta"].pk]["messages_sent"] == "3"
    # Partner totals are the sums of the rows.
    totals = dict((label, value) for label, value, _ in response.context["totals"])
    assert totals["Messages sent"] == str(sum(i["messages_sent"] for i in api_body["items"]))
    assert totals["Messages received"] == str(
        sum(i["messages_received"] for i in api_body["items"])
    )
    assert totals["New conversations"] == str(
        sum(i["new_conversations"] for i in api_body["items"])
    )
    assert totals["Over-pressured line-days"] == "1"
    # Each row links to the sub-account's view for the same dates.
    assert (
        f'href="/analytics/sub-accounts/{book["alpha"].pk}/?start=2025-03-01&amp;end=2025-03-03"'
        in html
    )


def test_the_daily_series_matches_the_sum_of_sub_accounts(tenant, book, viewer):
    response = viewer.get("/analytics/", PERIOD)
    data = response.context["charts"]["data"]
    assert data["days"] == ["2025-03-01", "2025-03-02", "2025-03-03"]
    assert data["sent"] == [4, 3, 0]  # a1 a2 a4 b1 | a5 b4 g1
    assert data["received"] == [2, 2, 0]
    assert data["new"] == [4, 2, 0]
    assert data["responded"] == [2, 1, 0]
    api = Api(tenant.keys["viewer"])
    per_day = [0, 0, 0]
    for sa in (book["alpha"], book["beta"]):
        body = api.get(f"/sub-accounts/{sa.pk}/analytics", **PERIOD).json()
        for i, day in enumerate(body["days"]):
            per_day[i] += day["messages_sent"]
    assert per_day == data["sent"]
    html = response.content.decode()
    # The numbers are also on the page as tables, and the data block is JSON, not code.
    assert '<script id="analytics-daily" type="application/json">' in html
    assert html.count("Show as table") == 3
    # Without scripts the tables are what shows: they start open, the charts hidden.
    assert html.count('<details class="chart-table" open>') == 3
    assert html.count('<div class="chart-box" hidden>') == 3
    assert 'role="img" aria-label="Bar chart: messages sent and received per day' in html


def test_the_default_period_is_the_last_30_days(book, viewer):
    response = viewer.get("/analytics/")
    assert response.status_code == 200
    period = response.context["period"]
    assert (period.end - period.start).days == 29
    presets = response.context["presets"]
    assert [p["label"] for p in presets] == ["Last 7 days", "Last 30 days", "Last 90 days"]
    assert [p["current"] for p in presets] == [False, True, False]


@pytest.mark.parametrize(
    ("sort", "expected", "aria"),
    [
        ("", ["Available", "Alpha – Sales", "Beta – Support"], None),
        ("name", ["Alpha – Sales", "Available", "Beta – Support"], ("Sub-account", "ascending")),
        ("-name", ["Beta – Support", "Available", "Alpha – Sales"], ("Sub-account", "descending")),
        (
            "-messages_sent",
            ["Alpha – Sales", "Beta – Support", "Available"],
            ("Sent", "descending"),
        ),
        (
            "messages_received",
            ["Available", "Alpha – Sales", "Beta – Support"],
            ("Received", "ascending"),
        ),
        # Empty rates sort last in either direction.
        (
            "response_rate",
            ["Alpha – Sales", "Beta – Support", "Available"],
            ("Response rate", "ascending"),
        ),
        (
            "-response_rate",
            ["Beta – Support", "Alpha – Sales", "Available"],
            ("Response rate", "descending"),
        ),
        ("-flags", ["Alpha – Sales", "Available", "Beta – Support"], ("Flags", "descending")),
        ("nonsense", ["Available", "Alpha – Sales", "Beta – Support"], None),
    ],
)
def test_sorting_by_a_column(book, viewer, sort, expected, aria):
    response = viewer.get("/analytics/", {**PERIOD, "sort": sort})
    assert response.status_code == 200
    assert row_names(response) == expected
    html = response.content.decode()
    sorted_headers = re.findall(r'aria-sort="(\w+)">\s*<a class="sort-link" [^>]*>([^<]+)<', html)
    assert sorted_headers == ([] if aria is None else [(aria[1], aria[0])])


def test_every_column_sorts_and_links_carry_the_dates(book, viewer):
    for column in views.COMPARISON_COLUMNS:
        for sort in (column.key, f"-{column.key}"):
            response = viewer.get("/analytics/", {**PERIOD, "sort": sort})
            assert response.status_code == 200
            assert len(response.context["rows"]) == 3
    html = viewer.get("/analytics/", {**PERIOD, "sort": "-messages_sent"}).content.decode()
    # The current sort's link flips it; the others start largest first.
    assert 'href="?start=2025-03-01&amp;end=2025-03-03&amp;sort=messages_sent"' in html
    assert 'href="?start=2025-03-01&amp;end=2025-03-03&amp;sort=-messages_received"' in html
    assert 'href="?start=2025-03-01&amp;end=2025-03-03&amp;sort=name"' in html


def test_the_comparison_pages_through_many_sub_accounts(tenant, viewer, monkeypatch):
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    for i in range(4):
        make_sub_account(tenant.partner, f"Client {i}")
    first = viewer.get("/analytics/", {**PERIOD, "sort": "name"})
    assert row_names(first) == ["Available", "Client 0"]
    html = first.content.decode()
    assert 'href="?start=2025-03-01&amp;end=2025-03-03&amp;sort=name&amp;page=2"' in html
    third = viewer.get("/analytics/", {**PERIOD, "sort": "name", "page": "3"})
    assert row_names(third) == ["Client 3"]
    assert viewer.get("/analytics/", {**PERIOD, "page": "zzz"}).status_code == 200


def test_the_comparison_csv(tenant, book, viewer):
    api_items = Api(tenant.keys["viewer"]).get("/analytics/sub-accounts", **PERIOD).json()["items"]
    response = viewer.get("/analytics/sub-accounts.csv", {**PERIOD, "sort": "-messages_sent"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        'attachment; filename="analytics-sub-accounts-2025-03-01-to-2025-03-03.csv"'
    )
    rows = parse_csv(response)
    assert [r["sub_account"] for r in rows] == ["Alpha – Sales", "Beta – Support", "Available"]
    by_id = {int(r["sub_account_id"]): r for r in rows}
    for item in api_items:
        r = by_id[item["sub_account_id"]]
        assert (r["start"], r["end"]) == ("2025-03-01", "2025-03-03")
        for name in views.COMPARISON_CSV_HEADER[4:-1]:
            expected = "" if item[name] is None else str(item[name])
            assert r[name] == expected, name
        assert r["flags"] == ";".join(item["flags"])
    alpha = by_id[book["alpha"].pk]
    assert alpha["response_rate"] == "0.25"  # a number a spreadsheet can sum, not "25.0 %"
    assert float(alpha["volume_limit_usage"]) > 0


def test_csv_cells_that_look_like_formulas_are_neutralised(tenant, book, viewer):
    # Gamma ("=Gamma+1") is merged; once active again it is listed, and must not run.
    force_state(book["gamma"], status="active", merged_into=None)
    rows = parse_csv(viewer.get("/analytics/sub-accounts.csv", PERIOD))
    assert "'=Gamma+1" in [r["sub_account"] for r in rows]
    lines = parse_csv(viewer.get(f"/analytics/sub-accounts/{book['gamma'].pk}/lines.csv", PERIOD))
    assert lines[0]["sub_account"] == "'=Gamma+1"
    assert lines[0]["number"] == "'" + book["lines"]["g"].number  # "+1…" could be a formula


# --- One sub-account ------------------------------------------------------------------------


def test_the_sub_account_view_shows_the_apis_totals_and_per_line_usage(tenant, book, viewer):
    beta = book["beta"]
    body = Api(tenant.keys["viewer"]).get(f"/sub-accounts/{beta.pk}/analytics", **PERIOD).json()
    response = viewer.get(f"/analytics/sub-accounts/{beta.pk}/", PERIOD)
    assert response.status_code == 200
    totals = dict((label, value) for label, value, _ in response.context["totals"])
    assert totals["Messages sent"] == str(body["totals"]["messages_sent"]) == "3"
    assert totals["Inbound conversations"] == "1"
    assert response.context["charts"]["data"]["sent"] == [d["messages_sent"] for d in body["days"]]
    assert response.context["merged_count"] == 1
    assert "includes the history of 1 sub-account merged into it" in response.content.decode()

    lines = {u.line_id: u for u in response.context["page_obj"]}
    b, c, g = (book["lines"][k] for k in "bcg")
    assert set(lines) == {b.pk, c.pk, g.pk}  # Gamma's line counts under Beta
    assert (lines[b.pk].messages_sent, lines[b.pk].messages_received) == (2, 2)
    assert lines[b.pk].new_conversations == 1
    assert lines[b.pk].active_line_days == 3
    assert lines[b.pk].average_usage == round(1 / (4 * 3), 4)
    assert lines[b.pk].peak_usage == 0.25
    assert lines[c.pk].messages_sent == 0
    assert lines[c.pk].active_line_days == 2  # from noon on 2 March
    assert lines[c.pk].peak_usage == 0.0
    assert lines[g.pk].new_conversations == 1
    # Σ over lines equals the sub-account's totals.
    assert sum(u.messages_sent for u in lines.values()) == body["totals"]["messages_sent"]
    assert sum(u.new_conversations for u in lines.values()) == body["totals"]["new_conversations"]


def test_per_line_pressure_and_sorting(book, viewer):
    alpha, line_a = book["alpha"], book["lines"]["a"]
    response = viewer.get(f"/analytics/sub-accounts/{alpha.pk}/", PERIOD)
    (usage,) = response.context["page_obj"]
    assert usage.line_id == line_a.pk
    assert (usage.new_conversations, usage.daily_limit) == (4, 3)
    assert usage.peak_usage == 1.0  # 3 new on 1 March = its limit
    assert (usage.near_limit_line_days, usage.over_pressured_line_days) == (1, 1)
    assert usage.average_usage == round(4 / (3 * 3), 4)

    beta = book["beta"]
    for column in views.LINE_COLUMNS:
        for sort in (column.key, f"-{column.key}"):
            assert (
                viewer.get(
                    f"/analytics/sub-accounts/{beta.pk}/", {**PERIOD, "sort": sort}
                ).status_code
                == 200
            )
    ordered = viewer.get(f"/analytics/sub-accounts/{beta.pk}/", {**PERIOD, "sort": "-daily_limit"})
    assert [u.daily_limit for u in ordered.context["page_obj"]] == [50, 10, 4]
    assert 'aria-sort="descending"' in ordered.content.decode()


def test_the_per_line_csv(book, viewer):
    beta = book["beta"]
    response = viewer.get(
        f"/analytics/sub-accounts/{beta.pk}/lines.csv", {**PERIOD, "sort": "-messages_sent"}
    )
    assert response.status_code == 200
    assert (
        f"analytics-lines-{beta.pk}-2025-03-01-to-2025-03-03.csv" in response["Content-Disposition"]
    )
    rows = parse_csv(response)
    assert list(rows[0]) == views.LINES_CSV_HEADER
    assert [int(r["messages_sent"]) for r in rows] == [2, 1, 0]
    first = rows[0]
    assert first["sub_account"] == "Beta – Support"
    assert (first["daily_limit"], first["new_conversations"], first["active_line_days"]) == (
        "4",
        "1",
        "3",
    )
    assert first["average_usage"] == str(round(1 / 12, 4))
    assert first["peak_usage"] == "0.25"


def test_a_merged_sub_account_points_to_its_target(book, viewer):
    response = viewer.get(f"/analytics/sub-accounts/{book['gamma'].pk}/", PERIOD)
    assert response.status_code == 200
    assert "its history is counted there" in response.content.decode()
    assert response.context["merged_into"]["pk"] == book["beta"].pk


# --- Walls, roles, bad input -------------------------------------------------------------


def test_another_partners_sub_account_is_not_found(book, other_tenant):
    rival = client_for(make_user(other_tenant.partner, "admin@rival.example", "admin"))
    alpha = book["alpha"].pk
    for url in (f"/analytics/sub-accounts/{alpha}/", f"/analytics/sub-accounts/{alpha}/lines.csv"):
        response = rival.get(url, PERIOD)
        assert response.status_code == 404
        assert b"Alpha" not in response.content
    # ... even with bad dates: the wall answers first.
    assert rival.get(f"/analytics/sub-accounts/{alpha}/", {"start": "x"}).status_code == 404
    assert rival.get("/analytics/sub-accounts/999999/").status_code == 404
    # Their own overview does not list our sub-accounts.
    html = rival.get("/analytics/", PERIOD).content.decode()
    assert "Alpha" not in html and "Beta" not in html


@pytest.mark.parametrize("role", ["admin", "manager", "billing", "viewer"])
def test_every_partner_role_reads_analytics(tenant, book, role):
    client = client_for(make_user(tenant.partner, f"{role}@acme.example", role))
    assert client.get("/analytics/", PERIOD).status_code == 200
    assert client.get(f"/analytics/sub-accounts/{book['alpha'].pk}/", PERIOD).status_code == 200
    assert client.get("/analytics/sub-accounts.csv", PERIOD).status_code == 200


def test_staff_choose_a_partner_first_then_read_its_analytics(tenant, book):
    staff = staff_create(
        principal=SYSTEM, email="psm@provider.example", password="correct-horse-42"
    )
    response = client_for(staff).get("/analytics/")
    assert response.status_code == 200
    assert "Choose a partner" in response.content.decode()
    acting = client_for(staff, acting_for=tenant.partner)
    response = acting.get("/analytics/", PERIOD)
    assert response.status_code == 200
    assert "Alpha – Sales" in row_names(response)


def test_logged_out_is_sent_to_log_in(db):
    response = Client().get("/analytics/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"start": "2025-03-05", "end": "2025-03-01"},
            "The start date must be on or before the end date.",
        ),
        ({"start": "2024-01-01", "end": "2025-03-01"}, "Choose a range of at most 366 days."),
        ({"start": "2025-02-30"}, "Enter a date such as 2026-01-31."),
        ({"end": "yesterday"}, "Enter a date such as 2026-01-31."),
        ({"end": "0001-01-02"}, "Enter a date between 2000-01-01 and 2099-12-31."),
        ({"start": "9999-12-31"}, "Enter a date between 2000-01-01 and 2099-12-31."),
    ],
)
def test_bad_dates_answer_400_with_the_reason_in_place(book, viewer, params, message):
    for url in (
        "/analytics/",
        "/analytics/sub-accounts.csv",
        f"/analytics/sub-accounts/{book['alpha'].pk}/",
        f"/analytics/sub-accounts/{book['alpha'].pk}/lines.csv",
    ):
        response = viewer.get(url, params)
        assert response.status_code == 400, url
        html = response.content.decode()
        assert message in html, url
        assert 'role="alert"' in html
        assert 'aria-invalid="true"' in html
        assert "Sub-accounts compared" not in html and "Per-line usage" not in html


# --- Cost -------------------------------------------------------------------------------------


def queries_for(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, PERIOD)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def grow(partner, n: int) -> None:
    """``n`` more sub-accounts, each with a line and a day of traffic."""
    lines = lines_at(partner, n, T0)
    for line in lines:
        sub_account = make_sub_account(partner)
        assign_at(line, sub_account, T0, daily_limit=5)
    ingest(
        *(
            event(f"grow-{line.pk}", line, "outbound", "+14155550199", utc("2025-03-02 08:00"))
            for line in lines
        )
    )


def test_query_counts_do_not_grow_with_sub_accounts_or_lines(tenant, book, viewer):
    beta = book["beta"].pk
    urls = ("/analytics/", "/analytics/sub-accounts.csv", f"/analytics/sub-accounts/{beta}/")
    viewer.get("/analytics/", PERIOD)  # the session's first read is warm-up
    small = [queries_for(viewer, url) for url in urls]
    grow(tenant.partner, 12)
    lines = lines_at(tenant.partner, 8, T0)
    for line in lines:
        assign_at(line, book["beta"], T0)
    large = [queries_for(viewer, url) for url in urls]
    assert large == small
    assert viewer.get("/analytics/", PERIOD).context["row_count"] == 3 + 12
