"""Issue 16, points 1, 2 and 7 (domain §2, §4).

1. A day is judged by the limit the line had at the end of that day, whenever its events
   arrive and whenever the day is closed; a line back in Available returns to the
   partner's default limit.
2. On the day of a merge a merged line is one line-day of the target, its new
   conversations from both sides judged together.
7. A redelivered batch makes PostgreSQL log no error (no failed COPY on a normal path).
"""

from __future__ import annotations

import datetime as dt
import logging
import random

import pytest
from django.db import connection

from portal.analytics.models import DailySubAccountRollup
from portal.analytics.rollups import analytics_days_close
from portal.core import clock
from portal.lines.models import Line, LineLimitChange
from portal.partners.models import SubAccount, SubAccountKind
from tests.analytics.support import (
    assign_at,
    event,
    ingest,
    lines_at,
    merge_at,
    move_at,
    pressure_recounted,
    pressure_stored,
    update_limit_at,
    utc,
)
from tests.conftest import Api
from tests.factories import make_sub_account, make_tenant

pytestmark = pytest.mark.django_db

D1, D2, D3 = "2025-03-01", "2025-03-02", "2025-03-03"
MERGE_DAY = "2025-03-05"
AFTER = utc("2025-03-10 12:00")


def _new(tag: str, line: Line, count: int, at: dt.datetime) -> list[dict]:
    """``count`` new conversations (one outbound message each to a new contact) at ``at``."""
    return [
        event(f"{tag}-{i}", line, "outbound", f"+1415556{tag}{i:03d}", at) for i in range(count)
    ]


def _days(
    tenant, sub_account: SubAccount, start: str = D1, end: str = D3, at: dt.datetime = AFTER
) -> dict[str, tuple]:
    """The sub-account's days as the API gives them, read at ``at``:
    ``day -> (line-days, new, usage, near, over)``."""
    with clock.frozen_at(at):
        response = Api(tenant.keys["viewer"]).get(
            f"/sub-accounts/{sub_account.pk}/analytics", start=start, end=end
        )
    assert response.status_code == 200, response.content
    return {
        d["day"]: (
            d["active_line_days"],
            d["new_conversations"],
            d["volume_limit_usage"],
            d["near_limit_line_days"],
            d["over_pressured_line_days"],
        )
        for d in response.json()["days"]
    }


def _stored_capacity(
    partner, sub_account: SubAccount, days: tuple[str, ...] = (D1, D2, D3)
) -> dict[str, tuple[int, int]]:
    """``day -> (line-days, Σ limits)`` stored for ``days``."""
    rows = DailySubAccountRollup.objects.filter(
        partner=partner, sub_account=sub_account, day__in=days
    )
    return {
        row.day.isoformat(): (row.active_line_days, row.limit_line_days)
        for row in rows
        if row.active_line_days
    }


# --- 1. The limit at the end of the day ----------------------------------------------------


@pytest.fixture
def desk(db):
    """One line in Alpha with limit 10; on 2 March at 12:00 its limit becomes 4.

    1 March: 5 new (50 % of 10)   2 March: 4 new before the change (100 % of 4, the limit
    at the end of the day)        3 March: 3 new (75 % of 4)
    """
    tenant = make_tenant("Limits Partner", timezone="UTC")
    alpha = make_sub_account(tenant.partner, "Alpha – Sales")
    (line,) = lines_at(tenant.partner, 1, utc("2025-02-27 09:00"))
    assign_at(line, alpha, utc("2025-02-28 09:00"), daily_limit=10)
    events = {
        D1: _new("1", line, 5, utc("2025-03-01 10:00")),
        D2: _new("2", line, 4, utc("2025-03-02 08:00")),
        D3: _new("3", line, 3, utc("2025-03-03 10:00")),
    }
    return {"tenant": tenant, "alpha": alpha, "line": line, "events": events}


EXPECTED_DAYS = {
    D1: (1, 5, 0.5, 0, 0),
    D2: (1, 4, 1.0, 1, 1),
    D3: (1, 3, 0.75, 0, 0),
}


def _change_limit(desk) -> None:
    update_limit_at(desk["line"], 4, utc("2025-03-02 12:00"))


