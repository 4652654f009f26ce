"""The login throttle, hooked into every ``authenticate()`` call.

Django runs the backends in ``AUTHENTICATION_BACKENDS`` in order and sends
``user_login_failed`` when none accepts the credentials. :class:`LoginThrottleBackend`
comes first: while the email or the client address is paused it raises
``PermissionDenied``, which stops ``authenticate()`` before any password is checked.
The signal receivers below count failures and clear them after a login. So every way
to log in (the login page, the Django admin's, any form added later) shares one
throttle, counted in ``LoginAttempt`` rows that every process sees, and leaves the same
security events, without each form having to remember to call the throttle.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from portal.accounts import services
from portal.accounts.models import User
from portal.accounts.security import LOGIN_FAILED, LOGIN_THROTTLED, refusal_note
from portal.core.errors import RateLimited
from portal.core.middleware import client_ip

# The request attribute that carries the pause's message to the form that asked.
THROTTLED_ATTR = "login_throttled"


def _email(credentials: dict[str, Any]) -> str:
    """The email being tried: forms pass ``username``, a caller may name the field."""
    value = credentials.get("username") or credentials.get(User.USERNAME_FIELD) or ""
    return str(value).strip().lower()


def _ip(request: HttpRequest | None) -> str | None:
    return client_ip(request) if request is not None else None


class LoginThrottleBackend:
    """Refuses every login attempt for a paused email or address; never logs anyone in.

    Deliberately not a ``BaseBackend``: without ``get_user`` Django never stores it as a
    session's backend (``force_login`` and ``login()`` pick the first backend that has
    one), so it only ever takes part in ``authenticate()``.
    """

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, **credentials: Any
    ) -> None:
        email = _email({"username": username, **credentials})
        if not email:
            return None
        try:
            services.login_throttle_check(email=email, ip=_ip(request))
        except RateLimited as exc:
            if request is not None:
                setattr(request, THROTTLED_ATTR, str(exc.detail))
            # Ends authenticate(): no backend checks the password, user_login_failed is sent.
            raise PermissionDenied(str(exc.detail)) from None
        return None


def on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any
) -> None:
    """Count a failed login, unless it was refused by the pause (those do not extend it)."""
    email = _email(credentials)
    paused = getattr(request, THROTTLED_ATTR, None) if request is not None else None
    if paused:
        refusal_note(action=LOGIN_THROTTLED, reason=paused, actor_label=email or "(no email)")
        return
    if email:
        services.login_failure_record(email=email, ip=_ip(request))
    refusal_note(
        action=LOGIN_FAILED,
        reason="Wrong email or password.",
        actor_label=email or "(no email)",
    )


def on_logged_in(sender: Any, request: HttpRequest | None, user: User, **_: Any) -> None:
    """A successful login clears that email's failures (the address keeps its count)."""
    services.login_success_record(email=user.email)
