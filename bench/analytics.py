"""Analytics benchmark: ingestion through the HTTP API, and the analytics reads at scale.

(a) **Ingestion.** A partner with ``ING_LINES`` lines (COPY-fast, :mod:`bench.data`);
the traffic simulator's events for them, ``ING_EVENTS`` in all, POSTed in batches of
10,000 to ``/api/v1/message-events`` with a staff key through Django's test
``Client`` in this process (the whole request path: auth, JSON, validation, the
ingestion transaction with conversations and rollups; no network or WSGI server).
Baseline, same run: the rows each request stored, COPYed (one COPY, committed) into
``bench_raw_events``, a copy of the event table with the same indexes and
constraints (``LIKE … INCLUDING ALL``: no foreign keys), right after that request, so
both tables grow alike and a change in the machine's other load falls on both. The
bodies are JSON-encoded before the clock starts (the platform's work, not ours).
Target: ingestion at >= 25 % of the COPY rate.

(b) **Reads.** A partner with ``READ_LINES`` lines (a million at scale 1) in
``READ_SUB_ACCOUNTS`` sub-accounts (COPY-fast) and 90 days of sub-account rollups
written straight into the table by the simulator's fast path (not through ingestion),
with their week and month buckets and the partner's days summed in SQL, the days
before today closed. ``GET /analytics/sub-accounts`` (first page of 50) and
``GET /sub-accounts/{id}/analytics`` for the 90 days ending today (today's capacity
counted by the periodic job, as the worker does every ten minutes, plus what reads
add live), each ``READS`` times with a viewer key, and the
Analytics pages (the overview by name and by volume limit usage, which needs every
sub-account's live capacity, and one sub-account's page): p50 and p95 against a
target p95 < 200 ms. Baseline: one SQL sum per sub-account over the period's days
(no buckets).

(c) **Alerts and capacity advice** (issue 22), on the read partner: one partner-wide
rule of each metric (each sub-account separately, a 7-day window; ``available_lines`` the
partner's) evaluated by the worker's code path, alone, first when its alerts fire (one
INSERT of them and their audit events) and again when nothing changes; target under 2 s
each. And ``GET /analytics/capacity`` (first page of 50, 30 days): p95 < 200 ms.

Every row notes the machine's load average when it was measured (the machine may be
shared).

``BENCH_SCALE`` scales lines, sub-accounts and events (e.g. 0.1 for a quick run).
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import statistics
import time
import zoneinfo
from collections.abc import Iterator

from django.db import connection, transaction
from django.test import Client

from bench.data import BENCH, _copy, make_partner_history
from bench.run import Report, Row, bench_scale, timed
from portal.accounts.models import Membership, User
from portal.accounts.services import api_key_create
from portal.alerts.evaluation import EVALUATOR, alerts_evaluate
from portal.alerts.models import Alert
from portal.alerts.services import alert_rule_create
from portal.analytics.models import (
    DailyPartnerRollup,
    DailySubAccountRollup,
    MessageEvent,
    PartnerAnalyticsState,
    SubAccountRollupBucket,
)
from portal.analytics.rollups import analytics_days_close
from portal.analytics.simulator import (
    TrafficModel,
    generate_events,
    generate_sub_account_days,
    partner_lines,
)
from portal.billing.periods import Cycle
from portal.core import clock
from portal.core.bulk import copy_binary
from portal.core.roles import Role
from portal.lines.models import Line, LineStatus
from portal.partners.models import SubAccountKind

BATCH = 10_000
ING_LINES, ING_EVENTS = 2_000, 100_000
READ_LINES, READ_SUB_ACCOUNTS, READ_DAYS = 1_000_000, 10_000, 90
READS = 40
INGEST_SHARE_TARGET = 0.25
READ_P95_TARGET_MS = 200.0
ALERT_TARGET_SECONDS = 2.0
# One partner-wide rule of each metric, as a reseller would set them.
ALERT_RULES = (
    ("volume_limit_usage", "above", "0.5"),
    ("response_rate", "below", "0.3"),
    ("over_pressured_line_days", "above", "0"),
    ("available_lines", "below", "1000000"),
)
# The read partner's history is laid in June 2026 (bench.data); it is read on 1 August.
READ_NOW = dt.datetime(2026, 8, 1, 15, 0, tzinfo=dt.UTC)


def run(report: Report) -> None:
    scale = bench_scale()
    _ingestion(report, scale)
    _reads(report, scale)


# --- (a) Ingestion --------------------------------------------------------------------


def _post(client: Client, body: str) -> dict:
    response = client.post("/api/v1/message-events", body, content_type="application/json")
    assert response.status_code == 200, response.content[:500]
    return response.json()


def _ingestion(report: Report, scale: float) -> None:
    lines, total = max(10, round(ING_LINES * scale)), max(BATCH, round(ING_EVENTS * scale))
    history = make_partner_history(
        lines=lines,
        sub_accounts=max(2, lines // 40),
        moves=0,
        activations=0,
        disconnections=0,
        cycle=Cycle(2026, 6, "UTC"),
        name="Analytics Ingest Partner",
        number_base=8_000_000,
    )
    partner = history.partner
    # bench.data's +1555 numbers are not valid numbers; the platform posts real ones.
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Line._meta.db_table} SET number = '+1212' || "  # noqa: S608
            "(2000000 + id - (SELECT MIN(id) FROM lines_line WHERE partner_id = %s))::text "
            "WHERE partner_id = %s",
            [partner.pk, partner.pk],
        )
    key = api_key_create(principal=BENCH, name="Bench platform", staff=True).raw
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    events = _first(
        generate_events(partner_lines(partner.pk), timezone=partner.timezone, days=30), total
    )
    batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
    bodies = [json.dumps({"events": batch}) for batch in batches]
    _post(client, json.dumps({"events": batches[0][:10]}))  # warm up: first use, imports
    raw = _RawCopy(partner.pk)
    raw.copy_new()  # the warm-up's ten, and the COPY path warm
    # The generated events and history are this process's data, not a web worker's: out
    # of the garbage collector's sight, so its passes during a request cost what they
    # would in a worker (not a walk over a hundred thousand generated events).
    gc.collect()
    gc.freeze()
    seconds, copy_seconds = [], []
    accepted = copied = 0
    for body in bodies:
        with timed() as took:
            answer = _post(client, body)
        assert not answer["rejected"], answer["rejected"][:3]
        accepted += answer["accepted"]
        seconds.append(took())
        rows, took_copy = raw.copy_new()
        copied += rows
        copy_seconds.append(took_copy)
    assert accepted == len(events) - 10, accepted  # the warm-up's ten were stored already
    assert copied == accepted, (copied, accepted)
    gc.unfreeze()
    ingest_rate = accepted / sum(seconds)
    copy_rate = copied / sum(copy_seconds)
    report.add(
        Row(
            f"analytics: ingest {accepted:,} events via POST /message-events "
            f"({len(batches)} batches of {BATCH:,}, {lines:,} lines; p95 batch "
            f"{_p(seconds, 95):.2f} s; {_load()})",
            ingest_rate,
            "events/s",
            baseline=copy_rate,
            baseline_label="COPY of the rows each request stored, same-indexed table",
            target=f">= {INGEST_SHARE_TARGET:.0%} of COPY",
            met=ingest_rate >= INGEST_SHARE_TARGET * copy_rate,
        )
    )


def _first(events: Iterator[dict], n: int) -> list[dict]:
    out = []
    for event in events:
        out.append(event)
        if len(out) == n:
            break
    return out


class _RawCopy:
    """COPYs the partner's events stored since the last call into ``bench_raw_events``."""

    COLUMNS = (
        "partner_id",
        "event_id",
        "line_id",
        "sub_account_id",
        "direction",
        "contact_hash",
        "occurred_at",
        "local_day",
        "received_at",
    )

    def __init__(self, partner_id: int) -> None:
        self.partner_id = partner_id
        self.after = 0
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS bench_raw_events")
            cursor.execute(
                f"CREATE TABLE bench_raw_events (LIKE {MessageEvent._meta.db_table} INCLUDING ALL)"
            )

    def copy_new(self) -> tuple[int, float]:
        """(rows, seconds of the COPY and its commit) for the events stored since last time."""
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, {', '.join(self.COLUMNS)} FROM {MessageEvent._meta.db_table} "  # noqa: S608
                "WHERE partner_id = %s AND id > %s ORDER BY id",
                [self.partner_id, self.after],
            )
            rows = cursor.fetchall()
        if not rows:
            return 0, 0.0
        self.after = rows[-1][0]
        # The fastest COPY there is (binary, as ingestion's own) on the same rows.
        with timed() as took, transaction.atomic():
            copy_binary("bench_raw_events", self.COLUMNS, (row[1:] for row in rows))
        return len(rows), took()


