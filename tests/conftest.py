"""Shared fixtures. The database comes from DATABASE_URL (SQLite under var/ when unset)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tests import factories


class Api:
    """A thin JSON client for /api/v1 with one bearer key."""

    def __init__(self, key: str | None) -> None:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
        self.client = Client(**headers)

    def _url(self, path: str) -> str:
        return "/api/v1" + path

    def get(self, path: str, **params: Any):
        return self.client.get(self._url(path), params)

    def post(self, path: str, body: Any = None, *, raw: str | None = None, **headers: str):
        data = raw if raw is not None else ("" if body is None else json.dumps(body))
        return self.client.post(self._url(path), data, content_type="application/json", **headers)

    def patch(self, path: str, body: Any):
        return self.client.patch(self._url(path), json.dumps(body), content_type="application/json")


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