def test_events_ingested_as_they_happen_are_judged_by_the_limit_at_the_end_of_their_day(desk):
    ingest(*desk["events"][D1])
    ingest(*desk["events"][D2])  # judged against 10 at first…
    _change_limit(desk)  # …and again against 4 when the limit changes that day
    ingest(*desk["events"][D3])
    with clock.frozen_at(AFTER):
        analytics_days_close(partner_id=desk["tenant"].partner.pk)
    assert _days(desk["tenant"], desk["alpha"]) == EXPECTED_DAYS
    partner = desk["tenant"].partner
    assert _stored_capacity(partner, desk["alpha"]) == {D1: (1, 10), D2: (1, 4), D3: (1, 4)}
    assert pressure_stored(partner) == pressure_recounted(partner)


def test_late_events_and_a_late_close_give_the_same_figures(desk):
    """Every event arrives after the change (in reverse), and 1 March is closed after it:
    before the fix 1 March was judged against 4 (5 new: over) and counted with limit 4."""
    _change_limit(desk)
    ingest(*reversed([e for day in (D3, D2, D1) for e in desk["events"][day]]))
    partner = desk["tenant"].partner
    with clock.frozen_at(utc("2025-03-02 13:00")):  # 1 March closed after the change
        analytics_days_close(partner_id=partner.pk)
    assert _stored_capacity(partner, desk["alpha"])[D1] == (1, 10)
    with clock.frozen_at(AFTER):
        analytics_days_close(partner_id=partner.pk)
    assert _days(desk["tenant"], desk["alpha"]) == EXPECTED_DAYS
    assert _stored_capacity(partner, desk["alpha"]) == {D1: (1, 10), D2: (1, 4), D3: (1, 4)}


def test_days_read_live_before_they_are_closed_use_the_limit_at_their_end(desk):
    _change_limit(desk)
    ingest(*desk["events"][D1], *desk["events"][D2], *desk["events"][D3])
    # No day closed: the read counts every line-day from the periods.
    assert _days(desk["tenant"], desk["alpha"]) == EXPECTED_DAYS


def test_a_limit_changed_after_the_day_in_progress_was_counted_is_read_at_once(desk):
    """The job counted 2 March at 10:00 with limit 10; the limit becomes 4 at 12:00: a read
    at 13:00 judges the day by 4 (not the count's 10 until the job's next run)."""
    partner = desk["tenant"].partner
    ingest(*desk["events"][D1], *desk["events"][D2])
    with clock.frozen_at(utc("2025-03-02 10:00")):
        analytics_days_close(partner_id=partner.pk)
    _change_limit(desk)
    with clock.frozen_at(utc("2025-03-02 13:00")):
        response = Api(desk["tenant"].keys["viewer"]).get(
            f"/sub-accounts/{desk['alpha'].pk}/analytics", start=D2, end=D2
        )
        listed = Api(desk["tenant"].keys["viewer"]).get("/analytics/sub-accounts", start=D2, end=D2)
    day = response.json()["days"][0]
    assert (
        day["active_line_days"],
        day["volume_limit_usage"],
        day["over_pressured_line_days"],
    ) == (
        1,
        1.0,
        1,
    )
    row = next(r for r in listed.json()["items"] if r["sub_account_id"] == desk["alpha"].pk)
    assert row["volume_limit_usage"] == 1.0


def test_the_history_records_each_change_and_a_return_to_available_resets_the_limit(desk):
    partner = desk["tenant"].partner
    _change_limit(desk)
    update_limit_at(desk["line"], 4, utc("2025-03-02 12:30"))  # no change: nothing recorded
    pool = SubAccount.objects.get(partner=partner, kind=SubAccountKind.AVAILABLE)
    move_at(desk["line"], pool, utc("2025-03-03 15:00"))
    line = Line.objects.get(pk=desk["line"].pk)
    assert line.daily_limit == partner.default_daily_limit == 50
    changes = LineLimitChange.objects.filter(line=line).order_by("at")
    assert [(c.at, c.old_limit, c.new_limit) for c in changes] == [
        (utc("2025-02-28 09:00"), 50, 10),  # assigned with its own limit
        (utc("2025-03-02 12:00"), 10, 4),
        (utc("2025-03-03 15:00"), 4, 50),
    ]
    ingest(*desk["events"][D1], *desk["events"][D2], *desk["events"][D3])
    with clock.frozen_at(AFTER):
        analytics_days_close(partner_id=partner.pk)
    # 3 March ends with the line in Available at the default limit: both holders' line-days
    # are judged by it (3 new of 50).
    assert _stored_capacity(partner, desk["alpha"]) == {D1: (1, 10), D2: (1, 4), D3: (1, 50)}
    assert _stored_capacity(partner, pool, (D3,))[D3] == (1, 50)
    assert _days(desk["tenant"], desk["alpha"])[D3] == (1, 3, 0.06, 0, 0)


