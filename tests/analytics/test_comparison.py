"""The comparison is sorted, paged and given its median by the database: the same rows, in
the same order, as sorting every sub-account's figures here (empty values last, ties in
the listed order), and pages that add up to the whole list."""

from __future__ import annotations

import statistics

import pytest
from django.test import Client

from portal.analytics import views
from tests.analytics.support import T0, assign_at, event, ingest, lines_at, utc
from tests.analytics.test_pages import parse_csv
from tests.conftest import Api
from tests.factories import force_state, make_sub_account, make_user

PERIOD = {"start": "2025-03-01", "end": "2025-03-03"}
# (name, new conversations, of which answered, inbound-first conversations, daily limit)
PLAN = [
    ("delta", 4, 2, 0, 4),  # 0.5, at its limit on 1 March: over-pressured
    ("Alpha", 2, 1, 1, 10),  # 0.5 (a tie with delta)
    ("charlie", 3, 0, 0, 10),  # 0.0: underperforming
    ("Bravo", 0, 0, 2, 10),  # no new conversation: no rate
    ("echo", 5, 5, 0, 3),  # 1.0, over its limit
    ("foxtrot", 1, 1, 0, 50),  # 1.0 (a tie with echo)
    ("golf", 0, 0, 0, 10),  # silent
    ("hotel", 6, 2, 1, 20),  # 0.3333
]


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def comparison(tenant):
    partner = tenant.partner
    events = []
    made = {}
    sent, replied, wrote = utc("2025-03-01 09:00"), utc("2025-03-01 10:00"), utc("2025-03-02 09:00")
    for name, new, answered, inbound, limit in PLAN:
        sub_account = make_sub_account(partner, name)
        made[name] = sub_account
        line = lines_at(partner, 1, T0)[0]
        assign_at(line, sub_account, T0, daily_limit=limit)
        for i in range(new):
            contact = f"+1415{len(events):07d}"
            events.append(event(f"{name}-o{i}", line, "outbound", contact, sent))
            if i < answered:
                events.append(event(f"{name}-r{i}", line, "inbound", contact, replied))
        for i in range(inbound):
            contact = f"+1416{len(events):07d}"
            events.append(event(f"{name}-i{i}", line, "inbound", contact, wrote))
    assert not ingest(*events).rejected
    # A merged sub-account's history shows under its target (and it is not listed).
    merged = make_sub_account(partner, "india")
    line = lines_at(partner, 1, T0)[0]
    assign_at(line, merged, T0, daily_limit=10)
    ingest(event("india-o", line, "outbound", "+14170000001", utc("2025-03-02 09:00")))
    force_state(merged, status="merged", merged_into=made["golf"])
    return made


def python_sorted(rows: list[dict], key: str) -> list[dict]:
    """What the page showed when it sorted every row in Python."""
    column = next(c for c in views.COMPARISON_COLUMNS if c.key == key.removeprefix("-"))
    values = {
        "name": lambda r: r["name"].casefold(),
        "flags": lambda r: len(r["flags"]),
    }.get(column.key, lambda r: r[column.key])
    present = [r for r in rows if values(r) is not None]
    missing = [r for r in rows if values(r) is None]
    present.sort(key=values, reverse=key.startswith("-"))
    return present + missing


def test_every_sort_matches_sorting_all_rows(tenant, comparison):
    body = Api(tenant.keys["viewer"]).get("/analytics/sub-accounts", **PERIOD, limit=500).json()
    rows = body["items"]
    assert [r["name"] for r in rows][:2] == ["Available", "Alpha"]  # the listed order
    assert body["count"] == len(rows) == len(PLAN) + 1
    rates = [r["response_rate"] for r in rows if r["response_rate"] is not None]
    assert body["median_response_rate"] == statistics.median(rates)
    by_name = {r["name"]: r for r in rows}
    assert by_name["charlie"]["flags"] == ["underperforming"]
    assert by_name["delta"]["flags"] == ["over_pressured"]
    assert by_name["golf"]["new_conversations"] == 1  # india's, merged into it

    viewer = Client()
    viewer.force_login(make_user(tenant.partner, "viewer@acme.example", "viewer"))
    for column in views.COMPARISON_COLUMNS:
        for sort in (column.key, f"-{column.key}"):
            response = viewer.get("/analytics/sub-accounts.csv", {**PERIOD, "sort": sort})
            got = [int(r["sub_account_id"]) for r in parse_csv(response)]
            expected = [r["sub_account_id"] for r in python_sorted(rows, sort)]
            assert got == expected, sort


@pytest.mark.parametrize("sort", ["", "-messages_sent", "response_rate", "-flags"])
def test_pages_add_up_to_the_whole_list(tenant, comparison, sort, monkeypatch):
    api = Api(tenant.keys["viewer"])
    whole = api.get("/analytics/sub-accounts", **PERIOD, limit=500).json()["items"]
    pages = [
        api.get("/analytics/sub-accounts", **PERIOD, limit=3, offset=offset).json()
        for offset in range(0, 12, 3)
    ]
    assert [item for page in pages for item in page["items"]] == whole
    assert {page["count"] for page in pages} == {len(whole)}
    assert pages[-1]["items"] == []  # past the end: empty, with the count

    monkeypatch.setattr(views, "PAGE_SIZE", 4)
    viewer = Client()
    viewer.force_login(make_user(tenant.partner, "viewer@acme.example", "viewer"))
    params = {**PERIOD, **({"sort": sort} if sort else {})}
    everything = [
        r["sub_account_id"] for r in parse_csv(viewer.get("/analytics/sub-accounts.csv", params))
    ]
    shown = {}
    for number in ("1", "2", "3", "99", "zzz"):
        response = viewer.get("/analytics/", {**params, "page": number})
        shown[number] = [str(r["sub_account_id"]) for r in response.context["rows"]]
        assert response.context["row_count"] == len(whole)
    assert shown["1"] + shown["2"] + shown["3"] == everything
    assert shown["99"] == shown["3"]  # past the end: the last page
    assert shown["zzz"] == shown["1"]


def test_the_median_of_every_sub_accounts_figures_is_the_comparisons(tenant, comparison):
    """The Sub-accounts list sorted by a figure reads every sub-account's figures and takes
    the median from them; a page of them asks the database for it: the same median, and
    the same flags, as the comparison's."""
    from portal.analytics.selectors import sub_account_comparison_figures

    # A sub-account pending deletion keeps its figures but is not listed: its unanswered
    # conversation would move the median (0.5) if it counted.
    leaving = make_sub_account(tenant.partner, "juliett")
    line = lines_at(tenant.partner, 1, T0)[0]
    assign_at(line, leaving, T0, daily_limit=10)
    ingest(event("juliett-o", line, "outbound", "+14180000001", utc("2025-03-01 09:00")))
    force_state(leaving, status="pending_deletion")
    principal = tenant.principal("viewer")
    dates = {"start": utc("2025-03-01 00:00").date(), "end": utc("2025-03-03 00:00").date()}
    every = sub_account_comparison_figures(principal=principal, sub_account_ids=None, **dates)
    ids = [sa.pk for sa in comparison.values()]
    page = sub_account_comparison_figures(principal=principal, sub_account_ids=ids, **dates)
    body = Api(tenant.keys["viewer"]).get("/analytics/sub-accounts", **PERIOD, limit=500).json()
    assert every.median == page.median == body["median_response_rate"]
    assert every.median == 0.5
    assert every.figures[leaving.pk].response_rate == 0.0
    for pk in ids:
        assert every.figures[pk].flags == page.figures[pk].flags
    assert every.figures[comparison["charlie"].pk].flags == ["underperforming"]
