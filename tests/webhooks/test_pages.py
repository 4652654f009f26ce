"""Settings → Webhooks (domain §8.3): add an endpoint (URL, event checkboxes), the secret
shown once, the delivery log with each attempt and the payload, Retry, Send test event."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from portal.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.factories import make_sub_account, make_user
from tests.webhooks.receiver import Answer, Receiver
from tests.webhooks.support import deliver, endpoint_for


def logged_in(tenant, role: str = "admin") -> Client:
    client = Client()
    client.force_login(make_user(tenant.partner, f"{role}@pages.example", role))
    return client


def test_add_an_endpoint_and_see_its_secret_once(tenant):
    client = logged_in(tenant)
    page = client.get("/settings/webhooks/")
    assert page.status_code == 200
    assert "Add endpoint" in page.content.decode()
    assert "No webhook endpoints yet" in page.content.decode()
    form = client.get("/settings/webhooks/new/").content.decode()
    assert 'name="events" value="line.moved"' in form
    assert "All events" in form

    made = client.post(
        "/settings/webhooks/new/",
        {"url": "http://127.0.0.1:9/in", "events": ["line.moved", "invoice.issued"]},
    )
    assert made.status_code == 201
    assert made["Cache-Control"] == "no-store"
    secret = re.search(r"whsec_[A-Za-z0-9+/=]+", made.content.decode()).group(0)
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret == secret
    assert endpoint.events == ["line.moved", "invoice.issued"]
    listed = client.get("/settings/webhooks/").content.decode()
    assert "http://127.0.0.1:9/in" in listed
    assert secret not in listed
    assert secret not in client.get(f"/settings/webhooks/{endpoint.pk}/").content.decode()


def test_a_refused_url_or_no_events_shows_the_form_again(tenant, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    client = logged_in(tenant)
    refused = client.post("/settings/webhooks/new/", {"url": "https://10.0.0.8/in"})
    assert refused.status_code == 422
    text = refused.content.decode()
    assert "10.0.0.8 is a private or internal address" in text
    assert "Choose at least one event type" in text
    assert not WebhookEndpoint.objects.exists()


def test_all_events(tenant):
    client = logged_in(tenant)
    client.post("/settings/webhooks/new/", {"url": "http://127.0.0.1:9/in", "all_events": "on"})
    assert WebhookEndpoint.objects.get().events == ["*"]


def test_the_log_shows_attempts_and_payload_and_retry_sends_again(tenant, settings):
    settings.WEBHOOK_RETRY_DELAYS = []
    client = logged_in(tenant)
    with Receiver(lambda n, r: Answer(500 if n == 0 else 204, b"")) as receiver:
        endpoint, _secret = endpoint_for(tenant, receiver.url())
        sent = client.post(f"/settings/webhooks/{endpoint.pk}/test/")
        assert sent.status_code == 302
        deliver()
        detail = client.get(f"/settings/webhooks/{endpoint.pk}/").content.decode()
        assert "ping" in detail and "Failed" in detail and "500" in detail
        delivery = WebhookDelivery.objects.get()
        page = client.get(f"/settings/webhooks/deliveries/{delivery.pk}/").content.decode()
        assert delivery.event.msg_id in page
        assert "&quot;type&quot;: &quot;ping&quot;" in page  # the payload, pretty-printed
        assert "500" in page and " ms" in page
        retried = client.post(f"/settings/webhooks/deliveries/{delivery.pk}/retry/")
        assert retried.status_code == 302
        deliver()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)


def test_the_log_filters_by_status_and_event_type(tenant):
    client = logged_in(tenant)
    endpoint, _secret = endpoint_for(tenant, "http://127.0.0.1:9/in")
    make_sub_account(tenant.partner, "Filtered – Sales")
    client.post(f"/settings/webhooks/{endpoint.pk}/test/")
    url = f"/settings/webhooks/{endpoint.pk}/"
    only_pings = client.get(url, {"event_type": "ping"}).content.decode()
    assert ">ping</a>" in only_pings and ">sub_account.created</a>" not in only_pings
    partial = client.get(
        url, {"status": "succeeded"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="results"
    ).content.decode()
    assert "No deliveries match these filters" in partial
    assert "<h2" not in partial  # only the results


def test_edit_rotate_and_delete(tenant):
    client = logged_in(tenant)
    endpoint, old = endpoint_for(tenant, "http://127.0.0.1:9/in")
    edited = client.post(
        f"/settings/webhooks/{endpoint.pk}/edit/",
        {"url": "http://127.0.0.1:9/other", "all_events": "on", "description": "CRM"},
    )
    assert edited.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.description, endpoint.enabled) == (
        "http://127.0.0.1:9/other",
        "CRM",
        False,  # Enabled left unticked
    )
    rotated = client.post(f"/settings/webhooks/{endpoint.pk}/rotate/")
    assert rotated.status_code == 200
    endpoint.refresh_from_db()
    assert endpoint.secret in rotated.content.decode() and endpoint.previous_secret == old
    deleted = client.post(f"/settings/webhooks/{endpoint.pk}/delete/")
    assert deleted.status_code == 302
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("role", ["manager", "billing", "viewer"])
def test_other_roles_are_refused(tenant, role):
    endpoint, _secret = endpoint_for(tenant, "http://127.0.0.1:9/in")
    client = logged_in(tenant, role)
    assert client.get("/settings/webhooks/").status_code == 403
    assert client.get(f"/settings/webhooks/{endpoint.pk}/").status_code == 403
    assert client.post(f"/settings/webhooks/{endpoint.pk}/test/").status_code == 403
    assert not WebhookDelivery.objects.exists()


def test_the_settings_tabs_name_webhooks(tenant):
    page = logged_in(tenant).get("/settings/users/").content.decode()
    assert 'href="/settings/webhooks/"' in page