# --- (b) Reads ----------------------------------------------------------------------------


def _reads(report: Report, scale: float) -> None:
    lines = max(100, round(READ_LINES * scale))
    subs = max(10, round(READ_SUB_ACCOUNTS * scale))
    with timed() as generation:
        history = make_partner_history(
            lines=lines,
            sub_accounts=subs,
            moves=lines // 10,
            cycle=Cycle(2026, 6, "UTC"),
            name="Analytics Read Partner",
            number_base=7_000_000,
        )
        partner = history.partner
        zone = zoneinfo.ZoneInfo(partner.timezone)
        today = READ_NOW.astimezone(zone).date()
        first = today - dt.timedelta(days=READ_DAYS - 1)
        rows = _write_rollups(partner.pk, first, today)
        PartnerAnalyticsState.objects.update_or_create(
            partner_id=partner.pk, defaults={"days_closed_through": today - dt.timedelta(days=1)}
        )
        with connection.cursor() as cursor:
            # Ingestion writes a day's rows during that day and a week's or month's when it
            # begins, so in production they lie together in the table; the COPY above wrote
            # them sub-account by sub-account. Lay them out as production would.
            for model, index in (
                (DailySubAccountRollup, "sa_rollup_partner_day"),
                (SubAccountRollupBucket, "sa_bucket_partner_start"),
            ):
                cursor.execute(f"CLUSTER {model._meta.db_table} USING {index}")
    # The worker's periodic job, as it runs every ten minutes: today's capacity so far.
    with timed() as counting, clock.frozen_at(READ_NOW):
        analytics_days_close(partner_id=partner.pk)
    with connection.cursor() as cursor:
        for model in (DailySubAccountRollup, SubAccountRollupBucket, DailyPartnerRollup):
            cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")
    report.add(
        Row(
            f"analytics: generate {lines:,} lines, {subs:,} sub-accounts, "
            f"{rows:,} sub-account rollup rows over {READ_DAYS} days (COPY)",
            generation(),
            "s",
        )
    )
    report.add(
        Row(
            f"analytics: the periodic job counting today's line-days of {lines:,} lines "
            "(worker, every 10 minutes)",
            counting(),
            "s",
        )
    )
    key = api_key_create(
        principal=BENCH.acting_for(partner.pk), name="Bench viewer", role=Role.VIEWER
    ).raw
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    period = {"start": first.isoformat(), "end": today.isoformat()}
    busiest = (
        Line.objects.filter(partner=partner, status=LineStatus.ACTIVE)
        .exclude(sub_account__kind=SubAccountKind.AVAILABLE)
        .values_list("sub_account_id", flat=True)
        .first()
    )
    baseline = _times(READS, lambda: _sum_per_sub_account(partner.pk, first, today))
    viewer = User.objects.create_user(email="bench-viewer@bench.example", password=None)
    Membership.objects.create(partner=partner, user=viewer, role=Role.VIEWER)
    browser = Client()
    browser.force_login(viewer)
    by_usage = {**period, "sort": "-volume_limit_usage"}
    for label, path, who, params in (
        ("GET /analytics/sub-accounts", "/api/v1/analytics/sub-accounts", client, period),
        (
            "GET /sub-accounts/{id}/analytics",
            f"/api/v1/sub-accounts/{busiest}/analytics",
            client,
            period,
        ),
        ("page Analytics", "/analytics/", browser, period),
        ("page Analytics sorted by volume limit usage", "/analytics/", browser, by_usage),
        ("page sub-account analytics", f"/analytics/sub-accounts/{busiest}/", browser, period),
    ):
        with clock.frozen_at(READ_NOW):
            who.get(path, params)  # warm up
            times = _times(READS, lambda path=path, who=who, params=params: _get(who, path, params))
        p95 = _p(times, 95)
        report.add(
            Row(
                f"analytics: {label}, {READ_DAYS} days, {lines:,} lines / {subs:,} "
                f"sub-accounts (p50 {_p(times, 50):.0f} ms, {READS} requests; {_load()})",
                p95,
                "ms p95",
                baseline=_p(baseline, 95) if path.endswith("/analytics/sub-accounts") else None,
                baseline_label="SQL sum per sub-account over the period, p95",
                target=f"p95 < {READ_P95_TARGET_MS:.0f} ms",
                met=p95 < READ_P95_TARGET_MS,
            )
        )
    _alerts_and_capacity(report, partner, lines, subs, client)


