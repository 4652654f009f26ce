"""The webhooks API (domain §8.3): endpoints, secrets shown once, tests, the delivery log."""

from __future__ import annotations

import pytest

from portal.audit.models import AuditEvent
from portal.webhooks.models import WebhookDelivery, WebhookEndpoint
from portal.webhooks.services import MAX_ENDPOINTS
from tests.conftest import Api
from tests.factories import PUBLIC_WEBHOOK_URL, db_snapshot, make_sub_account
from tests.webhooks.receiver import Answer, Receiver
from tests.webhooks.support import deliver


def created(api: Api, **body) -> dict:
    response = api.post("/webhook-endpoints", {"url": PUBLIC_WEBHOOK_URL, "events": ["*"], **body})
    assert response.status_code == 201, response.content
    return response.json()


def test_an_endpoint_is_registered_with_a_secret_shown_once(api):
    made = created(api, events=["line.moved", "sub_account.created"], description="CRM")
    assert made["secret"].startswith("whsec_")
    assert made["events"] == ["sub_account.created", "line.moved"]  # the catalogue's order
    assert made["enabled"] is True
    assert made["description"] == "CRM"
    shown = api.get(f"/webhook-endpoints/{made['id']}").json()
    assert "secret" not in shown
    listed = api.get("/webhook-endpoints").json()
    assert listed["count"] == 1
    assert "secret" not in listed["items"][0]
    event = AuditEvent.objects.get(action="webhook_endpoint.create")
    assert made["secret"] not in str(event.data)


def test_patch_changes_what_is_given_and_enabling_clears_the_streak(api):
    made = created(api)
    WebhookEndpoint.objects.filter(pk=made["id"]).update(
        enabled=False, disabled_reason="Failing for 5 days.", failing_since="2026-01-01T00:00Z"
    )
    changed = api.patch(
        f"/webhook-endpoints/{made['id']}", {"events": ["invoice.issued"], "enabled": True}
    )
    assert changed.status_code == 200, changed.content
    body = changed.json()
    assert body["events"] == ["invoice.issued"]
    assert (body["enabled"], body["disabled_reason"], body["failing_since"]) == (True, "", None)
    assert body["url"] == PUBLIC_WEBHOOK_URL
    assert api.patch(f"/webhook-endpoints/{made['id']}", {"url": None}).status_code == 422


def test_delete_removes_the_endpoint_and_its_log(api):
    made = created(api)
    api.post(f"/webhook-endpoints/{made['id']}/test")
    assert api.call("DELETE", f"/webhook-endpoints/{made['id']}").status_code == 204
    assert api.get(f"/webhook-endpoints/{made['id']}").status_code == 404
    assert not WebhookDelivery.objects.exists()
    assert AuditEvent.objects.filter(action="webhook_endpoint.delete").count() == 1


def test_rotate_secret_gives_a_new_one_and_keeps_the_old_for_24_hours(api):
    made = created(api)
    rotated = api.post(f"/webhook-endpoints/{made['id']}/rotate-secret")
    assert rotated.status_code == 200
    body = rotated.json()
    assert body["secret"].startswith("whsec_") and body["secret"] != made["secret"]
    assert body["previous_secret_until"]
    assert api.get(f"/webhook-endpoints/{made['id']}").json()["previous_secret_until"]


