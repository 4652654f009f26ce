"""The read model: sub-account rollups, line-days (closed by the job, live for open days),
near / over the limit, and merges that rewrite nothing."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.analytics import reports
from portal.analytics.capacity import line_days
from portal.analytics.models import (
    DailyPartnerRollup,
    DailySubAccountRollup,
    PartnerAnalyticsState,
)
from portal.analytics.periods import analytics_period, period_segments
from portal.analytics.rollups import analytics_days_close, analytics_days_close_all
from portal.analytics.tasks import analytics_days_close_job, message_events_prune_job
from portal.core import clock
from portal.jobs.periodic import registered_jobs
from portal.lines.models import Line
from portal.lines.services import line_disconnect
from portal.partners.models import SubAccount
from tests.analytics.support import (
    assign_at,
    buckets,
    buckets_recounted,
    event,
    ingest,
    lines_at,
    move_at,
    sub_rollups,
    sub_rollups_recounted,
    utc,
)
from tests.conftest import Api
from tests.factories import SYSTEM, force_state, make_sub_account, make_tenant

# New York: local midnight is 05:00 UTC in March before the 9th (EST), 04:00 after (EDT).
START = utc("2025-03-01 05:00")  # 1 March, 00:00 local
PERIOD = {"start": "2025-03-01", "end": "2025-03-04"}
AFTER = utc("2025-03-10 12:00")  # when the days are read (all four closed or not)


@pytest.fixture
def book(db):
    """Alpha: line a (limit 2) all along; line m (limit 4) from 2 March 15:00 local.
    Beta: line b (limit 10) all along; line m until 2 March 15:00 local.
    Line d (limit 3, Beta) is disconnected on 3 March at 10:00 local.

    1 March  a: 2 new (100 %: near and over)           b: 9 new (90 %: near only)
    2 March  a: 1 new                                  m: 3 new for Beta before the move
                                                          (75 %), 1 new for Alpha after it
    3 March  d: 3 new before it is disconnected (100 %: near and over)
    """
    tenant = make_tenant("New York Partner", timezone="America/New_York")
    partner = tenant.partner
    line_a, line_b, line_m, line_d = lines_at(partner, 4, START - dt.timedelta(days=1))
    alpha = make_sub_account(partner, "Alpha – Sales")
    beta = make_sub_account(partner, "Beta – Support")
    for line, sa, limit in ((line_a, alpha, 2), (line_b, beta, 10), (line_m, beta, 4)):
        assign_at(line, sa, START - dt.timedelta(hours=12), daily_limit=limit)
    assign_at(line_d, beta, START - dt.timedelta(hours=12), daily_limit=3)
    move_at(line_m, alpha, utc("2025-03-02 20:00"))
    with clock.frozen_at(utc("2025-03-03 15:00")):
        line_disconnect(principal=SYSTEM, line_id=line_d.pk)

    def new(tag, line, n, at):
        return [event(f"{tag}{i}", line, "outbound", f"+1415555{tag}{i:02d}", at) for i in range(n)]

    report = ingest(
        *new("11", line_a, 2, utc("2025-03-01 14:00")),
        *new("12", line_b, 9, utc("2025-03-01 14:00")),
        *new("21", line_a, 1, utc("2025-03-02 14:00")),
        *new("22", line_m, 3, utc("2025-03-02 14:00")),
        *new("23", line_m, 1, utc("2025-03-02 21:00")),
        *new("31", line_d, 3, utc("2025-03-03 14:00")),
    )
    assert (report.accepted, report.rejected) == (19, [])
    pool = SubAccount.objects.get(partner=partner, kind="available")
    return {"tenant": tenant, "alpha": alpha, "beta": beta, "pool": pool}


def _read(book, path: str, **params):
    with clock.frozen_at(AFTER):
        response = Api(book["tenant"].keys["viewer"]).get(path, **params)
    assert response.status_code == 200, response.content
    return response.json()


def _capacity(book):
    body = _read(book, "/analytics/sub-accounts", **PERIOD)
    by_name = {item["name"]: item for item in body["items"]}
    return {
        name: (
            item["active_line_days"],
            item["new_conversations"],
            item["volume_limit_usage"],
            item["near_limit_line_days"],
            item["over_pressured_line_days"],
        )
        for name, item in by_name.items()
    }


EXPECTED = {
    # a on 4 days (limit 2) + m on 2, 3, 4 March (limit 4): 7 line-days, Σ limits 8 + 12.
    "Alpha – Sales": (7, 4, 0.2, 1, 1),
    # b on 4 days (10) + m on 1, 2 March (4) + d on 1, 2, 3 March (3): Σ 40 + 8 + 9.
    "Beta – Support": (9, 15, round(15 / 57, 4), 2, 1),
    "Available": (0, 0, None, 0, 0),
}


def test_capacity_figures_on_a_hand_built_case_live(book):
    assert _capacity(book) == EXPECTED


def test_closing_the_days_stores_the_same_figures(book):
    with clock.frozen_at(AFTER):
        closed = analytics_days_close(partner_id=book["tenant"].partner.pk)
    state = PartnerAnalyticsState.objects.get(partner=book["tenant"].partner)
    assert state.days_closed_through == dt.date(2025, 3, 9)
    assert closed == (dt.date(2025, 3, 9) - dt.date(2025, 2, 28)).days + 1  # backfilled
    stored = DailySubAccountRollup.objects.get(sub_account=book["beta"], day=dt.date(2025, 3, 2))
    assert (stored.active_line_days, stored.limit_line_days) == (3, 10 + 4 + 3)
    assert _capacity(book) == EXPECTED
    # Rerunning closes nothing and changes nothing.
    with clock.frozen_at(AFTER):
        assert analytics_days_close(partner_id=book["tenant"].partner.pk) == 0
    assert _capacity(book) == EXPECTED


def test_the_daily_series_of_a_line_moved_mid_day(book):
    days = _read(book, f"/sub-accounts/{book['alpha'].pk}/analytics", **PERIOD)["days"]
    assert [d["active_line_days"] for d in days] == [1, 2, 2, 2]
    assert [d["new_conversations"] for d in days] == [2, 2, 0, 0]
    days = _read(book, f"/sub-accounts/{book['beta'].pk}/analytics", **PERIOD)["days"]
    assert [d["active_line_days"] for d in days] == [3, 3, 2, 1]
    assert [d["new_conversations"] for d in days] == [9, 3, 3, 0]
    assert [d["near_limit_line_days"] for d in days] == [1, 0, 1, 0]
    assert [d["over_pressured_line_days"] for d in days] == [0, 0, 1, 0]


def test_a_line_move_today_changes_today_only(book):
    partner = book["tenant"].partner
    zone = zoneinfo.ZoneInfo("America/New_York")
    with clock.frozen_at(AFTER):
        analytics_days_close(partner_id=partner.pk)
    stored = list(DailySubAccountRollup.objects.filter(partner=partner).values_list())
    yesterday = line_days(partner_id=partner.pk, zone=zone, days=[dt.date(2025, 3, 9)])
    moved = Line.objects.filter(partner=partner, sub_account=book["alpha"]).first()
    move_at(moved, book["beta"], AFTER)  # 10 March, 08:00 local

    assert line_days(partner_id=partner.pk, zone=zone, days=[dt.date(2025, 3, 9)]) == yesterday
    assert list(DailySubAccountRollup.objects.filter(partner=partner).values_list()) == stored
    today = line_days(partner_id=partner.pk, zone=zone, days=[dt.date(2025, 3, 10)])
    # Held by both today: Alpha this morning, Beta from 08:00.
    assert today[(book["alpha"].pk, dt.date(2025, 3, 10))][0] == 2
    assert today[(book["beta"].pk, dt.date(2025, 3, 10))][0] == 2


def test_sub_account_rollups_equal_the_sums_of_line_rollups(book):
    partner = book["tenant"].partner
    assert sub_rollups(partner) == sub_rollups_recounted(partner)
    with clock.frozen_at(AFTER):
        analytics_days_close(partner_id=partner.pk)
    assert buckets(partner) == buckets_recounted(partner)
    assert {row[1] for row in buckets(partner)} == {"week", "month"}


def test_todays_live_line_days_equal_the_general_count(book):
    """Today's fast path (lines held now + periods ended today) against the general query
    for the same day read once it is over (nothing changes in between)."""
    partner = book["tenant"].partner
    zone = zoneinfo.ZoneInfo("America/New_York")
    moved = Line.objects.filter(partner=partner, sub_account=book["alpha"]).first()
    move_at(moved, book["beta"], utc("2025-03-10 13:00"))
    move_at(moved, book["alpha"], utc("2025-03-10 14:00"))  # back: counted once
    with clock.frozen_at(utc("2025-03-10 15:00")):
        live = line_days(partner_id=partner.pk, zone=zone, days=[dt.date(2025, 3, 10)])
    with clock.frozen_at(utc("2025-03-12 15:00")):
        later = line_days(partner_id=partner.pk, zone=zone, days=[dt.date(2025, 3, 10)])
    assert live == later
    assert live[(book["alpha"].pk, dt.date(2025, 3, 10))] == (2, 2 + 4)
    assert live[(book["beta"].pk, dt.date(2025, 3, 10))] == (2, 10 + moved.daily_limit)


@given(
    start=st.dates(dt.date(2024, 1, 1), dt.date(2026, 12, 31)),
    length=st.integers(0, 400),
)
def test_a_period_is_cut_into_months_weeks_and_days_that_cover_it_once(start, length):
    end = start + dt.timedelta(days=length)
    months, weeks, days = period_segments(start, end)
    covered = list(days)
    for first in months:
        day = first
        while day.month == first.month:
            covered.append(day)
            day += dt.timedelta(days=1)
    covered += [week + dt.timedelta(days=i) for week in weeks for i in range(7)]
    assert sorted(covered) == [start + dt.timedelta(days=i) for i in range(length + 1)]
    assert all(w.weekday() == 0 for w in weeks) and all(m.day == 1 for m in months)
    assert len(days) <= 24  # at most six days each side of the weeks at each edge


def test_a_merge_shows_the_sources_history_without_rewriting_a_row(book):
    partner = book["tenant"].partner
    with clock.frozen_at(AFTER):
        analytics_days_close(partner_id=partner.pk)
    rows_before = sorted(DailySubAccountRollup.objects.filter(partner=partner).values_list())
    force_state(book["alpha"], status="merged", merged_into=book["beta"])
    assert sorted(DailySubAccountRollup.objects.filter(partner=partner).values_list()) == (
        rows_before
    )
    body = _read(book, "/analytics/sub-accounts", **PERIOD)
    assert [item["name"] for item in body["items"]] == ["Available", "Beta – Support"]
    beta = body["items"][1]
    assert (beta["active_line_days"], beta["new_conversations"]) == (16, 19)
    assert beta["over_pressured_line_days"] == 2
    detail = _read(book, f"/sub-accounts/{book['beta'].pk}/analytics", **PERIOD)
    assert detail["totals"]["new_conversations"] == 19
    assert [d["active_line_days"] for d in detail["days"]] == [4, 5, 4, 3]


def test_the_jobs_are_registered_and_run(book):
    names = {job.name for job in registered_jobs()}
    assert {"analytics_days_close", "message_events_prune"} <= names
    with clock.frozen_at(AFTER):
        analytics_days_close_job()
        message_events_prune_job()
        assert analytics_days_close_all() == 0
    state = PartnerAnalyticsState.objects.get(partner=book["tenant"].partner)
    assert state.days_closed_through == dt.date(2025, 3, 9)


# --- The day in progress, counted by the job ---------------------------------------------


def _everything(book, at: dt.datetime) -> dict:
    """Every read of the partner's figures for 8 to 10 March (10 March in progress)."""
    period = {"start": "2025-03-08", "end": "2025-03-10"}
    api = Api(book["tenant"].keys["viewer"])
    with clock.frozen_at(at):
        listed = api.get("/analytics/sub-accounts", **period).json()["items"]
        details = {
            name: api.get(f"/sub-accounts/{book[name].pk}/analytics", **period).json()["days"]
            for name in ("alpha", "beta", "pool")
        }
        daily = reports.partner_analytics_daily(
            principal=SYSTEM.acting_for(book["tenant"].partner.pk),
            period=analytics_period(
                partner=book["tenant"].partner,
                start=dt.date(2025, 3, 8),
                end=dt.date(2025, 3, 10),
            ),
        )
    return {"listed": listed, "details": details, "daily": daily}