def _alerts_and_capacity(report: Report, partner, lines: int, subs: int, client: Client) -> None:
    principal = BENCH.acting_for(partner.pk)
    for metric, comparator, threshold in ALERT_RULES:
        with clock.frozen_at(READ_NOW):
            rule = alert_rule_create(
                principal=principal,
                metric=metric,
                comparator=comparator,
                threshold=threshold,
                window_days=7,
            )
            with timed() as first:
                fired = alerts_evaluate(
                    principal=EVALUATOR.acting_for(partner.pk), rule_ids=[rule.pk]
                ).fired
            with timed() as again:
                alerts_evaluate(principal=EVALUATOR.acting_for(partner.pk), rule_ids=[rule.pk])
        assert Alert.objects.filter(rule=rule, status="firing").count() == fired
        if metric == "available_lines":
            scope = "the partner's lines in Available"
        else:
            scope = f"each of {subs:,} sub-accounts over 7 days"
        fired_words = f"{fired:,} alert{'s' if fired != 1 else ''} fired, each with its audit event"
        for label, took in (
            (f"first run, {fired_words}", first()),
            ("run again, nothing changed", again()),
        ):
            report.add(
                Row(
                    f"alerts: evaluate one rule, {metric} {comparator} {threshold}, on {scope} "
                    f"({lines:,} lines; {label}; {_load()})",
                    took,
                    "s",
                    target=f"< {ALERT_TARGET_SECONDS:.0f} s",
                    met=took < ALERT_TARGET_SECONDS,
                )
            )
    params = {"target": "0.8", "days": 30}
    with clock.frozen_at(READ_NOW):
        _get(client, "/api/v1/analytics/capacity", params)  # warm up
        times = _times(READS, lambda: _get(client, "/api/v1/analytics/capacity", params))
    p95 = _p(times, 95)
    report.add(
        Row(
            f"analytics: GET /analytics/capacity, 30 days, first page of 50, {lines:,} lines / "
            f"{subs:,} sub-accounts (p50 {_p(times, 50):.0f} ms, {READS} requests; {_load()})",
            p95,
            "ms p95",
            target=f"p95 < {READ_P95_TARGET_MS:.0f} ms",
            met=p95 < READ_P95_TARGET_MS,
        )
    )


