"""Web suite: the large reseller's lists under load, its pages, and moving lines.

Data (:func:`bench.data.make_reseller_dataset`): 50 partners; the large one has
``1,000,000 × BENCH_SCALE`` lines in ``10,000 × BENCH_SCALE`` sub-accounts with a year
of assignment history and 90 days of analytics rollups.

(a) **API under load.** ``portal serve`` (gunicorn, ``BENCH_WEB_WORKERS`` threaded
workers, default as ``portal serve`` on this many cores) on the bench database with
:mod:`bench.settings`; 16 clients, each with one keep-alive HTTP connection, ask
``GET /api/v1/sub-accounts?limit=50&offset=<random>`` (a viewer key) back to back for
``BENCH_LOAD_SECONDS`` (default 30 s, × BENCH_SCALE below 1, at least 5 s). Baseline
in the same run and server: a bare Django view returning the same rows as JSON
(:mod:`bench.urls`: one ``.values()`` query and a count, no auth, no schema). p50,
p99 and throughput; targets p99 < 100 ms, throughput >= 50 % of the bare view's. On
fewer than eight cores the same requests are also sent by two clients per core for half
as long (sixteen clients' share of eight cores; a row for information, not the target).

(b) **Pages**, one logged-in client in this process (Django's test client): the
Sub-accounts page (default order, and "Most lines") at random page numbers, the
Lines list filtered by the largest sub-account at random page numbers, and the Lines
list of all the partner's lines at one of its first pages; p50 and p95 beside the
bare view of the same rows through the same client (target p95 < 200 ms: ours).

(b2) **A client of one sub-account** (domain §8.2) inside the large reseller: a client key
and a client login granted one standard sub-account of median size read, through the
real views and API in this process, its sub-account list, its line list (a random page)
and its analytics (the comparison and the sub-account's own, 30 days), API and pages; p50
and p95 beside a bare Django view of the same rows (its sub-account, its lines, its
rollups summed); target p95 < 50 ms. The scope narrows in ``visible_to``, so these
are the partner's own queries with ``sub_account_id IN (…)`` added: their cost must
follow the grant's size, not the partner's.

(c) **Moving lines** with the services a person's click ends in, as a partner admin:
``line_move`` of single random lines (p50 of ``MOVES``) and ``line_move_bulk`` of
``10,000 × BENCH_SCALE`` random lines from many sub-accounts into one (median of 3).
Baseline: raw SQL doing the same work on other lines of the same partner in one
transaction: lock the lines and sub-accounts, close and open the periods, move the
lines, adjust both counts and write one audit row per line (set-based for the bulk
move: one statement per step). Targets: bulk <= 5 × raw (issue 7); single moves
p50 < 50 ms (ours: a click that feels instant).
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import random
import statistics
import time
import zoneinfo
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.test import Client, override_settings

from bench.data import BENCH, PartnerYear, make_reseller_dataset
from bench.load import LoadResult, children, cpu_seconds, get, load, percentile, serve
from bench.rawsql import TABLES, raw_move
from bench.run import Report, Row, bench_scale, timed
from portal.accounts.models import Membership, User
from portal.accounts.services import api_key_create, user_create
from portal.analytics.models import PartnerAnalyticsState
from portal.analytics.rollups import analytics_days_close
from portal.billing.invoicing import invoice_issue
from portal.billing.periods import cycle_containing
from portal.billing.precompute import proration_accruals_precompute
from portal.core import clock
from portal.core.clock import frozen_at
from portal.core.principal import Principal
from portal.core.roles import Role
from portal.lines.models import Line, LineStatus
from portal.lines.services import line_move, line_move_bulk
from portal.partners.models import SubAccount, SubAccountKind, SubAccountStatus

CLIENTS = 16
ROUND_SECONDS = 3.0
PAGE = 50
P99_TARGET_MS = 100.0
THROUGHPUT_SHARE = 0.5
PAGE_P95_TARGET_MS = 200.0
PAGE_REQUESTS = 60
FIRST_PAGES = 20  # where people look in a list of a million
MOVES = 100
MOVE_P50_TARGET_MS = 50.0
BULK_LINES = 10_000
BULK_ROUNDS = 3
BULK_RATIO_TARGET = 5.0


def run(report: Report) -> None:
    scale = bench_scale()
    with timed() as took:
        data = make_reseller_dataset(scale=scale)
    large = data.large
    report.add(
        Row(
            f"web: generate {data.partners} partners, {data.lines:,} lines, "
            f"{data.periods:,} periods over a year, {data.rollup_rows:,} rollup rows "
            f"(large: {large.lines:,} lines, {len(large.sub_account_ids):,} sub-accounts)",
            took(),
            "s",
        )
    )
    admin = User.objects.create_user(email="bench-web@bench.example", password=None)
    Membership.objects.create(partner=large.partner, user=admin, role=Role.ADMIN)
    _api_under_load(report, large, scale)
    with timed() as took:
        _worker_state(large)
    report.add(
        Row(
            "web: the worker's state for the large partner's pages (the current cycle's "
            "invoice, accruing sums, today's analytics capacity)",
            took(),
            "s",
        )
    )
    _pages(report, large, admin)
    _client_reads(report, large)
    principal = Principal.for_user(User.objects.select_related("membership").get(pk=admin.pk))
    _move_one(report, large, principal)
    _bulk_move(report, large, principal, scale)
    _check_counts(large)


# --- (a) the sub-accounts API under load ---------------------------------------------------


def _load_seconds(scale: float) -> float:
    if os.environ.get("BENCH_LOAD_SECONDS"):
        return float(os.environ["BENCH_LOAD_SECONDS"])
    return max(5.0, 30.0 * min(1.0, scale))


def _workers() -> int:
    return int(os.environ.get("BENCH_WEB_WORKERS") or max(2, os.cpu_count() or 2))


def _api_under_load(report: Report, large: PartnerYear, scale: float) -> None:
    partner = large.partner
    key = api_key_create(
        principal=BENCH.acting_for(partner.pk), name="Bench web viewer", role=Role.VIEWER
    ).raw
    headers = {"Authorization": f"Bearer {key}"}
    listed = SubAccount.objects.filter(
        partner=partner, status__in=[SubAccountStatus.ACTIVE, SubAccountStatus.MERGED]
    ).count()
    last = max(1, listed - PAGE + 1)

    def api_path(rng: random.Random) -> str:
        return f"/api/v1/sub-accounts?limit={PAGE}&offset={rng.randrange(last)}"

    def bare_path(rng: random.Random) -> str:
        return (
            f"/bench/bare-sub-accounts?partner={partner.pk}&limit={PAGE}"
            f"&offset={rng.randrange(last)}"
        )

    seconds = _load_seconds(scale)
    workers = _workers()
    log = Path(settings.VAR_DIR) / "bench-web-server.log"
    with serve(workers=workers, log_path=log) as server:
        port = server.port

        def server_cpu() -> float:
            """CPU seconds of the gunicorn workers and the bench database's backends."""
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                )
                backends = [pid for (pid,) in cursor.fetchall()]
            return cpu_seconds(children(server.pid) + backends)

        # The same rows from both, and line counts in them.
        offset = last // 2
        status, body = get(port, f"/api/v1/sub-accounts?limit={PAGE}&offset={offset}", headers)
        assert status == 200, body[:300]
        portal_page = json.loads(body)
        status, body = get(
            port, f"/bench/bare-sub-accounts?partner={partner.pk}&limit={PAGE}&offset={offset}"
        )
        assert status == 200, body[:300]
        bare_page = json.loads(body)
        assert [r["id"] for r in portal_page["items"]] == [r["id"] for r in bare_page["items"]]
        assert portal_page["count"] == bare_page["count"] == listed
        assert all("line_count" in r for r in portal_page["items"])
        for path_for in (api_path, bare_path):  # every worker thread warm, both paths
            load(port=port, path_for=path_for, headers=headers, seconds=2, clients=CLIENTS)

        # Alternating slices of a few seconds, so a change in the machine's other load
        # falls on both alike.
        def alternated(clients: int, seconds: float) -> tuple[LoadResult, LoadResult]:
            rounds = max(2, round(seconds / ROUND_SECONDS))
            portal_parts, bare_parts = [], []
            for k in range(rounds):
                for parts, path_for in ((portal_parts, api_path), (bare_parts, bare_path)):
                    parts.append(
                        load(
                            port=port,
                            path_for=path_for,
                            headers=headers,
                            seconds=seconds / rounds,
                            clients=clients,
                            seed=k + 1,
                            cpu_probe=server_cpu,
                        )
                    )
            return LoadResult.combine(portal_parts), LoadResult.combine(bare_parts)

        portal, bare = alternated(CLIENTS, seconds)
        # Sixteen clients on fewer than eight cores measure the machine as much as the
        # code: the same load at two clients per core says what a bigger machine would see.
        per_core = 2 * (os.cpu_count() or 1)
        scaled = alternated(per_core, seconds / 2) if per_core < CLIENTS else None
    for result in (portal, bare, *(scaled or ())):
        assert result.errors == 0, result.errors
    what = (
        f"web: GET /api/v1/sub-accounts, {PAGE} per page with line counts, random offset "
        f"in {listed:,}; {CLIENTS} clients × {seconds:.0f} s, gunicorn {workers}×4 threads"
    )
    bare_label = "bare Django view, same rows as JSON, same server"
    report.add(
        Row(
            f"{what}: p50 ({portal.requests:,} requests)",
            portal.percentile(50),
            "ms",
            baseline=bare.percentile(50),
            baseline_label=bare_label,
        )
    )
    p99 = portal.percentile(99)
    report.add(
        Row(
            f"{what}: p99",
            p99,
            "ms",
            baseline=bare.percentile(99),
            baseline_label=bare_label,
            target=f"p99 < {P99_TARGET_MS:.0f} ms",
            met=p99 < P99_TARGET_MS,
        )
    )
    report.add(
        Row(
            f"{what}: throughput",
            portal.throughput,
            "req/s",
            baseline=bare.throughput,
            baseline_label=bare_label,
            target=f">= {THROUGHPUT_SHARE:.0%} of bare",
            met=portal.throughput >= THROUGHPUT_SHARE * bare.throughput,
        )
    )
    if scaled is not None:
        report.add(
            Row(
                f"web: GET /api/v1/sub-accounts, the same requests from {per_core} clients × "
                f"{seconds / 2:.0f} s (two per core, as sixteen on eight cores; information, "
                "not the target): p99",
                scaled[0].percentile(99),
                "ms",
                baseline=scaled[1].percentile(99),
                baseline_label=bare_label,
            )
        )
    if portal.cpu_seconds:
        # Independent of what else the machine runs: the work one request costs.
        report.add(
            Row(
                f"{what}: server CPU per request (gunicorn workers + PostgreSQL backends)",
                portal.cpu_ms_per_request,
                "ms",
                baseline=bare.cpu_ms_per_request,
                baseline_label=bare_label,
            )
        )


