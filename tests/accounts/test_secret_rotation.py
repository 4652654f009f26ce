"""Rotating PORTAL_SECRET_KEY: keys listed in PORTAL_SECRET_KEY_FALLBACKS still verify API
keys, sessions and password-reset links until they are removed (docs/operations.md)."""

from __future__ import annotations

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.test import Client

from portal.accounts.models import ApiKey, hash_api_key
from portal.accounts.services import api_key_create
from portal.audit.models import AuditEvent
from tests.accounts.test_sessions_and_headers import load_settings
from tests.conftest import Api
from tests.factories import SYSTEM, make_user

OLD = "old-secret-key-" + "a1b2c3d4e5" * 6
NEW = "new-secret-key-" + "f6g7h8i9j0" * 6
PASSWORD = "demo-pass-123"


@pytest.fixture
def old_secret(settings):
    """Start under the old secret key, no fallbacks; ``rotate(...)`` switches keys."""
    settings.SECRET_KEY = OLD
    settings.SECRET_KEY_FALLBACKS = []

    def rotate(*fallbacks: str) -> None:
        settings.SECRET_KEY = NEW
        settings.SECRET_KEY_FALLBACKS = list(fallbacks)

    return rotate


def new_key(tenant, name: str) -> str:
    return api_key_create(
        principal=SYSTEM.acting_for(tenant.partner.pk), name=name, role="viewer"
    ).raw


def status(raw: str) -> int:
    return Api(raw).get("/sub-accounts").status_code


def stored_hash(raw: str) -> str:
    return ApiKey.objects.get(prefix=raw.split("_")[1]).key_hash


def test_settings_read_the_fallbacks_comma_separated():
    values = load_settings({"PORTAL_SECRET_KEY_FALLBACKS": f" {OLD} ,{NEW},, "})
    assert values["SECRET_KEY_FALLBACKS"] == [OLD, NEW]
    assert load_settings({})["SECRET_KEY_FALLBACKS"] == []


def test_an_api_key_from_before_the_rotation_works_while_its_secret_is_a_fallback(
    tenant, old_secret
):
    used, unused = new_key(tenant, "used"), new_key(tenant, "unused")
    assert status(used) == 200
    old_secret(OLD)
    audit_before = AuditEvent.objects.count()
    assert status(used) == 200
    # Used once under the new key: stored under it now, with no audit event.
    assert stored_hash(used) == hash_api_key(used) != hash_api_key(used, secret=OLD)
    assert AuditEvent.objects.count() == audit_before
    assert stored_hash(unused) == hash_api_key(unused, secret=OLD)

    old_secret()  # the fallback removed
    assert status(used) == 200
    assert status(unused) == 401  # never used while the fallback was listed


def test_without_the_fallback_an_api_key_from_before_the_rotation_is_refused(tenant, old_secret):
    raw = new_key(tenant, "before")
    old_secret()
    assert status(raw) == 401
    assert stored_hash(raw) == hash_api_key(raw, secret=OLD)  # nothing rewritten
    old_secret(OLD)  # putting the old key back as a fallback lets it in again
    assert status(raw) == 200


def test_a_key_created_after_the_rotation_uses_the_new_secret(tenant, old_secret):
    old_secret(OLD)
    raw = new_key(tenant, "after")
    assert stored_hash(raw) == hash_api_key(raw, secret=NEW)
    assert status(raw) == 200


def test_sessions_survive_the_rotation_while_the_old_secret_is_a_fallback(tenant, old_secret):
    admin = make_user(tenant.partner, "admin@rotate.example", "admin", password=PASSWORD)
    active, idle = Client(), Client()
    for client in (active, idle):
        assert (
            client.post("/login/", {"username": admin.email, "password": PASSWORD}).status_code
            == 302
        )
        assert client.get("/lines/").status_code == 200
    old_secret(OLD)
    assert active.get("/lines/").status_code == 200
    old_secret()
    # The session used during the rotation was signed again under the new key; the other
    # one was not and ends.
    assert active.get("/lines/").status_code == 200
    response = idle.get("/lines/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_reset_links_survive_the_rotation_while_the_old_secret_is_a_fallback(tenant, old_secret):
    user = make_user(tenant.partner, "reset@rotate.example", "viewer", password=PASSWORD)
    token = default_token_generator.make_token(user)
    old_secret(OLD)
    assert default_token_generator.check_token(user, token)
    old_secret()
    assert not default_token_generator.check_token(user, token)
