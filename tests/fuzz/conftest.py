"""Fixtures for the API fuzzing campaign: one seeded world per module, rolled back at the end.

The world is built once inside a module-wide transaction; every test runs in a savepoint
inside it (pytest-django's ``db``), and every generated request in a savepoint of its own,
so each request meets the same seeded state.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import override_settings

from portal.wsgi import application
from tests.fuzz.support import World, seed_world


@pytest.fixture(scope="module")
def in_process_wsgi() -> Iterator[None]:
    """Keep Django from closing the test's connection at the end of each WSGI request.

    Requests go straight to ``portal.wsgi.application`` (through werkzeug's client), not
    through Django's test client, which does the same for its own requests. Rate limits,
    where the settings have them, are off: a fuzzer sends far more than a person would.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        with override_settings(RATE_LIMITS_ENABLED=False):
            yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, in_process_wsgi) -> Iterator[World]:
    with django_db_blocker.unblock(), transaction.atomic():
        yield seed_world()
        transaction.set_rollback(True)


@pytest.fixture(scope="module")
def api_schema(django_db_setup, django_db_blocker, in_process_wsgi) -> schemathesis.BaseSchema:
    """The OpenAPI document as the running application serves it."""
    with django_db_blocker.unblock(), transaction.atomic():
        schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)
        transaction.set_rollback(True)
    return schema
