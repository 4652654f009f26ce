"""Production settings, cookies, session lifetime and ending, and security headers."""

from __future__ import annotations

import datetime as dt
import os
import runpy
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings

import portal.settings as portal_settings
from portal.accounts import services
from portal.accounts.models import UserSession
from portal.accounts.services import staff_create
from portal.audit.models import AuditEvent
from portal.core.clock import frozen_at
from portal.core.principal import Principal
from portal.web.principal import ACTING_PARTNER_SESSION_KEY
from tests.factories import SYSTEM, make_partner, make_user

PASSWORD = "demo-pass-123"
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
# Environment variables that change the security settings; cleared so that only what a
# test sets counts.
SECURITY_ENV = (
    "PORTAL_PRODUCTION",
    "PORTAL_DEBUG",
    "PORTAL_SECRET_KEY",
    "PORTAL_SECRET_KEY_FALLBACKS",
    "PORTAL_ALLOWED_HOSTS",
    "PORTAL_SECURE_COOKIES",
    "PORTAL_SSL_REDIRECT",
    "PORTAL_HSTS_SECONDS",
    "PORTAL_HSTS_INCLUDE_SUBDOMAINS",
    "PORTAL_HSTS_PRELOAD",
    "PORTAL_TRUST_X_FORWARDED_PROTO",
    "PORTAL_EMAIL_BACKEND",
)


def production_env(**extra: str) -> dict[str, str]:
    return {
        "PORTAL_PRODUCTION": "1",
        "PORTAL_SECRET_KEY": secrets.token_urlsafe(50),
        "PORTAL_ALLOWED_HOSTS": "portal.example.com,testserver",
        "PORTAL_EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        **extra,
    }


def load_settings(env: dict[str, str]) -> dict[str, Any]:
    """Execute settings.py under ``env`` (security variables otherwise unset)."""
    saved = {name: os.environ.get(name) for name in SECURITY_ENV}
    try:
        for name in SECURITY_ENV:
            os.environ.pop(name, None)
        os.environ.update(env)
        values = runpy.run_path(portal_settings.__file__)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return {name: value for name, value in values.items() if name.isupper()}


