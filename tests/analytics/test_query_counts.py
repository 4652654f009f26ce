"""The analytics list endpoint and pages run as many queries for 50 sub-accounts as for 5.

Each case is measured twice on the same partner, grown from 5 to 50 sub-accounts (each
with lines, traffic on two days, and one of them merged into another), before the
periodic job has counted the day in progress and after (when reads only add the
lines that arrived since): the number of queries depends on neither.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal.analytics.rollups import analytics_days_close
from portal.core import clock
from portal.partners.models import SubAccount
from tests.analytics.support import T0, assign_at, event, ingest, lines_at, move_at, utc
from tests.conftest import Api
from tests.factories import force_state, make_sub_account, make_user

NOW = utc("2025-03-03 15:00")  # the third day of the period, in progress
PERIOD = {"start": "2025-02-20", "end": "2025-03-03"}


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    """No collectstatic in tests: serve assets by their plain names."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def grow_to(partner, total: int) -> None:
    """Sub-accounts (Available included) up to ``total``, each with two lines and traffic
    on two days; the fourth one made is merged into the third."""
    existing = SubAccount.objects.filter(partner=partner).count()
    made = []
    for i in range(existing, total):
        sub_account = make_sub_account(partner, f"Grown {i:03d}")
        lines = lines_at(partner, 2, T0)
        for line in lines:
            assign_at(line, sub_account, T0, daily_limit=3)
        ingest(
            *(
                event(f"g{i}-{n}-{k}", line, direction, f"+1415555{i:02d}{n}{k}", at)
                for n, line in enumerate(lines)
                for k, (direction, at) in enumerate(
                    [
                        ("outbound", utc("2025-03-01 09:00")),
                        ("inbound", utc("2025-03-01 10:00")),
                        ("outbound", utc("2025-03-03 09:00")),
                    ]
                )
            )
        )
        made.append(sub_account)
    if existing < 4 <= total:
        force_state(made[3 - existing], status="merged", merged_into=made[2 - existing])


def queries(client: Client, url: str, params: dict) -> int:
    with clock.frozen_at(NOW), CaptureQueriesContext(connection) as ctx:
        response = client.get(url, params)
    assert response.status_code == 200, response.content[:300]
    return len(ctx.captured_queries)


@pytest.fixture
def viewer(tenant) -> Client:
    client = Client()
    client.force_login(make_user(tenant.partner, "viewer@acme.example", "viewer"))
    return client


CASES = [
    ("api", "/api/v1/analytics/sub-accounts", {}),
    ("api", "/api/v1/analytics/sub-accounts", {"limit": 10, "offset": 10}),
    ("page", "/analytics/", {}),
    ("page", "/analytics/", {"sort": "-volume_limit_usage"}),
    ("page", "/analytics/", {"sort": "flags", "page": "2"}),
    ("page", "/analytics/sub-accounts.csv", {"sort": "-response_rate"}),
]


@pytest.mark.parametrize("counted", [False, True], ids=["day-in-progress-live", "counted-by-job"])
def test_the_list_and_pages_do_not_grow_with_sub_accounts(tenant, viewer, counted):
    api = Api(tenant.keys["viewer"])
    clients = {"api": api.client, "page": viewer}
    grow_to(tenant.partner, 5)
    if counted:
        with clock.frozen_at(NOW - dt.timedelta(hours=2)):
            analytics_days_close(partner_id=tenant.partner.pk)
    # A line that arrives after the count: reads add it live.
    late = lines_at(tenant.partner, 1, NOW - dt.timedelta(hours=1))[0]
    grown = SubAccount.objects.filter(partner=tenant.partner, name="Grown 001").get()
    move_at(late, grown, NOW - dt.timedelta(minutes=30))
    for kind, url, params in CASES:  # warm-up: the key's and the session's first use
        queries(clients[kind], url, {**PERIOD, **params})
    small = [queries(clients[kind], url, {**PERIOD, **params}) for kind, url, params in CASES]

    grow_to(tenant.partner, 50)
    large = [queries(clients[kind], url, {**PERIOD, **params}) for kind, url, params in CASES]

    assert large == small
    with clock.frozen_at(NOW):
        body = api.get("/analytics/sub-accounts", **PERIOD, limit=500).json()
    assert body["count"] == 50 - 1  # the merged one is not listed
    assert len(body["items"]) == 49


@pytest.mark.parametrize("counted", [False, True], ids=["day-in-progress-live", "counted-by-job"])
def test_the_sub_account_endpoint_and_page_do_not_grow(tenant, viewer, counted):
    grow_to(tenant.partner, 5)
    target = SubAccount.objects.get(partner=tenant.partner, name="Grown 002")  # + 003
    if counted:
        with clock.frozen_at(NOW - dt.timedelta(hours=2)):
            analytics_days_close(partner_id=tenant.partner.pk)
    api = Api(tenant.keys["viewer"]).client
    urls = [
        (api, f"/api/v1/sub-accounts/{target.pk}/analytics"),
        (viewer, f"/analytics/sub-accounts/{target.pk}/"),
        (viewer, f"/analytics/sub-accounts/{target.pk}/lines.csv"),
    ]
    for client, url in urls:
        queries(client, url, PERIOD)
    small = [queries(client, url, PERIOD) for client, url in urls]
    grow_to(tenant.partner, 50)
    for line in lines_at(tenant.partner, 10, T0):
        assign_at(line, target, T0)
    large = [queries(client, url, PERIOD) for client, url in urls]
    assert large == small
