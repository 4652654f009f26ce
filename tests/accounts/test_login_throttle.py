"""One login throttle for every way to log in: the login page, the Django admin's, and any
other caller of ``authenticate()`` (portal.accounts.backends), counted in the database."""

from __future__ import annotations

import datetime as dt
import subprocess
import textwrap

import pytest
from django.contrib.auth import authenticate
from django.test import Client

from portal.accounts.models import LoginAttempt, SecurityEvent, User
from portal.accounts.services import staff_create
from portal.core.clock import frozen_at
from tests.factories import SYSTEM
from tests.portal_process import PORTAL, portal_env

EMAIL = "ops@provider.example"
PASSWORD = "staff-pass-2026"
PAUSED = b"Too many failed login attempts"
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def at(minutes: float) -> frozen_at:
    return frozen_at(T0 + dt.timedelta(minutes=minutes))


@pytest.fixture
def staff(db) -> User:
    return staff_create(principal=SYSTEM, email=EMAIL, password=PASSWORD)


def admin_login(client: Client, password: str, email: str = EMAIL):
    return client.post("/admin/login/?next=/admin/", {"username": email, "password": password})


def page_login(client: Client, password: str, email: str = EMAIL):
    return client.post("/login/", {"username": email, "password": password})


def other_process(script: str) -> list[str]:
    """Run ``script`` in a separate ``portal shell`` on the test database; its output lines."""
    done = subprocess.run(
        [PORTAL, "shell", "--no-imports", "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=portal_env(PORTAL_MANIFEST_STATIC="0"),  # pages render before collectstatic
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def in_admin(client: Client) -> bool:
    """Whether this client's session may open the admin (a login page answers otherwise)."""
    return client.get("/admin/").status_code == 200


def test_160_wrong_passwords_at_the_admin_then_the_right_one_does_not_log_in(staff):
    client = Client()
    with at(0):
        statuses = [admin_login(client, f"guess-{i}").status_code for i in range(160)]
        assert statuses == [200] * 5 + [429] * 155
        response = admin_login(client, PASSWORD)
        assert response.status_code == 429
        assert PAUSED in response.content
        assert not in_admin(client)
    # Refused attempts do not extend the pause: five failures counted, not 160.
    assert LoginAttempt.objects.filter(email=EMAIL).count() == 5
    with at(15.5):
        assert admin_login(client, PASSWORD).status_code == 302
        assert in_admin(client)


def test_the_admin_and_the_login_page_share_one_count(staff):
    admin_side, page_side = Client(), Client()
    with at(0):
        for i in range(3):
            assert admin_login(admin_side, f"guess-{i}").status_code == 200
        for i in range(2):
            assert page_login(page_side, f"guess-{i}").status_code == 200
        # The fifth failure (three at the admin, two on the page) paused the email on both.
        response = page_login(page_side, PASSWORD)
        assert response.status_code == 429 and PAUSED in response.content
        assert admin_login(admin_side, PASSWORD).status_code == 429
        assert not in_admin(admin_side)


def test_failures_on_the_login_page_pause_the_admin_too(staff):
    client = Client()
    with at(0):
        for i in range(5):
            page_login(client, f"guess-{i}")
        assert admin_login(client, PASSWORD).status_code == 429
        assert not in_admin(client)


def test_one_address_trying_many_emails_is_paused_at_the_admin(staff):
    client = Client(REMOTE_ADDR="203.0.113.9")
    with at(0):
        for i in range(20):
            assert admin_login(client, "nope", email=f"user{i}@x.example").status_code == 200
        assert admin_login(client, PASSWORD).status_code == 429
        # Another address is not paused.
        assert admin_login(Client(REMOTE_ADDR="203.0.113.10"), PASSWORD).status_code == 302


def test_every_login_form_records_failures_and_pauses_as_security_events(staff):
    with at(0):
        for i in range(4):
            admin_login(Client(), f"guess-{i}")
        page_login(Client(), "guess-4")
        admin_login(Client(), PASSWORD)
        page_login(Client(), PASSWORD)
    rows = list(
        SecurityEvent.objects.order_by("pk").values_list("action", "status", "path", "actor_label")
    )
    assert rows == [
        *[("login.failed", 200, "/admin/login/", EMAIL)] * 4,
        ("login.failed", 200, "/login/", EMAIL),
        ("login.throttled", 429, "/admin/login/", EMAIL),
        ("login.throttled", 429, "/login/", EMAIL),
    ]
    assert "paused" in SecurityEvent.objects.filter(action="login.throttled").first().reason


def test_authenticate_itself_refuses_a_paused_email(staff):
    """Any caller of authenticate() (a form added later, a script) meets the throttle."""
    with at(0):
        for i in range(5):
            assert authenticate(None, username=EMAIL, password=f"guess-{i}") is None
        assert authenticate(None, username=EMAIL, password=PASSWORD) is None
        assert authenticate(None, email=EMAIL, password=PASSWORD) is None
    with at(16):
        assert authenticate(None, username=EMAIL, password=PASSWORD) == staff


def test_a_successful_login_clears_the_email_at_either_form(staff):
    client = Client()
    with at(0):
        for i in range(4):
            admin_login(client, f"guess-{i}")
        assert admin_login(client, PASSWORD).status_code == 302
        assert not LoginAttempt.objects.filter(email=EMAIL).exists()


@pytest.mark.django_db(transaction=True)
def test_the_pause_is_shared_by_every_process():
    """Failures made by another process (its own Django, the same database) count here,
    and failures made here refuse the right password there: the state is in the database."""
    staff_create(principal=SYSTEM, email=EMAIL, password=PASSWORD)
    statuses = other_process(
        f"""
        from django.test import Client
        client = Client()
        for i in range(5):
            response = client.post("/admin/login/", {{"username": "{EMAIL}", "password": "x"}})
            print(response.status_code)
        """
    )
    assert statuses == ["200"] * 5
    response = page_login(Client(), PASSWORD)
    assert response.status_code == 429 and PAUSED in response.content

    LoginAttempt.objects.all().delete()
    for i in range(5):
        page_login(Client(), f"guess-{i}")
    refused = other_process(
        f"""
        from django.contrib.auth import authenticate
        print(authenticate(None, username="{EMAIL}", password="{PASSWORD}"))
        """
    )
    assert refused == ["None"]