# --- (b) pages -------------------------------------------------------------------------------


def _worker_state(large: PartnerYear) -> None:
    """What the worker has done by the time anyone reads a page: the current cycle's
    invoice issued at its start, the accruing prorations summed and today's analytics
    capacity counted (both every 10 minutes), the days before it closed (the rollups
    were written with their capacity, as :mod:`bench.analytics` reads them). Without
    them the Sub-accounts page's This month drafts the month's invoice, as the Billing
    page does, and its last 30 days count every line-day from assignment periods."""
    partner = large.partner
    now = clock.now()
    cycle = cycle_containing(now, partner.timezone)
    with frozen_at(cycle.start):
        invoice_issue(principal=BENCH, partner=partner, cycle=cycle)
    proration_accruals_precompute(principal=BENCH, now=now)
    today = now.astimezone(zoneinfo.ZoneInfo(partner.timezone)).date()
    PartnerAnalyticsState.objects.update_or_create(
        partner_id=partner.pk, defaults={"days_closed_through": today - dt.timedelta(days=1)}
    )
    analytics_days_close(partner_id=partner.pk)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # what these wrote, as autovacuum soon would


def _times(n: int, call: Callable[[random.Random], None], seed: int = 3) -> list[float]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call(rng)
        out.append((time.perf_counter() - start) * 1000)
    return out