def production_overrides(**extra: str) -> dict[str, Any]:
    """The settings production changes, to apply in-process with override_settings.

    The secret key is left alone: the test database's API keys are hashed with it.
    """
    demo = load_settings({})
    production = load_settings(production_env(**extra))
    skip = {"SECRET_KEY", "CONTACT_HASH_KEY", "MAILERS"}
    return {
        name: value
        for name, value in production.items()
        if name not in skip and demo.get(name, object()) != value
    }


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    """No collectstatic in tests: serve assets by their plain names."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def partner(db):
    return make_partner("Session Partner")


@pytest.fixture
def admin(partner):
    return make_user(partner, "admin@sessions.example", "admin", password=PASSWORD)


@pytest.fixture
def viewer(partner):
    return make_user(partner, "viewer@sessions.example", "viewer", password=PASSWORD)


def logged_in(user, at: dt.datetime | None = None) -> Client:
    client = Client()
    if at is None:
        client.force_login(user)
    else:
        with frozen_at(at):
            client.force_login(user)
    return client


def is_logged_in(client: Client) -> bool:
    response = client.get("/sub-accounts/")
    if response.status_code == 302:
        assert response["Location"].startswith("/login/"), response["Location"]
        return False
    assert response.status_code == 200, response.status_code
    return True


# --- Production configuration -----------------------------------------------------------


def _portal_cli() -> str:
    return str(Path(sys.executable).with_name("portal"))


@pytest.mark.parametrize(("preload", "silenced"), [("0", "1 silenced"), ("1", "0 silenced")])
def test_check_deploy_is_clean_with_production_settings(tmp_path, preload, silenced):
    # The browser tests set DJANGO_ALLOW_ASYNC_UNSAFE for the test process only (Playwright's
    # sync API runs an event loop); a deployed process never has it, so the check runs without.
    skipped = {*SECURITY_ENV, "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env = {k: v for k, v in os.environ.items() if k not in skipped}
    # A previous secret key listed as a fallback (a rotation under way) is checked too.
    previous = secrets.token_urlsafe(50)
    env.update(
        production_env(PORTAL_HSTS_PRELOAD=preload, PORTAL_SECRET_KEY_FALLBACKS=previous),
        PORTAL_VAR_DIR=str(tmp_path),
    )
    result = subprocess.run(
        [_portal_cli(), "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output and "ERROR" not in output, output
    # Only Django's reminder to preload HSTS is silenced, and only while preload is off.
    assert f"System check identified no issues ({silenced})." in output, output


def test_the_demo_without_environment_fails_the_deploy_check(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in SECURITY_ENV}
    env["PORTAL_VAR_DIR"] = str(tmp_path)
    result = subprocess.run(
        [_portal_cli(), "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in result.stderr, check


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORTAL_SECRET_KEY": ""}, "PORTAL_SECRET_KEY must be set"),
        ({"PORTAL_ALLOWED_HOSTS": ""}, "PORTAL_ALLOWED_HOSTS must name"),
        ({"PORTAL_ALLOWED_HOSTS": "*"}, "PORTAL_ALLOWED_HOSTS must name"),
        ({"PORTAL_DEBUG": "1"}, "PORTAL_DEBUG must be off"),
    ],
)
def test_production_refuses_an_unsafe_configuration(env, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        load_settings(production_env(**env))


def test_production_values():
    values = load_settings(production_env())
    assert values["DEBUG"] is False
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] == 31536000
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SECURE_HSTS_PRELOAD"] is False
    assert values["SESSION_COOKIE_SECURE"] is values["CSRF_COOKIE_SECURE"] is True
    assert "SECURE_PROXY_SSL_HEADER" not in values  # opt-in only
    behind_proxy = load_settings(production_env(PORTAL_TRUST_X_FORWARDED_PROTO="1"))
    assert behind_proxy["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    demo = load_settings({})
    assert demo["SESSION_COOKIE_SECURE"] is False
    assert not demo.get("SECURE_SSL_REDIRECT") and not demo.get("SECURE_HSTS_SECONDS")
    assert demo["ALLOWED_HOSTS"] == ["*"]


def test_the_demo_works_over_plain_http(admin):
    """No environment: http on localhost, no redirect to https, no HSTS, plain cookies."""
    client = Client(HTTP_HOST="localhost:8000")
    page = client.get("/login/")
    assert page.status_code == 200
    assert "Strict-Transport-Security" not in page
    response = client.post("/login/", {"username": admin.email, "password": PASSWORD})
    assert response.status_code == 302
    cookie = response.cookies[django_settings.SESSION_COOKIE_NAME]
    assert not cookie["secure"] and cookie["httponly"]
    assert client.get("/sub-accounts/").status_code == 200


def test_production_cookies_after_login_and_https_only(admin):
    with override_settings(**production_overrides()):
        client = Client()
        # Plain http is sent to https (the health check excepted, for load balancers).
        insecure = client.get("/login/")
        assert insecure.status_code == 301
        assert insecure["Location"] == "https://testserver/login/"
        assert client.get("/healthz").status_code == 200

        form = client.get("/login/", secure=True)
        assert form.status_code == 200
        assert form["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
        csrf = form.cookies["__Host-portal_csrf"]
        response = client.post(
            "/login/", {"username": admin.email, "password": PASSWORD}, secure=True
        )
        assert response.status_code == 302
        session = response.cookies["__Host-portal_session"]
        for cookie in (session, csrf):
            assert cookie["secure"] is True
            assert cookie["httponly"] is True
            assert cookie["samesite"] == "Lax"
            assert cookie["path"] == "/"
            assert not cookie["domain"]  # __Host-: this host only
        assert session["max-age"] == 12 * 3600
        assert client.get("/sub-accounts/", secure=True).status_code == 200


# --- Security headers ----------------------------------------------------------------------


PUBLIC_PAGES = ["/login/", "/password-reset/"]
PAGES = [
    "/sub-accounts/",
    "/lines/",
    "/billing/",
    "/analytics/",
    "/requests/",
    "/audit/",
    "/settings/users/",
    "/account/password/",
]


def _assert_security_headers(response) -> None:
    csp = response["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_security_headers_on_pages(admin):
    anonymous, client = Client(), logged_in(admin)
    for path in PUBLIC_PAGES + PAGES:
        response = (anonymous if path in PUBLIC_PAGES else client).get(path)
        assert response.status_code == 200, path
        assert response["Content-Type"].startswith("text/html"), path
        _assert_security_headers(response)
        assert "Strict-Transport-Security" not in response  # the demo is http


def test_security_headers_on_staff_pages_and_in_production(partner):
    staff = logged_in(staff_create(principal=SYSTEM, email="ops@provider.example"))
    for path in ("/staff/partners/", "/staff/line-orders/", "/staff/approvals/"):
        response = staff.get(path)
        assert response.status_code == 200, path
        _assert_security_headers(response)
    with override_settings(**production_overrides(PORTAL_HSTS_PRELOAD="1")):
        client = Client()
        client.force_login(staff_create(principal=SYSTEM, email="ops2@provider.example"))
        for path in ("/login/", "/staff/partners/"):
            response = client.get(path, secure=True)
            _assert_security_headers(response)
            assert response["Strict-Transport-Security"] == (
                "max-age=31536000; includeSubDomains; preload"
            )


# --- Session lifetime ----------------------------------------------------------------------


def test_idle_session_ends_after_30_minutes(admin):
    client = logged_in(admin, at=T0)
    key = client.session.session_key
    # Activity keeps the session: each request is less than 30 minutes after the last,
    # though the last is an hour after the login.
    for minutes in (29, 58):
        with frozen_at(T0 + dt.timedelta(minutes=minutes)):
            assert is_logged_in(client), minutes
    with frozen_at(T0 + dt.timedelta(minutes=58 + 31)):
        response = client.get("/lines/?q=1")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/lines/%3Fq%3D1"
    assert not UserSession.objects.filter(session_key=key).exists()
    login_page = client.get(response["Location"]).content.decode()
    assert "You were logged out after 30 minutes without activity." in login_page
    assert not is_logged_in(client)


def test_an_htmx_request_after_the_session_ended_sends_the_page_to_login(admin):
    client = logged_in(admin, at=T0)
    with frozen_at(T0 + dt.timedelta(minutes=31)):
        response = client.get(
            "/lines/",
            headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/lines/?q=1"},
        )
    # Not a 302 that HTMX would follow and swap the login form into a dialog.
    assert response.status_code == 204
    assert response["HX-Redirect"] == "/login/?next=/lines/%3Fq%3D1"


def test_last_seen_is_written_at_most_once_a_minute(admin):
    client = logged_in(admin, at=T0)
    saved = UserSession.objects.get(session_key=client.session.session_key).session_data
    with frozen_at(T0 + dt.timedelta(seconds=59)):
        assert is_logged_in(client)
    unchanged = UserSession.objects.get(session_key=client.session.session_key).session_data
    assert unchanged == saved
    with frozen_at(T0 + dt.timedelta(seconds=61)):
        assert is_logged_in(client)
    assert client.session["_portal_seen_at"] == int((T0 + dt.timedelta(seconds=61)).timestamp())


def test_session_ends_12_hours_after_login_however_active(admin):
    client = logged_in(admin, at=T0)
    at = T0
    while at + dt.timedelta(minutes=25) <= T0 + dt.timedelta(hours=12):
        at += dt.timedelta(minutes=25)
        with frozen_at(at):
            response = client.get("/")
        assert response.status_code == 302  # home sends to sub-accounts, not to login
        assert not response["Location"].startswith("/login/"), at
    with frozen_at(T0 + dt.timedelta(hours=12, minutes=1)):
        response = client.get("/sub-accounts/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert "Your session ended 12 hours after you logged in." in (
        client.get(response["Location"]).content.decode()
    )
    assert not UserSession.objects.filter(user=admin).exists()


def test_a_session_without_a_login_time_has_ended(admin):
    """Sessions from before the timeouts existed are not kept forever."""
    client = logged_in(admin)
    session = client.session
    del session["_portal_login_at"]
    session.save()
    assert not is_logged_in(client)


# --- Ending sessions -----------------------------------------------------------------------


def test_sessions_record_their_user(admin):
    client = logged_in(admin)
    assert UserSession.objects.get(session_key=client.session.session_key).user_id == admin.pk
    anonymous = Client()
    anonymous.post("/login/", {"username": admin.email, "password": "wrong"})
    session = anonymous.session
    session["x"] = 1
    session.save()
    assert UserSession.objects.get(session_key=session.session_key).user_id is None


def test_logout_ends_the_session_on_the_server(admin):
    client = logged_in(admin)
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    assert UserSession.objects.filter(session_key=cookie, user=admin).exists()
    assert client.post("/logout/").status_code == 302
    assert not UserSession.objects.filter(session_key=cookie).exists()
    replay = Client()
    replay.cookies[django_settings.SESSION_COOKIE_NAME] = cookie
    assert not is_logged_in(replay)


def test_deactivating_a_user_ends_their_sessions_on_every_device(admin, viewer):
    laptop, phone = logged_in(viewer), logged_in(viewer)
    keep = logged_in(admin)
    assert UserSession.objects.filter(user=viewer).count() == 2
    response = keep.post(f"/settings/users/{viewer.pk}/deactivate/")
    assert response.status_code == 302
    assert not UserSession.objects.filter(user=viewer).exists()
    assert not is_logged_in(laptop) and not is_logged_in(phone)
    assert is_logged_in(keep)
    event = AuditEvent.objects.get(action="user.deactivate")
    assert event.data["sessions_ended"] == 2
    # Deleted, not merely refused while inactive: reactivating brings nothing back.
    services.user_reactivate(principal=Principal.for_user(admin), user_id=viewer.pk)
    assert not is_logged_in(laptop) and not is_logged_in(phone)


def test_a_refused_deactivation_ends_no_session(admin):
    client = logged_in(admin)
    response = client.post(f"/settings/users/{admin.pk}/deactivate/")
    assert response.status_code == 409  # the last admin
    assert UserSession.objects.filter(user=admin).count() == 1
    assert is_logged_in(client)


def test_changing_the_password_ends_the_other_sessions_only(admin):
    here, elsewhere = logged_in(admin), logged_in(admin)
    response = here.post(
        "/account/password/",
        {
            "old_password": PASSWORD,
            "new_password1": "another-pass-456",
            "new_password2": "another-pass-456",
        },
    )
    assert response.status_code == 302
    assert is_logged_in(here)
    assert not is_logged_in(elsewhere)
    # The session that changed it moved to a new key, still recorded as the user's.
    assert UserSession.objects.filter(user=admin).count() == 1


def test_staff_sessions_keep_the_acting_partner_and_end_on_logout(partner):
    staff = logged_in(staff_create(principal=SYSTEM, email="ops@provider.example"))
    session = staff.session
    session[ACTING_PARTNER_SESSION_KEY] = partner.pk
    session.save()
    assert is_logged_in(staff)
    assert staff.session[ACTING_PARTNER_SESSION_KEY] == partner.pk
    staff.post("/logout/")
    assert not is_logged_in(staff)