def _load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def _get(client: Client, path: str, params: dict) -> None:
    response = client.get(path, params)
    assert response.status_code == 200, response.content[:500]


def _times(n: int, call) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1000)
    return out


def _p(values: list[float], pct: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def _sum_per_sub_account(partner_id: int, first: dt.date, last: dt.date) -> None:
    table = DailySubAccountRollup._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT sub_account_id, SUM(messages_sent), SUM(new_conversations), "  # noqa: S608
            f"SUM(responded_conversations), SUM(active_line_days), SUM(limit_line_days) "
            f"FROM {table} WHERE partner_id = %s AND day BETWEEN %s AND %s "
            f"GROUP BY sub_account_id",
            [partner_id, first, last],
        )
        cursor.fetchall()


def _write_rollups(partner_id: int, first: dt.date, today: dt.date) -> int:
    """90 days of sub-account rollups from the simulator's fast path, COPYed in.

    Capacity for the closed days (before today) comes from each sub-account's lines
    today (their count and Σ limits); today's row has activity only, its capacity
    being counted by the periodic job afterwards (as the worker does).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT sub_account_id, COUNT(*), SUM(daily_limit) FROM {Line._meta.db_table} "  # noqa: S608
            "WHERE partner_id = %s AND status = 'active' GROUP BY sub_account_id",
            [partner_id],
        )
        holders = [(pk, n, int(limits)) for pk, n, limits in cursor.fetchall()]
    days = (today - first).days + 1
    columns = [
        "partner_id",
        "sub_account_id",
        "day",
        "messages_sent",
        "messages_received",
        "new_conversations",
        "responded_conversations",
        "inbound_conversations",
        "near_limit_line_days",
        "over_pressured_line_days",
        "active_line_days",
        "limit_line_days",
    ]
    count = 0

    def text() -> Iterator[str]:
        nonlocal count
        model = TrafficModel(seed=11)
        for d in generate_sub_account_days(holders, first_day=first, days=days, model=model):
            lines, limits = (0, 0) if d.day == today else (d.active_line_days, d.limit_line_days)
            count += 1
            yield (
                f"{partner_id}\t{d.sub_account_id}\t{d.day.isoformat()}\t{d.messages_sent}\t"
                f"{d.messages_received}\t{d.new_conversations}\t{d.responded_conversations}\t"
                f"{d.inbound_conversations}\t{d.near_limit_line_days}\t"
                f"{d.over_pressured_line_days}\t{lines}\t{limits}\n"
            )

    with transaction.atomic():
        _copy(DailySubAccountRollup._meta.db_table, columns, text())
        # Weeks and months, and the partner's days, the sums of the sub-accounts' days (as
        # ingestion and the day-closing job keep them), in one statement each.
        sums = ", ".join(f"SUM({c})" for c in columns[3:])
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {DailyPartnerRollup._meta.db_table} "  # noqa: S608
                f"(partner_id, day, {', '.join(columns[3:])}) "
                f"SELECT partner_id, day, {sums} FROM {DailySubAccountRollup._meta.db_table} "
                "WHERE partner_id = %s GROUP BY partner_id, day",
                [partner_id],
            )
            for grain, trunc in (("week", "week"), ("month", "month")):
                cursor.execute(
                    f"INSERT INTO {SubAccountRollupBucket._meta.db_table} "  # noqa: S608
                    f"(partner_id, sub_account_id, grain, start, {', '.join(columns[3:])}) "
                    f"SELECT partner_id, sub_account_id, %s, date_trunc('{trunc}', day)::date, "
                    f"{sums} FROM {DailySubAccountRollup._meta.db_table} WHERE partner_id = %s "
                    "GROUP BY partner_id, sub_account_id, date_trunc('" + trunc + "', day)",
                    [grain, partner_id],
                )
    return count
