"""Refused requests are logged (logger ``portal.security``) and stored (SecurityEvent).

The record is written after the refused transaction, changes no domain data and is
not an audit event (see portal/accounts/security.py for the choice).
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.test import Client

from portal.accounts.models import ApiKey, SecurityEvent
from portal.accounts.services import api_key_authenticate, security_events_prune
from portal.audit.models import AuditEvent
from portal.core import clock
from portal.core.errors import Forbidden
from portal.lines.services import line_move
from tests.factories import db_snapshot, make_lines, make_sub_account, make_user

SECURITY_LOGGER = "portal.security"


def security_logs(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == SECURITY_LOGGER]


def test_a_viewer_key_moving_a_line_is_refused_logged_and_stored(tenant, api_as, caplog):
    sub = make_sub_account(tenant.partner, "Client A")
    [line] = make_lines(tenant.partner, 1)
    key = ApiKey.objects.get(pk=api_key_authenticate(tenant.keys["viewer"]).pk)
    before = db_snapshot()
    caplog.set_level(logging.INFO, logger=SECURITY_LOGGER)

    response = api_as(tenant.keys["viewer"]).post(
        f"/lines/{line.pk}/move", {"sub_account_id": sub.pk}
    )

    assert response.status_code == 403
    assert response.json() == {"detail": "Your role may not move lines."}
    assert db_snapshot() == before  # nothing changed, and no audit event either
    assert not AuditEvent.objects.filter(action__startswith="authz").exists()
    [event] = SecurityEvent.objects.all()
    assert event.action == "authz.refused"
    assert event.status == 403
    assert (event.actor_type, event.actor_id) == ("api_key", key.pk)
    assert event.actor_label == f"key:{key.prefix} (viewer key)"
    assert event.partner_id == tenant.partner.pk
    assert (event.method, event.path) == ("POST", f"/api/v1/lines/{line.pk}/move")
    assert event.reason == "Your role may not move lines."
    assert event.request_id == response["X-Request-ID"]
    assert event.ip == "127.0.0.1"
    assert abs(event.at - clock.now()) < dt.timedelta(minutes=1)
    [record] = security_logs(caplog)
    assert record.levelno == logging.WARNING
    assert record.security_event["action"] == "authz.refused"
    assert record.security_event["path"] == event.path
    assert record.security_event["actor_label"] == event.actor_label
    message = record.getMessage()
    assert "authz.refused status=403" in message and "Your role may not move lines." in message


def test_a_role_that_may_gets_no_refusal_record(tenant, api_as):
    sub = make_sub_account(tenant.partner, "Client A")
    [line] = make_lines(tenant.partner, 1)
    response = api_as(tenant.keys["manager"]).post(
        f"/lines/{line.pk}/move", {"sub_account_id": sub.pk}
    )
    assert response.status_code == 200
    assert not SecurityEvent.objects.exists()


def test_an_unknown_key_is_stored_by_its_prefix_never_its_secret(tenant, api_as, caplog):
    caplog.set_level(logging.INFO, logger=SECURITY_LOGGER)
    forged = "rpp_0123456789ab_" + "S" * 43
    response = api_as(forged).get("/sub-accounts")
    assert response.status_code == 401
    [event] = SecurityEvent.objects.all()
    assert event.action == "authn.failed"
    assert event.status == 401
    assert (event.actor_type, event.actor_id, event.partner_id) == ("anonymous", None, None)
    assert event.actor_label == "key:0123456789ab"
    assert event.reason == "Unknown or revoked API key."
    assert (event.method, event.path) == ("GET", "/api/v1/sub-accounts")
    [record] = security_logs(caplog)
    assert "S" * 43 not in record.getMessage()
    assert "S" * 43 not in str(record.security_event)


def test_a_revoked_key_and_a_missing_key_are_recorded(tenant, api_as):
    from portal.accounts.services import api_key_revoke
    from tests.factories import SYSTEM

    key = api_key_authenticate(tenant.keys["billing"])
    api_key_revoke(principal=SYSTEM.acting_for(tenant.partner.pk), key_id=key.pk)
    assert api_as(tenant.keys["billing"]).get("/sub-accounts").status_code == 401
    assert api_as(None).get("/lines").status_code == 401
    assert api_as(None, authorization="Basic abc").get("/lines").status_code == 401
    events = list(SecurityEvent.objects.order_by("pk").values_list("actor_label", "reason"))
    assert events == [
        (f"key:{key.prefix}", "Unknown or revoked API key."),
        ("anonymous", "No API key."),
        ("anonymous", "Unusable Authorization header."),
    ]
    assert set(SecurityEvent.objects.values_list("action", "status")) == {("authn.failed", 401)}


def test_a_refused_page_is_recorded_with_the_user(tenant):
    viewer = make_user(tenant.partner, "viewer@refused.example", "viewer")
    client = Client()
    client.force_login(viewer)
    response = client.get("/settings/users/")
    assert response.status_code == 403
    [event] = SecurityEvent.objects.all()
    assert (event.action, event.status) == ("authz.refused", 403)
    assert (event.actor_type, event.actor_id, event.actor_label) == (
        "user",
        viewer.pk,
        "viewer@refused.example",
    )
    assert event.partner_id == tenant.partner.pk
    assert (event.method, event.path) == ("GET", "/settings/users/")
    assert event.reason == "Only a partner admin manages users and API keys."


def test_a_refused_form_post_is_recorded_and_changes_nothing(tenant):
    manager = make_user(tenant.partner, "manager@refused.example", "manager")
    client = Client()
    client.force_login(manager)
    before = db_snapshot()
    response = client.post("/settings/api-keys/new/", {"name": "sneaky", "role": "admin"})
    assert response.status_code == 403
    assert db_snapshot() == before
    [event] = SecurityEvent.objects.all()
    assert (event.actor_label, event.method, event.path) == (
        "manager@refused.example",
        "POST",
        "/settings/api-keys/new/",
    )


def test_a_failed_csrf_check_is_recorded(tenant):
    admin = make_user(tenant.partner, "admin@refused.example", "admin")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    response = client.post("/sub-accounts/new/", {"name": "Client X"})
    assert response.status_code == 403
    [event] = SecurityEvent.objects.all()
    assert (event.action, event.status) == ("csrf.refused", 403)
    assert event.actor_label == "admin@refused.example"
    assert event.reason.startswith("CSRF check failed: CSRF cookie not set")


def test_another_partners_object_is_a_plain_404_not_a_refusal(tenant, other_tenant, api_as):
    """The tenant wall answers 404 exactly as for a missing row, so it records nothing."""
    [line] = make_lines(other_tenant.partner, 1)
    sub = make_sub_account(tenant.partner, "Client A")
    response = api_as(tenant.keys["admin"]).post(
        f"/lines/{line.pk}/move", {"sub_account_id": sub.pk}
    )
    assert response.status_code == 404
    assert not SecurityEvent.objects.exists()


def test_outside_a_request_a_refusal_is_logged_not_stored(tenant, caplog):
    caplog.set_level(logging.INFO, logger=SECURITY_LOGGER)
    [line] = make_lines(tenant.partner, 1)
    with pytest.raises(Forbidden):
        line_move(principal=tenant.principal("viewer"), line_id=line.pk, sub_account_id=1)
    [record] = security_logs(caplog)
    assert record.security_event["reason"] == "Your role may not move lines."
    assert record.security_event["actor_label"] == "(outside a web request)"
    assert not SecurityEvent.objects.exists()


def test_old_security_events_are_pruned(tenant, api_as, settings):
    settings.SECURITY_EVENT_RETENTION_DAYS = 30
    api_as(None).get("/lines")
    api_as(None).get("/lines")
    old, new = SecurityEvent.objects.order_by("pk")
    SecurityEvent.objects.filter(pk=old.pk).update(at=clock.now() - dt.timedelta(days=31))
    assert security_events_prune() == 1
    assert list(SecurityEvent.objects.values_list("pk", flat=True)) == [new.pk]


def test_a_refusal_raised_without_require_is_still_recorded(tenant, api_as):
    """Workflows refuse a partner's own approval with Forbidden; the 403 is recorded."""
    from portal.workflows.services.merges import merge_request_create

    source = make_sub_account(tenant.partner, "Source – Sales")
    target = make_sub_account(tenant.partner, "Target – Sales")
    merge = merge_request_create(
        principal=tenant.principal("admin"), source_ids=[source.pk], target_id=target.pk
    )
    key = api_key_authenticate(tenant.keys["admin"])
    response = api_as(tenant.keys["admin"]).post(f"/merge-requests/{merge.pk}/approve", {})
    assert response.status_code == 403
    [event] = SecurityEvent.objects.all()
    assert (event.action, event.status, event.actor_id) == ("authz.refused", 403, key.pk)
    assert event.path == f"/api/v1/merge-requests/{merge.pk}/approve"
    assert event.reason  # the policy's message once it refuses through policies.refuse
