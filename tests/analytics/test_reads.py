"""GET /analytics/sub-accounts and GET /sub-accounts/{id}/analytics on a hand-built data set."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portal.core import clock
from portal.partners.models import SubAccount
from tests.analytics.support import T0, assign_at, event, ingest, lines_at, utc
from tests.conftest import Api
from tests.factories import force_state, make_sub_account, make_tenant

PERIOD = {"start": "2025-03-01", "end": "2025-03-03"}
ZERO = {
    "messages_sent": 0,
    "messages_received": 0,
    "new_conversations": 0,
    "responded_conversations": 0,
    "inbound_conversations": 0,
    "response_rate": None,
    "over_pressured_line_days": 0,
    "near_limit_line_days": 0,
}


@pytest.fixture
def book(tenant):
    """Alpha: one line (limit 3) from 1 March; Beta: one line (limit 4) from 1 March and
    a second one (limit 50) from noon on 2 March; Available keeps that second line until then.

    1 March  Alpha: new c1 (answered), c2, c7 -> 3 new = its limit (over-pressured)
             Beta:  new c4 (answered)
    2 March  Alpha: new c3
             Beta:  c5 writes first (inbound conversation), Beta replies
    """
    partner = tenant.partner
    line_a, line_b, line_c = lines_at(partner, 3, T0)
    alpha = make_sub_account(partner, "Alpha – Sales")
    beta = make_sub_account(partner, "Beta – Support")
    assign_at(line_a, alpha, T0, daily_limit=3)
    assign_at(line_b, beta, T0, daily_limit=4)
    assign_at(line_c, beta, utc("2025-03-02 12:00"), daily_limit=50)
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
    )
    assert (report.accepted, report.rejected) == (9, [])
    pool = SubAccount.objects.get(partner=partner, kind="available")
    return {"alpha": alpha, "beta": beta, "pool": pool}


def test_the_list_on_a_hand_built_book(api, book):
    body = api.get("/analytics/sub-accounts", **PERIOD).json()
    assert body["start"] == "2025-03-01"
    assert body["end"] == "2025-03-03"
    assert body["count"] == 3
    assert body["median_response_rate"] == 0.625
    by_name = {item["name"]: item for item in body["items"]}
    assert [item["name"] for item in body["items"]] == [
        "Available",
        "Alpha – Sales",
        "Beta – Support",
    ]
    assert by_name["Alpha – Sales"] == {
        "sub_account_id": book["alpha"].pk,
        "name": "Alpha – Sales",
        "messages_sent": 4,
        "messages_received": 1,
        "new_conversations": 4,
        "responded_conversations": 1,
        "inbound_conversations": 0,
        "response_rate": 0.25,
        "active_line_days": 3,
        "volume_limit_usage": round(4 / 9, 4),
        "near_limit_line_days": 1,
        "over_pressured_line_days": 1,
        # 0.25 is below half the median (0.3125).
        "flags": ["underperforming", "over_pressured"],
    }
    assert by_name["Beta – Support"] == {
        "sub_account_id": book["beta"].pk,
        "name": "Beta – Support",
        "messages_sent": 2,
        "messages_received": 2,
        "new_conversations": 1,
        "responded_conversations": 1,
        "inbound_conversations": 1,
        "response_rate": 1.0,
        # line b on all three days, line c on 2 (from noon) and 3 March.
        "active_line_days": 5,
        "volume_limit_usage": round(1 / (4 * 3 + 50 * 2), 4),
        "near_limit_line_days": 0,
        "over_pressured_line_days": 0,
        "flags": [],
    }
    assert by_name["Available"] == {
        "sub_account_id": book["pool"].pk,
        "name": "Available",
        **ZERO,
        # line c on 1 March and on 2 March until noon: a line counts for every holder
        # of the day, so 2 March counts for Available and for Beta.
        "active_line_days": 2,
        "volume_limit_usage": 0.0,
        "flags": [],
    }


def test_the_detail_has_totals_and_every_day(api, book):
    body = api.get(f"/sub-accounts/{book['alpha'].pk}/analytics", **PERIOD).json()
    assert body["sub_account_id"] == book["alpha"].pk
    assert body["name"] == "Alpha – Sales"
    assert body["totals"]["new_conversations"] == 4
    assert body["totals"]["response_rate"] == 0.25
    assert body["totals"]["volume_limit_usage"] == round(4 / 9, 4)
    assert body["totals"]["active_line_days"] == 3
    assert [d["day"] for d in body["days"]] == ["2025-03-01", "2025-03-02", "2025-03-03"]
    first, second, third = body["days"]
    assert first == {
        "day": "2025-03-01",
        "messages_sent": 3,
        "messages_received": 1,
        "new_conversations": 3,
        "responded_conversations": 1,
        "inbound_conversations": 0,
        "response_rate": round(1 / 3, 4),
        "active_line_days": 1,
        "volume_limit_usage": 1.0,
        "near_limit_line_days": 1,
        "over_pressured_line_days": 1,
    }
    assert second["new_conversations"] == 1
    assert second["response_rate"] == 0.0
    assert second["volume_limit_usage"] == round(1 / 3, 4)
    assert third == {"day": "2025-03-03", **ZERO, "active_line_days": 1, "volume_limit_usage": 0.0}


def test_the_beta_series_counts_a_line_from_the_day_it_arrived(api, book):
    body = api.get(f"/sub-accounts/{book['beta'].pk}/analytics", **PERIOD).json()
    assert [d["active_line_days"] for d in body["days"]] == [1, 2, 2]
    assert [d["inbound_conversations"] for d in body["days"]] == [0, 1, 0]


@pytest.mark.parametrize("role", ["admin", "manager", "billing", "viewer"])
def test_every_partner_role_reads_analytics(tenant, book, role):
    client = Api(tenant.keys[role])
    assert client.get("/analytics/sub-accounts", **PERIOD).status_code == 200
    assert client.get(f"/sub-accounts/{book['beta'].pk}/analytics").status_code == 200


def test_another_partners_sub_account_is_not_found(book):
    other = make_tenant("Other Partner")
    response = Api(other.keys["viewer"]).get(f"/sub-accounts/{book['alpha'].pk}/analytics")
    assert response.status_code == 404
    listed = Api(other.keys["viewer"]).get("/analytics/sub-accounts", **PERIOD).json()
    assert {item["name"] for item in listed["items"]} == {"Available"}
    assert listed["items"][0]["messages_sent"] == 0


def test_merged_history_shows_under_the_target(api, book):
    force_state(book["alpha"], status="merged", merged_into=book["beta"])
    body = api.get("/analytics/sub-accounts", **PERIOD).json()
    assert [item["name"] for item in body["items"]] == ["Available", "Beta – Support"]
    beta = body["items"][1]
    assert beta["new_conversations"] == 5
    assert beta["messages_sent"] == 6
    assert beta["active_line_days"] == 8
    detail = api.get(f"/sub-accounts/{book['beta'].pk}/analytics", **PERIOD).json()
    assert detail["totals"]["new_conversations"] == 5


def test_the_default_period_is_the_last_30_local_days(db):
    tenant = make_tenant("Tokyo Partner", timezone="Asia/Tokyo")
    with clock.frozen_at(utc("2025-06-30 16:00")):  # 1 July, 01:00 in Tokyo
        body = Api(tenant.keys["viewer"]).get("/analytics/sub-accounts").json()
    assert body["end"] == "2025-07-01"
    assert body["start"] == "2025-06-02"


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"start": "2025-03-05", "end": "2025-03-01"}, 422),
        ({"start": "2024-01-01", "end": "2025-03-01"}, 422),
        ({"start": "not a date"}, 422),
        ({"end": "2025-02-30"}, 422),
        ({"end": "0001-01-02"}, 422),
        ({"start": "9999-12-31"}, 422),
        ({"start": "0001-01-01", "end": "0001-01-01"}, 422),
    ],
)
def test_bad_periods_are_refused(api, params, status):
    response = api.get("/analytics/sub-accounts", **params)
    assert response.status_code == status
    assert response.json()["detail"]


def test_line_days_stop_at_today(api, tenant):
    lines_at(tenant.partner, 1, utc("2025-03-01 00:00"))
    with clock.frozen_at(utc("2025-03-02 12:00")):
        body = api.get("/analytics/sub-accounts", start="2025-03-01", end="2025-03-10").json()
    assert body["items"][0]["active_line_days"] == 2


def test_staff_read_needs_a_partner(staff_key, book, tenant):
    staff = Api(staff_key)
    assert staff.get("/analytics/sub-accounts").status_code == 400
    scoped = staff.get_with("/analytics/sub-accounts", {"partner": tenant.partner.slug, **PERIOD})
    assert scoped.status_code == 200
    assert scoped.json()["count"] == 3


def _queries(api) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = api.get("/analytics/sub-accounts", **PERIOD, limit=500)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def _grow(partner, n: int, tag: str) -> None:
    lines = lines_at(partner, n, T0)
    for i, line in enumerate(lines):
        sa = make_sub_account(partner, f"Grown {tag} {i}")
        assign_at(line, sa, T0, daily_limit=2)
        ingest(
            event(f"{tag}-{i}-o", line, "outbound", "+14155550101", utc("2025-03-01 09:00")),
            event(f"{tag}-{i}-i", line, "inbound", "+14155550101", utc("2025-03-01 10:00")),
        )


def test_list_query_count_does_not_grow_with_sub_accounts(api, tenant, book):
    api.get("/analytics/sub-accounts")  # the first call records the key's use
    small = _queries(api)
    _grow(tenant.partner, 12, "x")
    large = _queries(api)
    assert api.get("/analytics/sub-accounts", **PERIOD, limit=500).json()["count"] == 15
    assert large == small


def test_detail_query_count_does_not_grow_with_days_or_lines(api, tenant, book):
    path = f"/sub-accounts/{book['beta'].pk}/analytics"
    api.get(path)
    with CaptureQueriesContext(connection) as small:
        api.get(path, **PERIOD)
    with CaptureQueriesContext(connection) as large:
        api.get(path, start="2025-01-01", end="2025-12-31")
    assert len(large.captured_queries) == len(small.captured_queries)


@pytest.mark.parametrize(
    ("activated", "line_days"),
    [("2025-01-11 04:59:59", [1, 1]), ("2025-01-11 05:00:00", [0, 1])],
    ids=["23:59:59 local counts for that day", "local midnight counts from the next"],
)
def test_line_days_follow_the_partners_local_midnight(db, activated, line_days):
    tenant = make_tenant("New York Partner", timezone="America/New_York")
    lines_at(tenant.partner, 1, utc(activated))
    pool = SubAccount.objects.get(partner=tenant.partner, kind="available")
    body = (
        Api(tenant.keys["viewer"])
        .get(f"/sub-accounts/{pool.pk}/analytics", start="2025-01-10", end="2025-01-11")
        .json()
    )
    assert [d["active_line_days"] for d in body["days"]] == line_days
