"""Soak suite: does a web worker or the task worker keep memory it no longer needs?

A partner of its own (``SOAK_LINES × BENCH_SCALE`` lines, valid +1 212 numbers, in
``SOAK_SUB_ACCOUNTS`` sub-accounts, an issued invoice), ``portal serve`` (two web
workers, :mod:`bench.settings`) and ``portal worker``, both on the bench database, and
a mixed load from this process, each kind its own client thread with a keep-alive
connection, paced so that two cores keep up:

- readers: the sub-accounts and lines lists, one line, the analytics list (viewer key);
- pages: the Sub-accounts, Lines, Analytics and Invoices pages (a logged-in admin);
- movers: one line at a time into one of the sub-accounts no workflow touches;
- ingestion: a 10,000-event batch of the traffic simulator's events (staff key) every
  ``INGEST_EVERY`` seconds;
- merges and deletions: a request by one admin key, approved by another (the worker
  then runs the merge, or purges nothing until the deletion's grace period ends);
- billing: the invoice, its items as CSV and PDF (large responses) and the summary.

After a warm-up (``SOAK_WARMUP``, default a tenth of the run, at least 60 s, under the
same load) the resident set (``VmRSS``) of each web worker and of the task worker is
read, then again after ``SOAK_SECONDS`` (default 600) of load, and sampled every 30 s on
the way (printed). Target: each process grows by less than 10 %. The run's requests by
kind, its refusals (409: a line moved, a sub-account taken by a workflow meanwhile)
and its errors (anything else that is not 2xx, or no answer) are reported too.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.test import Client

from bench.data import BENCH, make_partner_history
from bench.load import REPO, children, serve
from bench.run import Report, Row, bench_scale
from portal.accounts.models import Membership, User
from portal.accounts.services import api_key_create
from portal.analytics.simulator import generate_events, partner_lines
from portal.billing.invoicing import invoice_issue
from portal.billing.models import Invoice
from portal.billing.periods import Cycle
from portal.core.roles import Role
from portal.lines.models import Line, LineStatus
from portal.partners.models import SubAccount, SubAccountKind

SOAK_LINES = 20_000
SOAK_SUB_ACCOUNTS = 400
STABLE_SUB_ACCOUNTS = 40  # movers' targets; no workflow touches them
GROWTH_TARGET = 0.10
INGEST_EVERY = 20.0
WORKFLOW_EVERY = 15.0  # a merge, then a deletion: under the 10-a-minute workflow limit
SAMPLE_EVERY = 30.0
WARMUP_ROUNDS = 8
WARM_RISE_MB = 20.0
BATCH = 10_000
WEB_WORKERS = 2
# Simulated traffic covers this many days before the invoice's cycle is history.
TRAFFIC_DAYS = 30


def _seconds() -> float:
    return float(os.environ.get("SOAK_SECONDS") or 600)


def _warmup(seconds: float) -> float:
    if os.environ.get("SOAK_WARMUP"):
        return float(os.environ["SOAK_WARMUP"])
    return max(60.0, seconds / 10)


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB, from ``/proc``; (0, 0) if it has gone."""
    found = {"VmRSS": 0.0, "VmHWM": 0.0}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0.0
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in found:
            found[name] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


# --- the platform ---------------------------------------------------------------------


@dataclass
class Platform:
    partner_id: int
    timezone: str
    line_ids: list[int]
    stable_ids: list[int]  # movers move lines into these
    spare_ids: list[int]  # merged or deleted, one by one
    invoice_id: int
    viewer: str
    admin: str
    approver: str
    staff: str
    session: str


