from __future__ import annotations

from tests.factories import make_sub_account
from tests.webhooks.support import deliver, deliveries, endpoint_for


def test_sub_account_created_is_delivered_signed(tenant, receiver):
    endpoint, secret = endpoint_for(tenant, receiver.url())
    sa = make_sub_account(tenant.partner, "Acme – Sales")
    assert deliver() == 1
    (got,) = receiver.wait_for(1)
    payload = got.verify(secret)
    assert payload["type"] == "sub_account.created"
    assert payload["data"]["sub_account_id"] == sa.pk
    (delivery,) = deliveries(endpoint.pk)
    assert delivery.status == "succeeded"
    assert delivery.attempts == 1
