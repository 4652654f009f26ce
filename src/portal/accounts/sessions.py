"""Browser sessions: the session engine, their idle and absolute timeouts, and ending them.

This module is the ``SESSION_ENGINE``: sessions are Django's database sessions stored
in :class:`~portal.accounts.models.UserSession`, which also records the logged-in
user so that all of a user's sessions can be ended at once (deactivation).

:class:`SessionLifetimeMiddleware` logs a session out after
``SESSION_IDLE_TIMEOUT`` seconds without a request, and ``SESSION_ABSOLUTE_TIMEOUT``
seconds after the login whatever the activity. Times come from ``core.clock`` and are
kept in the session itself (login time set at login, last-seen time refreshed at most
once a minute, so an active user costs one session write a minute, not one a request).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import SESSION_KEY, logout
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.http import HttpRequest, HttpResponse

from portal.core import clock

LOGIN_AT_KEY = "_portal_login_at"
SEEN_AT_KEY = "_portal_seen_at"
# The last-seen time is rewritten only when it is at least this old (seconds).
SEEN_AT_RESOLUTION = 60


class SessionStore(DatabaseSessionStore):
    """Database sessions that remember which user they belong to."""

    @classmethod
    def get_model_class(cls) -> type:
        from portal.accounts.models import UserSession

        return UserSession

    def create_model_instance(self, data: dict[str, Any]) -> Any:
        obj = super().create_model_instance(data)
        obj.user_id = _user_id(data.get(SESSION_KEY))
        return obj


def _user_id(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _timestamp() -> int:
    return int(clock.now().timestamp())


def session_start(session: Any) -> None:
    """Mark ``session`` as logged in now (connected to ``user_logged_in``)."""
    now = _timestamp()
    session[LOGIN_AT_KEY] = now
    session[SEEN_AT_KEY] = now


def on_user_logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        session_start(request.session)


def sessions_end_for_user(user_id: int) -> int:
    """Delete every session of ``user_id`` (all devices); returns how many ended.

    Runs inside the caller's transaction: a deactivation that rolls back ends nothing.
    """
    from portal.accounts.models import UserSession

    deleted, _ = UserSession.objects.filter(user_id=user_id).delete()
    return deleted


def session_expiry(session: Any, now: int) -> str | None:
    """Why a logged-in session has ended by ``now`` ("idle" or "absolute"), or None.

    A session without a login time (made before these timeouts existed) has ended.
    A clock earlier than the recorded times (tests pinning the past) ends nothing.
    """
    login_at = session.get(LOGIN_AT_KEY)
    if not isinstance(login_at, int):
        return "absolute"
    seen_at = session.get(SEEN_AT_KEY, login_at)
    if now - login_at > settings.SESSION_ABSOLUTE_TIMEOUT:
        return "absolute"
    if isinstance(seen_at, int) and now - seen_at > settings.SESSION_IDLE_TIMEOUT:
        return "idle"
    return None


def _minutes(seconds: int) -> str:
    minutes = seconds // 60
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


class SessionLifetimeMiddleware:
    """Log out sessions that were idle too long or began too long ago."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        # Only sessions someone logged in with; API requests carry no session cookie.
        if SESSION_KEY in session:
            now = _timestamp()
            ended = session_expiry(session, now)
            if ended is not None:
                logout(request)  # flushes: the old session key no longer exists
                if ended == "idle":
                    text = (
                        "You were logged out after "
                        f"{_minutes(settings.SESSION_IDLE_TIMEOUT)} without activity."
                    )
                else:
                    text = (
                        f"Your session ended {_minutes(settings.SESSION_ABSOLUTE_TIMEOUT)} "
                        "after you logged in."
                    )
                messages.info(request, f"{text} Please log in again.")
            elif now - session.get(SEEN_AT_KEY, 0) >= SEEN_AT_RESOLUTION:
                session[SEEN_AT_KEY] = now
        return self.get_response(request)