def _platform(scale: float) -> Platform:
    lines = max(1_000, round(SOAK_LINES * scale))
    sub_accounts = max(STABLE_SUB_ACCOUNTS + 20, round(SOAK_SUB_ACCOUNTS * scale))
    cycle = Cycle(2026, 6, "UTC")
    history = make_partner_history(
        lines=lines,
        sub_accounts=sub_accounts,
        moves=lines // 10,
        cycle=cycle,
        name="Soak Partner",
        number_base=9_000_000,
    )
    partner = history.partner
    # bench.data's +1555 numbers are not valid numbers; the platform posts real ones.
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Line._meta.db_table} SET number = '+1646' || "  # noqa: S608
            "(2000000 + id - (SELECT MIN(id) FROM lines_line WHERE partner_id = %s))::text "
            "WHERE partner_id = %s",
            [partner.pk, partner.pk],
        )
    invoice = invoice_issue(principal=BENCH, partner=partner, cycle=cycle)
    # A partner's admins approve each other's requests (else only staff may).
    partner.self_service_requests = True
    partner.save(update_fields=["self_service_requests"])
    ids = list(
        SubAccount.objects.filter(partner=partner, kind=SubAccountKind.STANDARD)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    admin_user = User.objects.create_user(email="bench-soak@bench.example", password=None)
    Membership.objects.create(partner=partner, user=admin_user, role=Role.ADMIN)
    client = Client()
    client.force_login(admin_user)

    def key(name: str, role: Role) -> str:
        return api_key_create(principal=BENCH.acting_for(partner.pk), name=name, role=role).raw

    return Platform(
        partner_id=partner.pk,
        timezone=partner.timezone,
        line_ids=list(
            Line.objects.filter(partner=partner, status=LineStatus.ACTIVE).values_list(
                "pk", flat=True
            )
        ),
        stable_ids=ids[:STABLE_SUB_ACCOUNTS],
        spare_ids=ids[STABLE_SUB_ACCOUNTS:],
        invoice_id=Invoice.objects.get(pk=invoice.pk).pk,
        viewer=key("Soak viewer", Role.VIEWER),
        admin=key("Soak admin", Role.ADMIN),
        approver=key("Soak approver", Role.ADMIN),
        staff=api_key_create(principal=BENCH, name="Soak platform", staff=True).raw,
        session=client.cookies[settings.SESSION_COOKIE_NAME].value,
    )


# --- the load -------------------------------------------------------------------------


@dataclass
class Tally:
    """Answers by kind: 2xx, 409 (refused: the world changed meanwhile) and errors."""

    ok: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, kind: str, status: int, body: bytes) -> None:
        with self.lock:
            if 200 <= status < 300:
                self.ok[kind] += 1
            elif status == 409:
                self.refused[kind] += 1
            else:
                self.errors[kind] += 1
                if len(self.first_errors) < 5:
                    self.first_errors.append(f"{kind} {status} {body[:200]!r}")