def test_the_day_in_progress_reads_the_same_counted_by_the_job_or_live(book):
    """The job counts 10 March at 08:00 local; then a line goes from Alpha to Beta and
    back, and a new line arrives for Beta. Reads add what arrived since the count, and
    give exactly what a fresh count (or no count at all) gives."""
    partner = book["tenant"].partner
    line_a = Line.objects.get(partner=partner, sub_account=book["alpha"], daily_limit=2)
    later = AFTER + dt.timedelta(hours=4)
    # Before any count: the day in progress is counted live, whole.
    with clock.frozen_at(AFTER):
        analytics_days_close(partner_id=partner.pk)
    state = PartnerAnalyticsState.objects.get(partner=partner)
    assert (state.capacity_day, state.capacity_at) == (dt.date(2025, 3, 10), AFTER)
    move_at(line_a, book["beta"], AFTER + dt.timedelta(hours=1))
    move_at(line_a, book["alpha"], AFTER + dt.timedelta(hours=2))  # back: no new line-day
    arrived = lines_at(partner, 1, AFTER + dt.timedelta(hours=3))[0]
    assign_at(arrived, book["beta"], AFTER + dt.timedelta(hours=3, minutes=30), daily_limit=7)
    with_count = _everything(book, later)
    beta_today = with_count["details"]["beta"][-1]
    # b all along, a for an hour, the new line: 3 line-days, Σ limits 10 + 2 + 7.
    assert beta_today["active_line_days"] == 3
    alpha_today = with_count["details"]["alpha"][-1]
    assert alpha_today["active_line_days"] == 2  # a (left and came back) and m
    # The pool held the new line for half an hour.
    assert with_count["details"]["pool"][-1]["active_line_days"] == 1

    # A fresh count of the day gives the same figures, and so does no count at all.
    with clock.frozen_at(later):
        analytics_days_close(partner_id=partner.pk)
    assert _everything(book, later) == with_count
    assert buckets(partner) == buckets_recounted(partner)
    PartnerAnalyticsState.objects.filter(partner=partner).update(capacity_day=None)
    DailySubAccountRollup.objects.filter(partner=partner, day=dt.date(2025, 3, 10)).update(
        active_line_days=0, limit_line_days=0
    )
    DailyPartnerRollup.objects.filter(partner=partner, day=dt.date(2025, 3, 10)).update(
        active_line_days=0, limit_line_days=0
    )
    assert _everything(book, later) == with_count


