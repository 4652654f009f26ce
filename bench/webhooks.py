"""Webhooks suite: 10,000 events delivered to a local receiver, beside a bare loop.

A partner with one endpoint on a local receiver (:mod:`bench.webhook_receiver`, a
process of its own answering 204 at once over keep-alive connections) gets
``10,000 × BENCH_SCALE`` events written into the outbox (``outbox.events_write``, in
transactions of 1,000, as the audit log's subscriber writes them).

Measured: the worker's dispatcher delivering all of them (``Dispatcher.drain``, the
worker's own code with its default settings: claims from the database with ``SKIP
LOCKED``, resolves and checks the address, signs per Standard Webhooks, sends with
``WEBHOOK_CONCURRENCY`` threads of which at most ``WEBHOOK_ENDPOINT_CONCURRENCY`` for
this one endpoint, records every attempt). Baseline in the same run: a bare loop
posting the same bodies with the same headers to the same receiver over one keep-alive
connection (urllib3), no database, no checks. Both as deliveries per second; the ratio
says what the outbox's bookkeeping and the safety checks cost (or what the
concurrency gains).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import urllib3
from django.conf import settings
from django.db import transaction

from bench.data import BENCH
from bench.run import Report, Row, bench_scale, timed
from portal.core import clock
from portal.partners.services import partner_create
from portal.webhooks.catalogue import Event
from portal.webhooks.dispatcher import Dispatcher
from portal.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEvent
from portal.webhooks.outbox import events_write
from portal.webhooks.services import webhook_endpoint_create
from portal.webhooks.signing import headers_for

EVENTS = 10_000
WRITE_BATCH = 1000


def _receiver() -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.webhook_receiver"], stdout=subprocess.PIPE, text=True
    )
    port = int(process.stdout.readline())  # type: ignore[union-attr]
    return process, port


def _count(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=10) as answer:
        return json.loads(answer.read())


def run(report: Report) -> None:
    wanted = max(100, round(EVENTS * bench_scale()))
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on 127.0.0.1
    process, port = _receiver()
    try:
        partner = partner_create(principal=BENCH, name="Webhook Bench Partner")
        issued = webhook_endpoint_create(
            principal=BENCH.acting_for(partner.pk),
            url=f"http://127.0.0.1:{port}/hooks",
            events=["*"],
        )
        endpoint = issued.endpoint
        with timed() as writing:
            for start in range(0, wanted, WRITE_BATCH):
                with transaction.atomic():
                    events_write(
                        partner_id=partner.pk,
                        at=clock.now(),
                        events=[
                            Event(
                                "sub_account.updated",
                                {
                                    "sub_account_id": i,
                                    "before": {"contact_name": f"Ann {i}"},
                                    "after": {"contact_name": f"Bob {i}"},
                                },
                            )
                            for i in range(start, min(wanted, start + WRITE_BATCH))
                        ],
                        endpoint_ids=[endpoint.pk],
                    )
        print(f"  outbox: {wanted:,} events in {writing():.1f} s", flush=True)

        dispatcher = Dispatcher(worker_id="bench")
        with timed() as sending:
            sent = dispatcher.drain()
        dispatcher.sender.close()
        elapsed = sending()
        delivered = WebhookDelivery.objects.filter(
            endpoint=endpoint, status=DeliveryStatus.SUCCEEDED
        ).count()
        assert sent == delivered == wanted, (sent, delivered, wanted)
        got = _count(port)
        assert got == {"posts": wanted, "ids": wanted}, got

        # The baseline: the same requests, posted one after another on one connection.
        bodies = list(
            WebhookEvent.objects.filter(partner_id=partner.pk)
            .order_by("pk")
            .values_list("msg_id", "body")
        )
        pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, retries=False)
        secrets = [issued.secret]
        with timed() as bare:
            for msg_id, body in bodies:
                headers = {
                    **headers_for(secrets, msg_id, clock.now(), body),
                    "Content-Type": "application/json",
                }
                answer = pool.urlopen("POST", "/hooks", body=body.encode(), headers=headers)
                assert answer.status == 204
        baseline = bare()
        pool.close()
    finally:
        process.terminate()
        process.wait(timeout=10)

    report.add(
        Row(
            f"webhooks: {wanted:,} deliveries to one local endpoint (worker's dispatcher, "
            f"{settings.WEBHOOK_CONCURRENCY} threads, {settings.WEBHOOK_ENDPOINT_CONCURRENCY} "
            "per endpoint)",
            wanted / elapsed,
            "deliveries/s",
            baseline=wanted / baseline,
            baseline_label="bare loop posting the same requests, one keep-alive connection",
        )
    )
    report.add(Row("webhooks: writing the outbox", wanted / writing(), "events/s"))