# --- 2. The day of a merge --------------------------------------------------------------------

MERGED_AT = utc("2025-03-05 14:00")


@pytest.fixture
def merging(db):
    """Source (3 lines) merges into Target (2 lines) on 5 March at 14:00, every limit 50.
    Line ``busy`` of the source starts 30 new conversations before the merge and 30
    after it (in the target): 60 of 50, one over-pressured line-day of the target."""
    tenant = make_tenant("Merge Day Partner", timezone="UTC")
    source = make_sub_account(tenant.partner, "Source – Sales")
    target = make_sub_account(tenant.partner, "Target – Sales")
    lines = lines_at(tenant.partner, 5, utc("2025-03-01 09:00"))
    for line in lines[:3]:
        assign_at(line, source, utc("2025-03-02 09:00"), daily_limit=50)
    for line in lines[3:]:
        assign_at(line, target, utc("2025-03-02 09:00"), daily_limit=50)
    busy = lines[0]
    before = _new("b", busy, 30, utc("2025-03-05 10:00"))
    after = _new("a", busy, 30, utc("2025-03-05 16:00"))
    return {
        "tenant": tenant,
        "source": source,
        "target": target,
        "busy": busy,
        "before": before,
        "after": after,
    }


MERGE_DAY_FIGURES = (5, 60, round(60 / 250, 4), 1, 1)


def test_a_merged_line_is_one_line_day_of_the_target_judged_on_both_sides_events(merging):
    ingest(*merging["before"])
    merge_at([merging["source"]], merging["target"], MERGED_AT)
    ingest(*merging["after"])
    partner = merging["tenant"].partner
    assert pressure_stored(partner) == pressure_recounted(partner)
    # Read live on the day and after it (the day not closed), then closed: the same figures.
    for at in (utc("2025-03-05 20:00"), AFTER):
        days = _days(merging["tenant"], merging["target"], MERGE_DAY, MERGE_DAY, at)
        assert days[MERGE_DAY] == MERGE_DAY_FIGURES
    with clock.frozen_at(AFTER):
        analytics_days_close(partner_id=partner.pk)
    days = _days(merging["tenant"], merging["target"], MERGE_DAY, MERGE_DAY)
    assert days[MERGE_DAY] == MERGE_DAY_FIGURES
    assert _stored_capacity(partner, merging["source"], (MERGE_DAY,)).get(MERGE_DAY) is None
    assert _stored_capacity(partner, merging["target"], (MERGE_DAY,))[MERGE_DAY] == (5, 250)


def test_the_merge_day_is_the_same_when_every_event_arrives_after_the_merge(merging):
    merge_at([merging["source"]], merging["target"], MERGED_AT)
    events = [*merging["before"], *merging["after"]]
    random.Random(16).shuffle(events)
    ingest(*events[:25])
    ingest(*events[25:])
    with clock.frozen_at(AFTER):
        analytics_days_close(partner_id=merging["tenant"].partner.pk)
    days = _days(merging["tenant"], merging["target"], MERGE_DAY, MERGE_DAY)
    assert days[MERGE_DAY] == MERGE_DAY_FIGURES


def test_a_merge_after_the_day_in_progress_was_counted_does_not_count_a_line_twice(merging):
    """The job counted the merge day at 12:00 (Source 3, Target 2); the merge at 14:00
    moves three lines that were in that count: a read at 20:00 still sees five."""
    partner = merging["tenant"].partner
    ingest(*merging["before"])
    with clock.frozen_at(utc("2025-03-05 12:00")):
        analytics_days_close(partner_id=partner.pk)
    merge_at([merging["source"]], merging["target"], MERGED_AT)
    ingest(*merging["after"])
    with clock.frozen_at(utc("2025-03-05 20:00")):
        response = Api(merging["tenant"].keys["viewer"]).get(
            f"/sub-accounts/{merging['target'].pk}/analytics", start=MERGE_DAY, end=MERGE_DAY
        )
    day = response.json()["days"][0]
    assert (day["active_line_days"], day["over_pressured_line_days"]) == (5, 1)


