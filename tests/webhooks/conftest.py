"""Webhook tests: receivers on 127.0.0.1, so private addresses are allowed here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.webhooks.receiver import Receiver


@pytest.fixture(autouse=True)
def _private_addresses_allowed(settings) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_RETRY_DELAYS = [5, 300, 1800, 7200, 18000, 36000, 36000]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running