def test_closing_a_counted_day_replaces_its_count(book):
    """The day counted in progress is closed the next day: the day's, the partner's and
    the week's and month's capacity become the closing count, not the sum of both."""
    partner = book["tenant"].partner
    with clock.frozen_at(AFTER):
        analytics_days_close(partner_id=partner.pk)
    arrived = lines_at(partner, 1, AFTER + dt.timedelta(hours=1))[0]
    assign_at(arrived, book["alpha"], AFTER + dt.timedelta(hours=2), daily_limit=5)
    with clock.frozen_at(AFTER + dt.timedelta(days=1)):
        assert analytics_days_close(partner_id=partner.pk) == 1
    closed = line_days(
        partner_id=partner.pk,
        zone=zoneinfo.ZoneInfo("America/New_York"),
        days=[dt.date(2025, 3, 10)],
    )
    stored = {
        (row.sub_account_id, row.day): (row.active_line_days, row.limit_line_days)
        for row in DailySubAccountRollup.objects.filter(partner=partner, day=dt.date(2025, 3, 10))
        if row.active_line_days or row.limit_line_days
    }
    assert stored == closed
    assert closed[(book["alpha"].pk, dt.date(2025, 3, 10))] == (3, 2 + 4 + 5)
    assert buckets(partner) == buckets_recounted(partner)
    partner_day = DailyPartnerRollup.objects.get(partner=partner, day=dt.date(2025, 3, 10))
    assert (partner_day.active_line_days, partner_day.limit_line_days) == (
        sum(n for n, _ in closed.values()),
        sum(limits for _, limits in closed.values()),
    )