def test_an_ordinary_move_still_counts_a_line_day_for_each_holder(merging):
    """Only a merge joins the two sides of a day: a move is a change of hands."""
    partner = merging["tenant"].partner
    ingest(*merging["before"])
    move_at(merging["busy"], merging["target"], MERGED_AT)
    ingest(*merging["after"])
    with clock.frozen_at(AFTER):
        analytics_days_close(partner_id=partner.pk)
    assert _stored_capacity(partner, merging["source"], (MERGE_DAY,))[MERGE_DAY] == (3, 150)
    assert _stored_capacity(partner, merging["target"], (MERGE_DAY,))[MERGE_DAY] == (3, 150)
    source_day = _days(merging["tenant"], merging["source"], MERGE_DAY, MERGE_DAY)[MERGE_DAY]
    assert source_day[3:] == (0, 0)  # 30 of 50 for each holder


# --- 7. A redelivered batch on PostgreSQL -------------------------------------------------------


class _FailedStatements:
    """An execute wrapper that records every statement the database refused, and every
    rollback to a savepoint (how a failed COPY inside a savepoint is undone)."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        if "ROLLBACK TO SAVEPOINT" in str(sql).upper():
            self.failed.append(str(sql))
        try:
            return execute(sql, params, many, context)
        except Exception:
            self.failed.append(str(sql))
            raise


def _redelivery_world():
    tenant = make_tenant("Retry Partner", timezone="UTC")
    alpha = make_sub_account(tenant.partner, "Alpha – Sales")
    lines = lines_at(tenant.partner, 2, utc("2025-03-01 09:00"))
    for line in lines:
        assign_at(line, alpha, utc("2025-03-01 10:00"))
    batch = [
        event("r1", lines[0], "outbound", "+14155550001", utc("2025-03-02 10:00")),
        event("r2", lines[0], "inbound", "+14155550001", utc("2025-03-02 10:05")),
        event("r3", lines[1], "outbound", "+14155550002", utc("2025-03-02 11:00")),
        event("r4", lines[1], "outbound", "+14155550003", utc("2025-03-03 11:00")),
    ]
    return tenant, lines, batch


def test_a_redelivered_batch_fails_no_statement(caplog):
    if connection.vendor != "postgresql":
        pytest.skip("the COPY path is PostgreSQL's (SQLite inserts with ON CONFLICT)")
    _, lines, batch = _redelivery_world()
    assert ingest(*batch).accepted == 4
    failed = _FailedStatements()
    later = [
        event("r5", lines[0], "outbound", "+14155550001", utc("2025-03-04 10:00")),
        event("r6", lines[1], "outbound", "+14155550009", utc("2025-03-02 09:00")),  # late
    ]
    with caplog.at_level(logging.WARNING, "portal.analytics"), connection.execute_wrapper(failed):
        report = ingest(*reversed(batch), *later)
    assert (report.accepted, report.duplicates, report.rejected) == (2, 4, [])
    assert failed.failed == []
    assert "clashed" not in caplog.text


def test_an_id_reused_for_another_contact_is_still_ignored_and_reported_to_operators(caplog):
    """Not a retry but a platform fault: the fallback (the COPY undone, ON CONFLICT DO
    NOTHING) keeps it right, and it is worth a warning."""
    _, lines, batch = _redelivery_world()
    ingest(*batch)
    reused = event("r1", lines[1], "outbound", "+14155550077", utc("2025-03-05 10:00"))
    fresh = event("r9", lines[1], "outbound", "+14155550078", utc("2025-03-05 10:00"))
    with caplog.at_level(logging.WARNING, "portal.analytics"):
        report = ingest(reused, fresh)
    assert (report.accepted, report.duplicates) == (1, 1)
    if connection.vendor == "postgresql":
        assert "clashed" in caplog.text