def test_the_delivery_log_filters_and_retries(api, tenant, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_RETRY_DELAYS = []
    pinged: list[int] = []

    def answer(n, received):  # the first ping fails; everything else succeeds
        if b'"type":"ping"' in received.body:
            pinged.append(n)
            if len(pinged) == 1:
                return Answer(500, b"nope")
        return Answer(200, b"nope")

    with Receiver(answer) as receiver:
        made = created(api, url=receiver.url())
        ping = api.post(f"/webhook-endpoints/{made['id']}/test")
        assert ping.status_code == 202
        assert ping.json()["event_type"] == "ping"
        assert ping.json()["status"] == "pending"
        make_sub_account(tenant.partner, "Logged – Sales")
        deliver()
        log = api.get(f"/webhook-endpoints/{made['id']}/deliveries").json()
        assert log["count"] == 2
        newest, oldest = log["items"]
        assert (oldest["event_type"], oldest["status"], oldest["last_status_code"]) == (
            "ping",
            "failed",
            500,
        )
        assert newest["event_type"] == "sub_account.created"
        assert oldest["event_id"].startswith("msg_")
        failed = api.get(f"/webhook-endpoints/{made['id']}/deliveries", status="failed").json()
        assert [d["id"] for d in failed["items"]] == [oldest["id"]]
        pings = api.get(f"/webhook-endpoints/{made['id']}/deliveries", event_type="ping").json()
        assert [d["id"] for d in pings["items"]] == [oldest["id"]]
        assert (
            api.get(f"/webhook-endpoints/{made['id']}/deliveries", status="lost").status_code == 400
        )
        assert (
            api.get(f"/webhook-endpoints/{made['id']}/deliveries", event_type="x.y").status_code
            == 400
        )

        detail = api.get(f"/webhook-deliveries/{oldest['id']}").json()
        assert detail["payload"]["type"] == "ping"
        assert detail["payload"]["data"]["endpoint_id"] == made["id"]
        (attempt,) = detail["history"]
        assert attempt["status_code"] == 500
        assert attempt["response"] == "nope"
        assert attempt["duration_ms"] >= 0

        retried = api.post(f"/webhook-deliveries/{oldest['id']}/retry")
        assert retried.status_code == 200
        assert retried.json()["status"] == "retrying"
        deliver()
        ids = {r.headers["webhook-id"] for r in receiver.received if "ping" in r.body.decode()}
    assert ids == {oldest["event_id"]}
    again = api.get(f"/webhook-deliveries/{oldest['id']}").json()
    assert again["status"] == "succeeded"
    assert [a["status_code"] for a in again["history"]] == [500, 200]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://127.0.0.1/hook"}, "loopback"),
        ({"url": "https://10.1.2.3/hook"}, "private"),
        ({"url": "https://[::ffff:10.0.0.1]/hook"}, "private"),
        ({"url": "https://169.254.169.254/latest/meta-data"}, "link-local"),
        ({"url": "https://localhost/hook"}, "loopback"),
        ({"url": "ftp://93.184.215.14/hook"}, "https://"),
        ({"url": "https://user:pw@93.184.215.14/hook"}, "user name"),
        ({"url": "https:///nohost"}, "host"),
        ({"url": "https://no-such-host.invalid/hook"}, "resolved"),
        ({"url": "not a url"}, "spaces"),
        ({"events": []}, "at least one"),
        ({"events": ["line.exploded"]}, "Unknown event"),
    ],
)
def test_refused_endpoints_answer_422_and_change_nothing(api, settings, body, field):
    settings.WEBHOOK_ALLOW_PRIVATE = False  # as in production
    before = db_snapshot()
    response = api.post("/webhook-endpoints", {"url": PUBLIC_WEBHOOK_URL, "events": ["*"], **body})
    assert response.status_code == 422, response.content
    assert field in str(response.json()["detail"])
    assert db_snapshot() == before


def test_private_addresses_are_allowed_when_the_setting_says_so(api, settings):
    assert created(api, url="http://127.0.0.1:8080/hook")["url"] == "http://127.0.0.1:8080/hook"


def test_production_requires_https(api, settings):
    settings.PRODUCTION = True
    response = api.post("/webhook-endpoints", {"url": "http://93.184.215.14/hook", "events": ["*"]})
    assert response.status_code == 422
    assert created(api)["url"] == PUBLIC_WEBHOOK_URL


def test_a_partner_has_at_most_20_endpoints(api):
    for _ in range(MAX_ENDPOINTS):
        created(api)
    response = api.post("/webhook-endpoints", {"url": PUBLIC_WEBHOOK_URL, "events": ["*"]})
    assert response.status_code == 409


def test_a_test_event_to_a_disabled_endpoint_is_refused(api):
    made = created(api, enabled=False)
    assert api.post(f"/webhook-endpoints/{made['id']}/test").status_code == 409


@pytest.mark.parametrize("role", ["manager", "billing", "viewer"])
def test_only_admins_see_or_change_webhooks(tenant, role):
    admin = Api(tenant.keys["admin"])
    made = created(admin)
    other = Api(tenant.keys[role])
    before = db_snapshot()
    assert other.get("/webhook-endpoints").status_code == 403
    assert other.get(f"/webhook-endpoints/{made['id']}").status_code == 403
    assert other.post(f"/webhook-endpoints/{made['id']}/rotate-secret").status_code == 403
    assert db_snapshot() == before
