"""API keys: stored hashed, shown once, revoked keys refused."""

from __future__ import annotations

import datetime as dt

import pytest
from django.apps import apps
from django.db import connection

from portal.accounts.models import ApiKey, hash_api_key
from portal.accounts.services import api_key_authenticate, api_key_create, api_key_revoke
from portal.audit.models import AuditEvent
from portal.core import clock
from portal.core.errors import Conflict, Forbidden, Invalid, NotFound
from tests.conftest import Api
from tests.factories import SYSTEM, db_snapshot


def _every_stored_text() -> list[str]:
    """Every value of every column of every table, as text (the raw key must be in none)."""
    texts: list[str] = []
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
        for model in apps.get_models(include_auto_created=True):
            table = model._meta.db_table
            if table not in existing:
                continue
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        value = bytes(value).decode("latin-1")
                    texts.append(str(value))
    return texts


def test_raw_key_is_stored_nowhere(tenant, api):
    issued = api_key_create(
        principal=SYSTEM.acting_for(tenant.partner.pk), name="ci", role="manager"
    )
    raw = issued.raw
    secret = raw.split("_", 2)[2]
    assert raw.startswith(f"rpp_{issued.api_key.prefix}_")
    assert len(secret) >= 40
    # Use it, with an idempotency record, so every table that could keep it has had the chance.
    client = Api(raw)
    assert client.post("/sub-accounts", {"name": "X"}, HTTP_IDEMPOTENCY_KEY="k1").status_code == 201
    stored = _every_stored_text()
    assert not [t for t in stored if secret in t]
    key = ApiKey.objects.get(pk=issued.api_key.pk)
    assert key.key_hash == hash_api_key(raw)
    assert len(key.key_hash) == 64
    assert key.matches(raw)
    assert not key.matches(raw + "x")


def test_key_is_shown_only_at_creation(tenant):
    issued = api_key_create(
        principal=SYSTEM.acting_for(tenant.partner.pk), name="once", role="viewer"
    )
    reloaded = ApiKey.objects.get(pk=issued.api_key.pk)
    assert issued.raw not in {str(getattr(reloaded, f.attname)) for f in ApiKey._meta.fields}
    assert "raw" not in {f.name for f in ApiKey._meta.fields}
    event = AuditEvent.objects.get(action="api_key.create", object_id=str(reloaded.pk))
    assert issued.raw not in str(event.data)
    assert event.data["after"]["prefix"] == reloaded.prefix


def test_two_keys_never_share_a_secret(tenant):
    raws = {
        api_key_create(
            principal=SYSTEM.acting_for(tenant.partner.pk), name=f"k{i}", role="viewer"
        ).raw
        for i in range(20)
    }
    assert len(raws) == 20


def test_revoked_key_gets_401_and_others_keep_working(tenant, api_as):
    manager = api_as(tenant.keys["manager"])
    assert manager.get("/sub-accounts").status_code == 200
    key = api_key_authenticate(tenant.keys["manager"])
    revoked = api_key_revoke(principal=tenant.principal("admin"), key_id=key.pk)
    assert revoked.revoked_at is not None
    before = db_snapshot()
    for response in (
        manager.get("/sub-accounts"),
        manager.post("/sub-accounts", {"name": "After revocation"}),
    ):
        assert response.status_code == 401
        assert response.json() == {"detail": "Missing, unknown or revoked API key."}
    assert db_snapshot() == before
    assert api_as(tenant.keys["admin"]).get("/sub-accounts").status_code == 200
    event = AuditEvent.objects.get(action="api_key.revoke")
    assert event.object_id == str(key.pk)
    assert event.partner_id == tenant.partner.pk


def test_revoking_twice_is_a_conflict(tenant):
    key = api_key_authenticate(tenant.keys["viewer"])
    api_key_revoke(principal=tenant.principal("admin"), key_id=key.pk)
    with pytest.raises(Conflict):
        api_key_revoke(principal=tenant.principal("admin"), key_id=key.pk)


def test_only_an_admin_of_the_same_partner_revokes(tenant, other_tenant):
    key = api_key_authenticate(tenant.keys["viewer"])
    with pytest.raises(Forbidden):
        api_key_revoke(principal=tenant.principal("manager"), key_id=key.pk)
    with pytest.raises(NotFound):
        api_key_revoke(principal=other_tenant.principal("admin"), key_id=key.pk)
    with pytest.raises(NotFound):
        api_key_revoke(principal=tenant.principal("admin"), key_id="not-a-number")
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None


def test_partner_admin_cannot_issue_staff_keys_or_bad_roles(tenant):
    admin = tenant.principal("admin")
    with pytest.raises(Forbidden):
        api_key_create(principal=admin, name="sneaky", staff=True)
    with pytest.raises(Invalid):
        api_key_create(principal=admin, name="odd", role="owner")
    with pytest.raises(Forbidden):
        api_key_create(principal=tenant.principal("manager"), name="x", role="viewer")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer nonsense",
        "Bearer rpp_",
        "Bearer rpp_deadbeef0000_secret",
        "Basic dXNlcjpwYXNz",
        "Bearer " + "rpp_" + "a" * 500,
    ],
)
def test_missing_or_bad_keys_get_401(tenant, api_as, authorization):
    client = Api(None) if authorization is None else Api(None, authorization=authorization)
    response = client.get("/sub-accounts")
    assert response.status_code == 401
    assert "detail" in response.json()


def test_right_prefix_with_a_wrong_secret_gets_401(tenant):
    prefix = tenant.keys["admin"].split("_")[1]
    forged = Api(f"rpp_{prefix}_{'A' * 43}")
    assert forged.get("/sub-accounts").status_code == 401


def test_use_is_recorded_at_most_once_a_minute(tenant, api_as):
    client = api_as(tenant.keys["billing"])
    key = api_key_authenticate(tenant.keys["billing"])
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    assert first is not None
    client.get("/sub-accounts")
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first
    with clock.frozen_at(first + dt.timedelta(minutes=2)):
        client.get("/sub-accounts")
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first + dt.timedelta(minutes=2)
