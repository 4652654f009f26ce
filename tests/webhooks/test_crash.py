"""Crash safety (issue 21 point 6): a real ``portal worker`` is SIGKILLed while an endpoint
holds its delivery open; after a restart the event is delivered, once more, with the
same ``webhook-id``."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest

from portal.webhooks.models import WebhookAttempt, WebhookDelivery
from tests.factories import make_sub_account, make_tenant
from tests.portal_process import PORTAL, portal_env
from tests.webhooks.receiver import Answer, Receiver
from tests.webhooks.support import endpoint_for

pytestmark = pytest.mark.django_db(transaction=True)

STALE_SECONDS = "2"


def _worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PORTAL, "worker", "--interval", "0.1", *args],
        env=portal_env(PORTAL_WORKER_STALE_AFTER=STALE_SECONDS, PORTAL_WEBHOOK_ALLOW_PRIVATE="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_worker_killed_mid_delivery_delivers_after_restart_with_the_same_webhook_id():
    first_request = threading.Event()

    def stall_the_first(n: int, received) -> Answer:
        if n == 0:
            first_request.set()
            return Answer(hang=True)  # the worker dies while waiting for this answer
        return Answer(200)

    with Receiver(stall_the_first) as receiver:
        tenant = make_tenant("Crashing Partner")
        endpoint, secret = endpoint_for(tenant, receiver.url())
        sa = make_sub_account(tenant.partner, "Delivered – Sales")

        first = _worker()
        try:
            assert first_request.wait(60), "the worker never sent the delivery"
            delivery = WebhookDelivery.objects.get(endpoint=endpoint)
            assert delivery.claimed_by  # under way: claimed, no attempt recorded
            assert delivery.attempts == 0
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()

        time.sleep(float(STALE_SECONDS) + 1)  # the dead worker's heartbeat goes stale
        second = _worker("--once")
        output, _ = second.communicate(timeout=120)
        assert second.returncode == 0, output
        assert "Traceback" not in output

        before, after = receiver.wait_for(2)
    assert after.headers["webhook-id"] == before.headers["webhook-id"]
    assert after.body == before.body
    payload = after.verify(secret)
    assert payload["data"]["sub_account_id"] == sa.pk
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.claimed_by) == ("succeeded", 1, "")
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1


def test_a_running_worker_delivers_beside_its_queue():
    with Receiver() as receiver:
        tenant = make_tenant("Listening Partner")
        endpoint, secret = endpoint_for(tenant, receiver.url())
        worker = _worker()
        try:
            make_sub_account(tenant.partner, "Live – Sales")
            (got,) = receiver.wait_for(1, timeout=60)
            assert got.verify(secret)["type"] == "sub_account.created"
            deadline = time.monotonic() + 30
            while WebhookDelivery.objects.get(endpoint=endpoint).status != "succeeded":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0, output