class Session:
    """One keep-alive connection; reconnects after a failure."""

    def __init__(self, port: int, headers: dict[str, str], tally: Tally) -> None:
        self.port, self.headers, self.tally = port, headers, tally
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def send(self, kind: str, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        status, payload = self._send(method, path, data, headers)
        if status == 0:  # the server closed an idle keep-alive connection: as a client would
            status, payload = self._send(method, path, data, headers)
        self.tally.count(kind, status, payload)
        return status, payload

    def _send(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            return 0, b""

    def close(self) -> None:
        self.conn.close()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Batches:
    """The traffic simulator's events for the partner, 10,000 at a time, as request bodies."""

    def __init__(self, platform: Platform) -> None:
        self.events = generate_events(
            partner_lines(platform.partner_id), timezone=platform.timezone, days=TRAFFIC_DAYS
        )
        self.lock = threading.Lock()

    def next_body(self) -> bytes | None:
        with self.lock:
            batch = [event for _, event in zip(range(BATCH), self.events, strict=False)]
        return json.dumps({"events": batch}).encode() if batch else None


def _warm_up_ingestion(
    port: int, platform: Platform, batches: Batches, tally: Tally, web_pids: list[int]
) -> int:
    """Batches two at a time until every web worker has handled one (its peak has risen
    by a batch's worth): which worker accepts a connection is the kernel's choice, and
    a worker's first batch (imports, caches, arenas) is no growth. Returns the batches."""
    idle = {pid: rss_mb(pid)[1] for pid in web_pids}
    sent = 0
    for _ in range(WARMUP_ROUNDS):
        bodies = [batches.next_body(), batches.next_body()]
        posts = [
            threading.Thread(
                target=lambda body=body: Session(port, _bearer(platform.staff), tally).send(
                    "ingest", "POST", "/api/v1/message-events", body
                )
            )
            for body in bodies
            if body is not None
        ]
        for post in posts:
            post.start()
        for post in posts:
            post.join()
        sent += len(posts)
        if all(rss_mb(pid)[1] >= idle[pid] + WARM_RISE_MB for pid in web_pids):
            break
    return sent


def _clients(
    platform: Platform, port: int, tally: Tally, stop: threading.Event, batches: Batches
) -> list[Callable[[], None]]:
    """One function per client thread; each runs until ``stop`` is set."""
    p = platform
    spare = list(p.spare_ids)
    spare_lock = threading.Lock()

    def take_spare(n: int) -> list[int]:
        with spare_lock:
            taken, spare[:] = spare[:n], spare[n:]
            return taken

    def reader() -> None:
        s, rng = Session(port, _bearer(p.viewer), tally), random.Random(1)
        while not stop.wait(0.05):
            match rng.randrange(4):
                case 0:
                    s.send(
                        "read", "GET", f"/api/v1/sub-accounts?limit=50&offset={rng.randrange(200)}"
                    )
                case 1:
                    s.send("read", "GET", f"/api/v1/lines?limit=50&offset={rng.randrange(5_000)}")
                case 2:
                    s.send("read", "GET", f"/api/v1/lines/{rng.choice(p.line_ids)}")
                case _:
                    s.send("read", "GET", "/api/v1/analytics/sub-accounts?limit=50")
        s.close()

    def pages() -> None:
        cookie = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={p.session}"}
        s, rng = Session(port, cookie, tally), random.Random(2)
        paths = ["/sub-accounts/", "/lines/", "/analytics/", "/invoices/"]
        while not stop.wait(0.3):
            s.send("page", "GET", f"{rng.choice(paths)}?page={rng.randrange(1, 20)}")
        s.close()

    def mover() -> None:
        s, rng = Session(port, _bearer(p.admin), tally), random.Random(3)
        while not stop.wait(0.2):
            line = rng.choice(p.line_ids)
            s.send(
                "move",
                "POST",
                f"/api/v1/lines/{line}/move",
                {"sub_account_id": rng.choice(p.stable_ids)},
            )
        s.close()

    def ingestion() -> None:
        s = Session(port, _bearer(p.staff), tally)
        while not stop.is_set():
            began = time.monotonic()
            body = batches.next_body()
            if body is None:
                break
            s.send("ingest", "POST", "/api/v1/message-events", body)
            del body
            stop.wait(max(0.0, INGEST_EVERY - (time.monotonic() - began)))
        s.close()

    def workflows() -> None:
        asker = Session(port, _bearer(p.admin), tally)
        approver = Session(port, _bearer(p.approver), tally)
        merge = True
        while not stop.wait(WORKFLOW_EVERY):
            if merge:
                ids = take_spare(3)
                if len(ids) < 3:
                    continue
                kind, path = "merge", "/api/v1/merge-requests"
                body: dict[str, object] = {"source_ids": ids[:2], "target_id": ids[2]}
            else:
                ids = take_spare(1)
                if not ids:
                    continue
                kind, path = "delete", "/api/v1/deletion-requests"
                body = {
                    "sub_account_id": ids[0],
                    "line_disposition": "move",
                    "move_to_id": p.stable_ids[0],
                }
            merge = not merge
            status, answer = asker.send(kind, "POST", path, body)
            if status == 201:
                request_id = json.loads(answer)["id"]
                approver.send(kind, "POST", f"{path}/{request_id}/approve", {})
        asker.close()
        approver.close()

    def billing() -> None:
        s, rng = Session(port, _bearer(p.admin), tally), random.Random(4)
        base = f"/api/v1/invoices/{p.invoice_id}"
        while not stop.wait(2.0):
            s.send(
                "billing",
                "GET",
                rng.choice([base, f"{base}/csv", f"{base}/pdf", "/api/v1/billing/summary"]),
            )
        s.close()

    return [reader, reader, pages, mover, ingestion, workflows, billing]


@contextmanager
def _task_worker(log_path: Path) -> Iterator[int]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    portal = Path(sys.executable).with_name("portal")
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 (our own console script)
            [str(portal), "worker", "--interval", "0.5"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        try:
            yield process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run(report: Report) -> None:
    scale = bench_scale()
    seconds, warmup = _seconds(), _warmup(_seconds())
    platform = _platform(scale)
    var = Path(settings.VAR_DIR)
    tally = Tally()
    stop = threading.Event()
    connection.close()  # the client threads open their own
    with (
        serve(workers=WEB_WORKERS, log_path=var / "bench-soak-server.log") as server,
        _task_worker(var / "bench-soak-worker.log") as worker_pid,
    ):
        web_pids = sorted(children(server.pid))
        batches = Batches(platform)
        warm_batches = _warm_up_ingestion(server.port, platform, batches, tally, web_pids)
        threads = [
            threading.Thread(target=fn, daemon=True, name=f"soak-{fn.__name__}")
            for fn in _clients(platform, server.port, tally, stop, batches)
        ]
        for thread in threads:
            thread.start()
        time.sleep(warmup)
        processes = {f"web worker {k}": pid for k, pid in enumerate(web_pids, 1)}
        processes["task worker"] = worker_pid
        start = {name: rss_mb(pid)[0] for name, pid in processes.items()}
        before = (Counter(tally.ok), Counter(tally.refused), Counter(tally.errors))
        print(
            f"  soak: {warm_batches} warm-up batches; start RSS {_mb(start)}",
            file=sys.stderr,
            flush=True,
        )
        began = time.monotonic()
        while (left := seconds - (time.monotonic() - began)) > 0:
            time.sleep(min(SAMPLE_EVERY, left))
            now = {name: rss_mb(pid)[0] for name, pid in processes.items()}
            print(
                f"  soak: {time.monotonic() - began:4.0f} s RSS {_mb(now)}",
                file=sys.stderr,
                flush=True,
            )
        end = {name: rss_mb(pid) for name, pid in processes.items()}
        ok, refused, errors = (
            tally.ok - before[0],
            tally.refused - before[1],
            tally.errors - before[2],
        )
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        connection.close()  # the event generator's
    minutes = seconds / 60
    for name in processes:
        rss, peak = end[name]
        growth = (rss - start[name]) / start[name] if start[name] else float("inf")
        report.add(
            Row(
                f"soak: {name} RSS over {minutes:.0f} min of "
                f"mixed load ({start[name]:.0f} MB after {warmup:.0f} s warm-up → {rss:.0f} MB; "
                f"peak {peak:.0f} MB)",
                growth * 100,
                "% growth",
                target=f"< {GROWTH_TARGET:.0%}",
                met=growth < GROWTH_TARGET,
            )
        )
    kinds = sorted(set(ok) | set(refused) | set(errors))
    detail = ", ".join(
        f"{kind} {ok[kind]:,}" + (f" ({refused[kind]} refused)" if refused[kind] else "")
        for kind in kinds
    )
    report.add(
        Row(
            f"soak: requests in {minutes:.0f} min ({detail}); errors "
            f"{sum(errors.values())}{' ' + str(dict(errors)) if errors else ''}",
            sum(ok.values()) + sum(refused.values()) + sum(errors.values()),
            "requests",
            target="0 errors",
            met=not errors,
        )
    )
    for line in tally.first_errors:
        print(f"  soak error: {line}", file=sys.stderr)


def _mb(values: dict[str, float]) -> str:
    return ", ".join(f"{name} {mb:.0f} MB" for name, mb in values.items())
