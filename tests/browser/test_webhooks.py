"""Settings → Webhooks in a real browser: an admin adds an endpoint (URL, event checkboxes),
copies the secret shown once, sends a test event, reads the delivery's attempt and payload,
and retries it; the log fits a phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from portal.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.browser.conftest import PASSWORD
from tests.factories import make_partner, make_user
from tests.webhooks.receiver import Answer, Receiver
from tests.webhooks.support import deliver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _receivers_on_this_machine(settings) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_RETRY_DELAYS = [3600]


def test_add_an_endpoint_send_a_test_event_and_retry_it(live_server, page, log_in, screenshot):
    partner = make_partner("Acme Resellers")
    make_user(partner, "ann@acme.example", "admin", password=PASSWORD)
    answers = iter([Answer(500, b"not yet"), Answer(200, b"thanks")])
    with Receiver(lambda n, r: next(answers)) as receiver:
        log_in(page, "ann@acme.example")
        page.get_by_role("link", name="Settings").first.click()
        page.get_by_role("navigation", name="Settings").get_by_role("link", name="Webhooks").click()
        expect(page.get_by_text("No webhook endpoints yet.")).to_be_visible()
        page.get_by_role("link", name="Add endpoint").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("URL").fill(receiver.url())
        dialog.get_by_label("Description").fill("Our CRM")
        dialog.get_by_role("checkbox", name=re.compile(r"^Lines moved")).check()
        dialog.get_by_role("checkbox", name=re.compile(r"^Invoice issued")).check()
        dialog.get_by_role("button", name="Add endpoint").click()

        secret = dialog.get_by_label(re.compile("^Signing secret of"))
        expect(secret).to_have_value(re.compile(r"^whsec_"))
        endpoint = WebhookEndpoint.objects.get()
        assert secret.input_value() == endpoint.secret
        assert endpoint.events == ["line.moved", "invoice.issued"]
        dialog.get_by_role("link", name="Done").click()

        page.get_by_role("button", name="Send test event").click()
        expect(page.get_by_text("Test event queued")).to_be_visible()
        deliver()
        page.reload()
        log = page.get_by_role("table", name="Deliveries")
        expect(log).to_contain_text("ping")
        expect(log).to_contain_text("Retrying")
        expect(log).to_contain_text("500")
        screenshot(page, "webhooks-endpoint-1280")

        log.get_by_role("link", name="ping").click()
        expect(page.get_by_role("table", name="Attempts")).to_contain_text("not yet")
        payload = page.get_by_role("region", name="Payload")
        expect(payload).to_contain_text('"type": "ping"')
        page.get_by_role("button", name="Retry").click()
        expect(page.get_by_text("Delivery queued to be sent again.")).to_be_visible()
        deliver()
        page.reload()
        expect(page.get_by_role("heading", level=2)).to_contain_text("Succeeded")
        expect(page.get_by_role("table", name="Attempts")).to_contain_text("thanks")
        first, second = receiver.wait_for(2)
        assert first.headers["webhook-id"] == second.headers["webhook-id"]

        page.set_viewport_size({"width": 375, "height": 780})
        page.go_back()
        page.reload()
        screenshot(page, "webhooks-endpoint-375")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