def _getter(client: Client, path_for: Callable[[random.Random], str]):
    def call(rng: random.Random) -> None:
        response = client.get(path_for(rng))
        assert response.status_code == 200, (response.status_code, response.content[:300])

    return call


def _pages(report: Report, large: PartnerYear, admin: User) -> None:
    partner = large.partner
    # The pages are served in this process, which still holds what the generator built
    # (millions of objects): a full garbage collection, which a page making 100,000
    # objects triggers every few requests, would scan them all (0.5 s), where a server's
    # worker holds its own few. They are put out of the collector's reach.
    gc.collect()
    gc.freeze()
    browser = Client()
    browser.force_login(admin)
    anonymous = Client()
    standard = SubAccount.objects.filter(
        partner=partner, kind=SubAccountKind.STANDARD, status=SubAccountStatus.ACTIVE
    )
    pages = max(1, -(-standard.count() // PAGE))
    biggest = standard.order_by("-line_count").first()
    assert biggest is not None
    line_pages = max(1, -(-biggest.line_count // PAGE))
    cases = [
        (
            f"page Sub-accounts, random page of {pages:,}",
            lambda rng: f"/sub-accounts/?page={rng.randint(1, pages)}",
            lambda rng: (
                f"/bench/bare-sub-accounts?partner={partner.pk}"
                f"&offset={(rng.randint(1, pages) - 1) * PAGE}"
            ),
        ),
        (
            f"page Sub-accounts sorted by most lines, random page of {pages:,}",
            lambda rng: f"/sub-accounts/?sort=-lines&page={rng.randint(1, pages)}",
            lambda rng: (
                f"/bench/bare-sub-accounts?partner={partner.pk}&sort=-lines"
                f"&offset={(rng.randint(1, pages) - 1) * PAGE}"
            ),
        ),
        (
            # Every sub-account's cost this month (Billing's summary) ordered, then a page.
            f"page Sub-accounts sorted by This month, random page of {pages:,}",
            lambda rng: f"/sub-accounts/?sort=-this_month&page={rng.randint(1, pages)}",
            lambda rng: (
                f"/bench/bare-sub-accounts?partner={partner.pk}"
                f"&offset={(rng.randint(1, pages) - 1) * PAGE}"
            ),
        ),
        (
            # Every sub-account's last 30 days (the Analytics comparison's sums) ordered.
            f"page Sub-accounts sorted by volume limit usage, random page of {pages:,}",
            lambda rng: f"/sub-accounts/?sort=-volume_limit_usage&page={rng.randint(1, pages)}",
            lambda rng: (
                f"/bench/bare-sub-accounts?partner={partner.pk}"
                f"&offset={(rng.randint(1, pages) - 1) * PAGE}"
            ),
        ),
        (
            f"page Lines filtered by the largest sub-account ({biggest.line_count:,} lines), "
            f"random page of {line_pages:,}",
            lambda rng: f"/lines/?sub_account={biggest.pk}&page={rng.randint(1, line_pages)}",
            lambda rng: (
                f"/bench/bare-lines?partner={partner.pk}&sub_account_id={biggest.pk}"
                f"&offset={(rng.randint(1, line_pages) - 1) * PAGE}"
            ),
        ),
        (
            f"page Lines, all {large.active_lines:,} active lines, random page of the first "
            f"{FIRST_PAGES}",
            lambda rng: f"/lines/?page={rng.randint(1, FIRST_PAGES)}",
            lambda rng: (
                f"/bench/bare-lines?partner={partner.pk}"
                f"&offset={(rng.randint(1, FIRST_PAGES) - 1) * PAGE}"
            ),
        ),
    ]
    with override_settings(ROOT_URLCONF="bench.urls"):
        for label, page_path, bare_path in cases:
            page = _getter(browser, page_path)
            bare = _getter(anonymous, bare_path)
            page(random.Random(0))  # warm up: templates, first queries
            bare(random.Random(0))
            page_ms = _times(PAGE_REQUESTS, page)
            bare_ms = _times(PAGE_REQUESTS, bare)
            p95 = percentile(page_ms, 95)
            report.add(
                Row(
                    f"web: {label}, one client (p50 {percentile(page_ms, 50):.0f} ms, "
                    f"{PAGE_REQUESTS} requests)",
                    p95,
                    "ms p95",
                    baseline=percentile(bare_ms, 95),
                    baseline_label="bare Django view of the same rows as JSON, p95",
                    target=f"p95 < {PAGE_P95_TARGET_MS:.0f} ms",
                    met=p95 < PAGE_P95_TARGET_MS,
                )
            )
    gc.unfreeze()


# --- (b2) a client of one sub-account ------------------------------------------------------

CLIENT_P95_TARGET_MS = 50.0
CLIENT_DAYS = 30


def _client_reads(report: Report, large: PartnerYear) -> None:
    partner = large.partner
    standard = SubAccount.objects.filter(
        partner=partner, kind=SubAccountKind.STANDARD, status=SubAccountStatus.ACTIVE
    ).order_by("line_count", "pk")
    mine = standard[standard.count() // 2]  # a sub-account of median size
    grant = BENCH.acting_for(partner.pk)
    key = api_key_create(
        principal=grant, name="Bench client", role=Role.CLIENT, sub_account_ids=[mine.pk]
    ).raw
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    person = user_create(
        principal=grant,
        email="bench-client@bench.example",
        role=Role.CLIENT,
        sub_account_ids=[mine.pk],
    )
    browser = Client()
    browser.force_login(person)
    anonymous = Client()
    today = clock.now().astimezone(zoneinfo.ZoneInfo(partner.timezone)).date()
    start = today - dt.timedelta(days=CLIENT_DAYS - 1)
    period = f"start={start}&end={today}"
    pages = max(1, -(-mine.line_count // PAGE))
    bare_sub = f"/bench/bare-sub-accounts?partner={partner.pk}&id={mine.pk}"
    bare_analytics = (
        f"/bench/bare-sub-account-analytics?partner={partner.pk}&sub_account_id={mine.pk}&{period}"
    )

    def bare_lines(rng: random.Random) -> str:
        offset = (rng.randint(1, pages) - 1) * PAGE
        return f"/bench/bare-lines?partner={partner.pk}&sub_account_id={mine.pk}&offset={offset}"

    def line_page(prefix: str, query: str) -> Callable[[random.Random], str]:
        return lambda rng: f"{prefix}{query}{rng.randint(0, pages - 1) * PAGE}"

    cases = [
        ("GET /api/v1/sub-accounts", api, lambda rng: "/api/v1/sub-accounts", bare_sub),
        (
            f"GET /api/v1/lines, random page of {pages:,}",
            api,
            line_page("/api/v1/lines?limit=50", "&offset="),
            bare_lines,
        ),
        (
            f"GET /api/v1/analytics/sub-accounts, {CLIENT_DAYS} days",
            api,
            lambda rng: f"/api/v1/analytics/sub-accounts?{period}",
            bare_analytics,
        ),
        (
            f"GET /api/v1/sub-accounts/{{id}}/analytics, {CLIENT_DAYS} days",
            api,
            lambda rng: f"/api/v1/sub-accounts/{mine.pk}/analytics?{period}",
            bare_analytics,
        ),
        ("page Sub-accounts", browser, lambda rng: "/sub-accounts/", bare_sub),
        (
            f"page Lines, random page of {pages:,}",
            browser,
            lambda rng: f"/lines/?page={rng.randint(1, pages)}",
            bare_lines,
        ),
        (
            f"page Analytics, {CLIENT_DAYS} days",
            browser,
            lambda rng: f"/analytics/?{period}",
            bare_analytics,
        ),
    ]
    with override_settings(ROOT_URLCONF="bench.urls"):
        for label, who, path_for, bare_for in cases:
            bare_path = bare_for if callable(bare_for) else (lambda rng, p=bare_for: p)
            ours = _getter(who, path_for)
            bare = _getter(anonymous, bare_path)
            ours(random.Random(0))  # warm up: templates, first queries
            bare(random.Random(0))
            ours_ms = _times(PAGE_REQUESTS, ours)
            bare_ms = _times(PAGE_REQUESTS, bare)
            p95 = percentile(ours_ms, 95)
            report.add(
                Row(
                    f"web: a client of one sub-account ({mine.line_count:,} lines of "
                    f"{large.lines:,}): {label} (p50 {percentile(ours_ms, 50):.0f} ms, "
                    f"{PAGE_REQUESTS} requests)",
                    p95,
                    "ms p95",
                    baseline=percentile(bare_ms, 95),
                    baseline_label="bare Django view of the same rows as JSON, p95",
                    target=f"p95 < {CLIENT_P95_TARGET_MS:.0f} ms",
                    met=p95 < CLIENT_P95_TARGET_MS,
                )
            )


# --- (c) moving lines -----------------------------------------------------------------------


def _random_active_lines(partner_id: int, n: int, rng: random.Random) -> list[tuple[int, int]]:
    """``n`` distinct random active lines of the partner as (line id, sub-account id)."""
    rows = list(
        Line.objects.filter(partner_id=partner_id, status=LineStatus.ACTIVE).values_list(
            "pk", "sub_account_id"
        )
    )
    return rng.sample(rows, min(n, len(rows)))


def _other_target(large: PartnerYear, current: int, rng: random.Random) -> int:
    while True:
        target = rng.choice(large.sub_account_ids)
        if target != current:
            return target


def _move_one(report: Report, large: PartnerYear, principal: Principal) -> None:
    rng = random.Random(5)
    picked = _random_active_lines(large.partner.pk, 2 * MOVES + 2, rng)
    service_ms: list[float] = []
    raw_ms: list[float] = []
    for k, (line_id, current) in enumerate(picked):
        target = _other_target(large, current, rng)
        start = time.perf_counter()
        if k % 2 == 0:  # interleaved, so both see the same database state
            line_move(principal=principal, line_id=line_id, sub_account_id=target)
            service_ms.append((time.perf_counter() - start) * 1000)
        else:
            raw_move(
                partner_id=large.partner.pk,
                line_ids=[line_id],
                target_id=target,
                actor_id=principal.id or 0,
            )
            raw_ms.append((time.perf_counter() - start) * 1000)
    service_ms, raw_ms = service_ms[1:], raw_ms[1:]  # the first of each warms up
    p50 = statistics.median(service_ms)
    report.add(
        Row(
            f"web: move one line (service line_move, {len(service_ms)} random lines; p95 "
            f"{percentile(service_ms, 95):.1f} ms)",
            p50,
            "ms p50",
            baseline=statistics.median(raw_ms),
            baseline_label="raw SQL: lock, close+open period, move, 2 counts, audit row; p50",
            target=f"p50 < {MOVE_P50_TARGET_MS:.0f} ms",
            met=p50 < MOVE_P50_TARGET_MS,
        )
    )


def _bulk_move(report: Report, large: PartnerYear, principal: Principal, scale: float) -> None:
    n = max(100, round(BULK_LINES * scale))
    rng = random.Random(9)
    service_s: list[float] = []
    raw_s: list[float] = []
    for _ in range(BULK_ROUNDS):
        target = rng.choice(large.sub_account_ids)
        picked = [
            line_id
            for line_id, current in _random_active_lines(large.partner.pk, 2 * n + 1_000, rng)
            if current != target
        ]
        ours, theirs = picked[:n], picked[n : 2 * n]
        with timed() as took:
            result = line_move_bulk(principal=principal, line_ids=ours, sub_account_id=target)
        service_s.append(took())
        assert result.moved == n, result.moved
        with timed() as took:
            raw_move(
                partner_id=large.partner.pk,
                line_ids=theirs,
                target_id=target,
                actor_id=principal.id or 0,
            )
        raw_s.append(took())
    figure, baseline = statistics.median(service_s), statistics.median(raw_s)
    report.add(
        Row(
            f"web: bulk move {n:,} random lines into one sub-account (service "
            f"line_move_bulk, median of {BULK_ROUNDS})",
            figure,
            "s",
            baseline=baseline,
            baseline_label="raw SQL, the same steps set-based, one statement each",
            target=f"<= {BULK_RATIO_TARGET:.0f}× raw SQL",
            met=figure <= BULK_RATIO_TARGET * baseline,
        )
    )


def _check_counts(large: PartnerYear) -> None:
    """Every line count still equals its active lines after the moves (both kinds)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM {TABLES['sub']} s LEFT JOIN (SELECT sub_account_id, "  # noqa: S608
            f"COUNT(*) AS n FROM {TABLES['line']} WHERE partner_id = %s AND status = 'active' "
            "GROUP BY sub_account_id) c ON c.sub_account_id = s.id "
            "WHERE s.partner_id = %s AND s.line_count <> COALESCE(c.n, 0)",
            [large.partner.pk, large.partner.pk],
        )
        wrong = cursor.fetchone()[0]
    assert wrong == 0, f"{wrong} sub-accounts' line counts disagree with their lines"
