"""Shared fixtures. The database comes from DATABASE_URL (SQLite under var/ when unset)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tests import factories


class Api:
    """A thin JSON client for /api/v1 with one bearer key.

    Extra keyword arguments are WSGI environ entries (``HTTP_IDEMPOTENCY_KEY=...``,
    ``REMOTE_ADDR=...``), as with Django's test client.
    """

    def __init__(self, key: str | None, *, authorization: str | None = None) -> None:
        if authorization is not None:
            headers = {"HTTP_AUTHORIZATION": authorization}
        else:
            headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
        self.client = Client(**headers)

    def _url(self, path: str) -> str:
        return "/api/v1" + path

    def get(self, path: str, **params: Any):
        return self.client.get(self._url(path), params)

    def get_with(self, path: str, params: dict[str, Any] | None = None, **headers: str):
        """GET with query ``params`` and environ ``headers`` kept apart."""
        return self.client.get(self._url(path), params or {}, **headers)

    def post(self, path: str, body: Any = None, *, raw: str | None = None, **headers: str):
        data = raw if raw is not None else ("" if body is None else json.dumps(body))
        return self.client.post(self._url(path), data, content_type="application/json", **headers)

    def ok_post(self, path: str, body: Any = None, **headers: str) -> Any:
        """POST that must succeed (2xx); returns the decoded body."""
        response = self.post(path, body, **headers)
        assert 200 <= response.status_code < 300, (path, response.status_code, response.content)
        return response.json()

    def patch(self, path: str, body: Any = None, *, raw: str | None = None, **headers: str):
        data = raw if raw is not None else json.dumps(body)
        return self.client.patch(self._url(path), data, content_type="application/json", **headers)

    def call(self, method: str, path: str, body: Any = None, **headers: str):
        """Any method; ``body`` is sent as JSON for writes and ignored for GET."""
        if method == "GET":
            return self.client.get(self._url(path), **headers)
        data = "" if body is None else json.dumps(body)
        return self.client.generic(
            method, self._url(path), data, content_type="application/json", **headers
        )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.postgres_only`` tests need PostgreSQL's row locks: skipped on SQLite."""
    if item.get_closest_marker("postgres_only"):
        from django.db import connection

        if connection.vendor != "postgresql":
            pytest.skip("needs PostgreSQL row locks")


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    """Pages render without collectstatic: assets by their plain names (the hashed
    manifest is what `portal serve` uses, checked in tests/test_cli.py)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """Passwords hashed for speed, not strength: the production hasher's ~1.2 million
    PBKDF2 rounds are a third of a second a user or login, minutes over the suite. What
    is tested (a password set, checked, refused) does not depend on the hasher;
    ``tests/accounts/test_password_hashing.py`` checks the production setting. PBKDF2
    still checks the passwords that a ``portal`` process (production settings) stored."""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]


@pytest.fixture(autouse=True)
def _rate_limits_off(settings) -> None:
    """Rate limits would refuse the suite's rapid requests; tests/test_rate_limits.py
    turns them back on where they are the subject."""
    settings.RATE_LIMITS_ENABLED = False


@pytest.fixture
def tenant(db) -> factories.Tenant:
    return factories.make_tenant("Acme Resellers")


@pytest.fixture
def other_tenant(db) -> factories.Tenant:
    return factories.make_tenant("Rival Resellers")


@pytest.fixture
def api(tenant) -> Api:
    """The admin key of ``tenant``."""
    return Api(tenant.keys["admin"])


@pytest.fixture
def api_as():
    """``api_as(key)`` builds a client for any key."""
    return Api


@pytest.fixture
def staff_key(db) -> str:
    return factories.make_staff_key()
