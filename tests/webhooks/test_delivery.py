"""Delivery by the worker's dispatcher to real receivers on 127.0.0.1 (domain §8.3): signed
per Standard Webhooks, retried with the same webhook-id, no redirects, timeouts, bounded
concurrency, failing endpoints disabled, claims of dead workers taken over."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time

import pytest
from django.core import mail
from django.db import connection
from standardwebhooks import Webhook, WebhookVerificationError

from portal.audit.models import AuditEvent
from portal.core import clock
from portal.core.clock import frozen_at
from portal.jobs.models import WorkerHeartbeat
from portal.webhooks import deliveries as worker_writes
from portal.webhooks.deliveries import deliveries_claim, webhooks_prune
from portal.webhooks.dispatcher import Dispatcher
from portal.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from portal.webhooks.services import (
    webhook_delivery_retry,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_test,
)
from tests.factories import SYSTEM, make_sub_account, make_user
from tests.webhooks.receiver import Answer, Receiver
from tests.webhooks.support import deliver, deliveries, endpoint_for


def admin(tenant):
    return tenant.principal("admin")


def attempts_of(delivery_id: int) -> list[tuple[int | None, str]]:
    return list(
        WebhookAttempt.objects.filter(delivery_id=delivery_id)
        .order_by("pk")
        .values_list("status_code", "error")
    )


def test_a_delivery_is_signed_per_standard_webhooks(tenant, receiver):
    endpoint, secret = endpoint_for(tenant, receiver.url("/in?source=portal"))
    sa = make_sub_account(tenant.partner, "Signed – Sales")
    deliver()

    (got,) = receiver.wait_for(1)
    event = WebhookEvent.objects.get()
    assert got.path == "/in?source=portal"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert got.headers["webhook-id"] == event.msg_id
    assert got.body == event.body.encode()  # the stored body, byte for byte
    assert got.headers["webhook-signature"].startswith("v1,")
    payload = got.verify(secret)  # the specification's own package verifies it
    assert set(payload) == {"type", "timestamp", "data"}
    assert payload["data"]["sub_account_id"] == sa.pk
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 44).verify(got.body, got.headers)
    (delivery,) = deliveries(endpoint.pk)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
    assert delivery.next_attempt_at is None
    assert delivery.claimed_by == ""
    (attempt,) = WebhookAttempt.objects.all()
    assert attempt.status_code == 200
    assert attempt.response == "ok"
    assert attempt.duration_ms >= 0


def test_a_name_is_connected_to_at_its_checked_address_and_kept_in_host(tenant, receiver):
    endpoint, secret = endpoint_for(tenant, f"http://localhost:{receiver.port}/hook")
    webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
    deliver()
    (got,) = receiver.wait_for(1)
    assert got.headers["host"] == f"localhost:{receiver.port}"
    assert got.verify(secret)["type"] == "ping"


def test_the_address_is_resolved_once_per_attempt_and_that_answer_is_used(
    tenant, receiver, monkeypatch
):
    """DNS rebinding: the name resolves to a checked address, then (asked again) to an
    internal one. The attempt connects where the check looked, never asking twice."""
    real = socket.getaddrinfo
    answers: list[str] = []

    def rebinding(host, port, *args, **kwargs):
        if host != "hooks.example":
            return real(host, port, *args, **kwargs)
        address = "127.0.0.1" if not answers else "10.0.0.1"
        answers.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    endpoint, _secret = endpoint_for(tenant, f"http://hooks.example:{receiver.port}/hook")
    answers.clear()
    webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
    deliver()
    (got,) = receiver.wait_for(1)
    assert answers == ["127.0.0.1"]
    assert got.headers["host"] == f"hooks.example:{receiver.port}"


def test_an_address_turned_private_is_refused_at_delivery(tenant, receiver, settings):
    endpoint, _secret = endpoint_for(tenant, receiver.url())
    settings.WEBHOOK_ALLOW_PRIVATE = False
    webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
    deliver()
    assert receiver.count() == 0
    (delivery,) = deliveries(endpoint.pk)
    assert delivery.status == "retrying"
    assert delivery.last_status_code is None
    assert "loopback" in delivery.last_error


def test_failures_are_retried_with_the_same_webhook_id_until_success(tenant, settings):
    settings.WEBHOOK_RETRY_DELAYS = [0, 0, 0]
    answers = [Answer(500, b"boom"), Answer(503), Answer(200)]
    with Receiver(lambda n, r: answers[n]) as receiver:
        endpoint, secret = endpoint_for(tenant, receiver.url())
        webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
        deliver()
        got = receiver.wait_for(3)
    assert len({r.headers["webhook-id"] for r in got}) == 1
    for request in got:
        request.verify(secret)
    (delivery,) = deliveries(endpoint.pk)
    assert (delivery.status, delivery.attempts) == ("succeeded", 3)
    assert attempts_of(delivery.pk) == [(500, ""), (503, ""), (200, "")]
    assert WebhookAttempt.objects.filter(delivery=delivery).first().response == "boom"


def test_after_the_last_delay_a_delivery_is_failed(tenant, settings):
    settings.WEBHOOK_RETRY_DELAYS = [0, 0]
    with Receiver(lambda n, r: Answer(500)) as receiver:
        endpoint, _secret = endpoint_for(tenant, receiver.url())
        webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
        deliver()
        assert receiver.count() == 3
    (delivery,) = deliveries(endpoint.pk)
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 3, None)


def test_retries_wait_growing_delays(tenant):
    with Receiver(lambda n, r: Answer(500)) as receiver:
        endpoint, _secret = endpoint_for(tenant, receiver.url())
        webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
        before = clock.now()
        deliver()
        assert receiver.count() == 1  # the next attempt is 5 s away: not due yet
    (delivery,) = deliveries(endpoint.pk)
    assert delivery.status == "retrying"
    wait = delivery.next_attempt_at - before
    assert dt.timedelta(seconds=5) <= wait < dt.timedelta(seconds=8)
    schedule = [worker_writes.next_after_failure(n, before)[1] - before for n in range(1, 8)]
    assert schedule == [dt.timedelta(seconds=s) for s in (5, 300, 1800, 7200, 18000, 36000, 36000)]
    assert worker_writes.next_after_failure(8, before) == ("failed", None)


def test_redirects_are_not_followed(tenant, settings):
    settings.WEBHOOK_RETRY_DELAYS = [60]
    with Receiver(lambda n, r: Answer(302, b"", headers={"Location": "/elsewhere"})) as receiver:
        endpoint, _secret = endpoint_for(tenant, receiver.url())
        webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
        deliver()
        assert [r.path for r in receiver.received] == ["/hook"]
    (delivery,) = deliveries(endpoint.pk)
    assert (delivery.status, delivery.last_status_code) == ("retrying", 302)


def test_an_endpoint_that_does_not_answer_in_time_fails_the_attempt(tenant, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    with Receiver(lambda n, r: Answer(delay=3)) as receiver:
        endpoint, _secret = endpoint_for(tenant, receiver.url())
        webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
        started = time.monotonic()
        deliver()
        assert time.monotonic() - started < 2.5
    (delivery,) = deliveries(endpoint.pk)
    assert delivery.status == "retrying"
    assert delivery.last_status_code is None
    assert delivery.last_error == "No answer within 0.5 s."


def test_a_refused_connection_is_a_failed_attempt(tenant):
    with Receiver() as closed:
        url = closed.url()
    endpoint, _secret = endpoint_for(tenant, url)
    webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
    deliver()
    (delivery,) = deliveries(endpoint.pk)
    assert delivery.status == "retrying"
    assert delivery.last_error.startswith("Could not connect")


@pytest.mark.django_db(transaction=True)  # the dispatcher's thread reads committed rows
def test_a_slow_endpoint_never_delays_the_others(tenant):
    """Two endpoints receive the same 12 events; one stalls every request. The other
    gets all twelve while the slow one holds only its share of the slots."""
    release = threading.Event()
    slow_seen = []

    def stall(n, r):
        slow_seen.append(n)
        release.wait(30)
        return Answer()

    with Receiver(stall) as slow, Receiver() as fast:
        endpoint_for(tenant, slow.url())
        endpoint_for(tenant, fast.url())
        for i in range(12):
            make_sub_account(tenant.partner, f"Client {i} – Sales")
        stop = threading.Event()
        dispatcher = Dispatcher(worker_id="tests", concurrency=4, per_endpoint=2)

        def run() -> None:
            try:
                dispatcher.run(stop)
            finally:
                connection.close()  # the thread's own connection

        runner = threading.Thread(target=run)
        runner.start()
        try:
            started = time.monotonic()
            fast.wait_for(12, timeout=10)
            took = time.monotonic() - started
            assert len(slow_seen) == 2  # its share, no more
        finally:
            release.set()
            stop.set()
            runner.join(timeout=30)
        assert took < 5


def test_five_days_of_failures_disable_the_endpoint_and_email_its_admins(
    tenant, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_RETRY_DELAYS = [0]
    make_user(tenant.partner, "boss@acme.example", "admin")
    make_user(tenant.partner, "clerk@acme.example", "viewer")
    with Receiver(lambda n, r: Answer(500)) as receiver:
        endpoint, _secret = endpoint_for(tenant, receiver.url())
        webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
        deliver()
        endpoint.refresh_from_db()
        assert endpoint.failing_since is not None and endpoint.enabled  # failing, not 5 days
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            failing_since=clock.now() - dt.timedelta(days=5, minutes=1)
        )
        webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
        with django_capture_on_commit_callbacks(execute=True):
            deliver()
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert "5 days" in endpoint.disabled_reason
    event = AuditEvent.objects.get(action="webhook_endpoint.disable")
    assert event.actor_label == "worker:webhooks"
    (message,) = mail.outbox
    assert message.to == ["boss@acme.example"]
    assert receiver.url() in message.subject
    # Disabled: new events are not written for it, and nothing more is sent.
    make_sub_account(tenant.partner, "After – Sales")
    assert not WebhookDelivery.objects.filter(event_type="sub_account.created").exists()


def test_a_success_ends_the_failing_streak(tenant, settings):
    settings.WEBHOOK_RETRY_DELAYS = [0]
    answers = [Answer(500), Answer(200)]
    with Receiver(lambda n, r: answers[n]) as receiver:
        endpoint, _secret = endpoint_for(tenant, receiver.url())
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            failing_since=clock.now() - dt.timedelta(days=1)
        )
        webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
        deliver()
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None and endpoint.enabled


def test_retry_sends_a_failed_delivery_again_with_its_webhook_id(tenant, settings):
    settings.WEBHOOK_RETRY_DELAYS = []
    answers = [Answer(500), Answer(200)]
    with Receiver(lambda n, r: answers[n]) as receiver:
        endpoint, _secret = endpoint_for(tenant, receiver.url())
        webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
        deliver()
        (delivery,) = deliveries(endpoint.pk)
        assert delivery.status == "failed"
        retried = webhook_delivery_retry(principal=admin(tenant), delivery_id=delivery.pk)
        assert retried.status == "retrying"
        deliver()
        first, second = receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)


def test_after_a_rotation_both_secrets_sign_for_24_hours(tenant, receiver):
    endpoint, old = endpoint_for(tenant, receiver.url())
    new = webhook_endpoint_rotate_secret(principal=admin(tenant), endpoint_id=endpoint.pk).secret
    webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
    deliver()
    (got,) = receiver.wait_for(1)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    got.verify(old)
    got.verify(new)

    with frozen_at(clock.now() + dt.timedelta(hours=24, seconds=1)):
        webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
        deliver()
    later = receiver.wait_for(2)[1]
    assert len(later.headers["webhook-signature"].split(" ")) == 1
    signed = later.headers["webhook-signature"]
    expected = Webhook(new).sign(
        later.headers["webhook-id"],
        dt.datetime.fromtimestamp(int(later.headers["webhook-timestamp"]), dt.UTC),
        later.body,
    )
    assert signed == expected


# --- Claims ------------------------------------------------------------------------------


def test_a_claim_of_a_live_worker_is_left_alone_and_a_dead_ones_is_taken_over(tenant):
    endpoint, _secret = endpoint_for(tenant, "http://127.0.0.1:9/hook")
    webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
    (delivery,) = deliveries(endpoint.pk)
    now = clock.now()
    WorkerHeartbeat.objects.create(worker_id="alive", started_at=now, last_seen=now)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(claimed_by="alive", claimed_at=now)
    assert deliveries_claim(worker_id="other", limit=10) == []
    # Its worker stops beating: the claim is void and the delivery is taken over.
    WorkerHeartbeat.objects.filter(worker_id="alive").update(
        last_seen=now - dt.timedelta(minutes=10)
    )
    (taken,) = deliveries_claim(worker_id="other", limit=10)
    assert taken.delivery_id == delivery.pk
    assert WebhookDelivery.objects.get(pk=delivery.pk).claimed_by == "other"
    # A worker never claims what it holds: those are its attempts under way.
    assert deliveries_claim(worker_id="other", limit=10) == []


def test_claims_respect_the_per_endpoint_share(tenant):
    endpoint, _secret = endpoint_for(tenant, "http://127.0.0.1:9/a")
    other, _secret = endpoint_for(tenant, "http://127.0.0.1:9/b")
    for i in range(5):
        make_sub_account(tenant.partner, f"S{i}")
    claimed = deliveries_claim(worker_id="w", limit=8, per_endpoint=2)
    by_endpoint = sorted(o.endpoint_id for o in claimed)
    assert by_endpoint == sorted([endpoint.pk] * 2 + [other.pk] * 2)
    more = deliveries_claim(
        worker_id="w", limit=8, per_endpoint=2, in_flight={endpoint.pk: 2, other.pk: 1}
    )
    assert [o.endpoint_id for o in more] == [other.pk]


def test_a_disabled_endpoints_deliveries_wait(tenant):
    endpoint, _secret = endpoint_for(tenant, "http://127.0.0.1:9/hook")
    make_sub_account(tenant.partner, "Waiting – Sales")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
    assert deliveries_claim(worker_id="w", limit=10) == []


# --- Retention ---------------------------------------------------------------------------


def test_the_log_is_kept_30_days(tenant, receiver):
    endpoint, _secret = endpoint_for(tenant, receiver.url())
    with frozen_at(clock.now() - dt.timedelta(days=31)):
        webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
    webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
    deliver()
    assert WebhookAttempt.objects.count() == 2
    assert webhooks_prune() == 1
    (kept,) = WebhookEvent.objects.all()
    assert json.loads(kept.body)["type"] == "ping"
    assert WebhookDelivery.objects.count() == 1
    assert WebhookAttempt.objects.count() == 1
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


def test_a_test_event_goes_to_that_endpoint_only(tenant, receiver):
    endpoint, _secret = endpoint_for(tenant, receiver.url(), events=["line.moved"])
    endpoint_for(tenant, receiver.url("/other"), events=["*"])
    delivery = webhook_endpoint_test(
        principal=SYSTEM.acting_for(tenant.partner.pk), endpoint_id=endpoint.pk
    )
    assert delivery.event_type == "ping"
    assert WebhookDelivery.objects.count() == 1
    deliver()
    (got,) = receiver.wait_for(1)
    assert got.path == "/hook"
    assert json.loads(got.body)["data"]["endpoint_id"] == endpoint.pk


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_claim_skips_the_rows_another_worker_is_claiming_without_waiting(tenant):
    from django.db import transaction

    endpoint, _secret = endpoint_for(tenant, "http://127.0.0.1:9/hook")
    for i in range(4):
        make_sub_account(tenant.partner, f"Claimed {i}")
    ids = [d.pk for d in deliveries(endpoint.pk)]
    holding, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        try:
            with transaction.atomic():
                list(
                    WebhookDelivery.objects.select_for_update(no_key=True)
                    .filter(pk__in=ids[:2])
                    .order_by("pk")
                )
                holding.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert holding.wait(30)
        started = time.monotonic()
        claimed = deliveries_claim(worker_id="me", limit=10, per_endpoint=10)
        assert time.monotonic() - started < 2
    finally:
        release.set()
        thread.join(30)
    assert sorted(o.delivery_id for o in claimed) == ids[2:]


def test_a_restarted_dispatcher_sends_what_its_worker_had_claimed(tenant, receiver):
    """A dispatcher thread that died left claims under its worker's live id: the next
    one hands them back before claiming, so they go out at once."""
    endpoint, _secret = endpoint_for(tenant, receiver.url())
    webhook_endpoint_test(principal=admin(tenant), endpoint_id=endpoint.pk)
    assert len(deliveries_claim(worker_id="w1", limit=10)) == 1  # never sent
    assert deliveries_claim(worker_id="w1", limit=10) == []
    assert Dispatcher(worker_id="w1").drain() == 1
    receiver.wait_for(1)
