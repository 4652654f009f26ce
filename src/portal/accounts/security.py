"""Refused requests, logged and kept: the security log.

Whoever refuses a request notes why (:func:`refusal_note`): ``policies.require`` when
a role may not do something (403), the bearer authentication when a key is unknown
or revoked (401), the CSRF failure view, the login throttle's receivers when a login
fails or is refused while paused (``portal.accounts.backends``, every login form).
:class:`SecurityEventMiddleware` then, once the response exists (so after the refused
transaction has rolled back), writes one line to the ``portal.security`` logger and one
:class:`~portal.accounts.models.SecurityEvent` row per refusal. A 401 or 403 answer that
nobody explained (no ``Authorization`` header at all, a replayed refusal) is recorded
too, with the status as its reason.

Refusals are not audit events: the audit log records changes, in their transaction,
and partners read it; a refusal changes nothing and would be rolled back with the
transaction that refused it.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views import csrf

from portal.core import clock
from portal.core.context import current
from portal.core.principal import Principal

logger = logging.getLogger("portal.security")

AUTHN_FAILED = "authn.failed"
AUTHZ_REFUSED = "authz.refused"
CSRF_REFUSED = "csrf.refused"
LOGIN_FAILED = "login.failed"  # a wrong email or password, on any login form
LOGIN_THROTTLED = "login.throttled"  # an attempt refused while its email or address is paused
# More refusals than this in one request are counted, not each recorded.
MAX_PER_REQUEST = 5


@dataclass(frozen=True, slots=True)
class Refusal:
    action: str
    reason: str
    principal: Principal | None = None
    actor_label: str = ""  # who, when no principal is known (e.g. "key:3f2a…")


_pending: contextvars.ContextVar[list[Refusal] | None] = contextvars.ContextVar(
    "portal_security_refusals", default=None
)


def refusal_note(
    *,
    reason: str,
    action: str = AUTHZ_REFUSED,
    principal: Principal | None = None,
    actor_label: str = "",
) -> None:
    """Remember that the current request is being refused, and why.

    Outside a web request (a command, a task) there is no response to wait for: the
    refusal is logged at once and not stored.
    """
    refusal = Refusal(
        action=action, reason=str(reason), principal=principal, actor_label=actor_label
    )
    pending = _pending.get()
    if pending is None:
        _log(_fields(refusal, request=None, status=None))
    else:
        pending.append(refusal)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Django's CSRF failure page, with the refusal noted for the security log."""
    refusal_note(action=CSRF_REFUSED, reason=f"CSRF check failed: {reason}")
    return csrf.csrf_failure(request, reason=reason)


class SecurityEventMiddleware:
    """Collect the refusals noted while a request runs; log and store them at the end."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        pending: list[Refusal] = []
        token = _pending.set(pending)
        try:
            response = self.get_response(request)
        finally:
            _pending.reset(token)
        status = response.status_code
        if not pending and status in (401, 403):
            pending.append(_unexplained(request, status))
        if pending:
            _record(request, status, pending)
        return response


def _unexplained(request: HttpRequest, status: int) -> Refusal:
    if status == 401:
        has_header = bool(request.headers.get("Authorization"))
        reason = "Unusable Authorization header." if has_header else "No API key."
        return Refusal(action=AUTHN_FAILED, reason=reason)
    return Refusal(action=AUTHZ_REFUSED, reason=f"Answered {status} without a noted reason.")


def _actor(request: HttpRequest | None, refusal: Refusal) -> Principal | None:
    if refusal.principal is not None:
        return refusal.principal
    if request is None:
        return None
    principal = getattr(request, "principal", None)
    if isinstance(principal, Principal):
        return principal
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return Principal.for_user(user)
    return None


def _fields(refusal: Refusal, *, request: HttpRequest | None, status: int | None) -> dict[str, Any]:
    actor = _actor(request, refusal)
    unknown = "anonymous" if request is not None else "(outside a web request)"
    ctx = current()
    return {
        "at": clock.now(),
        "action": refusal.action,
        "status": status or 0,
        "actor_type": actor.kind if actor else "anonymous",
        "actor_id": actor.id if actor else None,
        "actor_label": (actor.label if actor else refusal.actor_label or unknown)[:200],
        "partner_id": actor.scope_partner_id if actor else None,
        "method": (request.method or "")[:16] if request is not None else "",
        "path": request.path[:500] if request is not None else "",
        "reason": refusal.reason[:500],
        "request_id": ctx.request_id,
        "ip": ctx.ip,
    }


def _log(fields: dict[str, Any]) -> None:
    # %r keeps a path or reason holding line breaks on one log line.
    logger.warning(
        "%s status=%s actor=%r partner=%s %s %r reason=%r request_id=%s ip=%s",
        fields["action"],
        fields["status"],
        fields["actor_label"],
        fields["partner_id"],
        fields["method"],
        fields["path"],
        fields["reason"],
        fields["request_id"],
        fields["ip"],
        extra={"security_event": fields},
    )


def _record(request: HttpRequest, status: int, refusals: list[Refusal]) -> None:
    from portal.accounts.services import security_events_record

    rows = [_fields(r, request=request, status=status) for r in refusals[:MAX_PER_REQUEST]]
    if len(refusals) > MAX_PER_REQUEST:
        rows[-1]["reason"] = f"{rows[-1]['reason']} (+{len(refusals) - MAX_PER_REQUEST} more)"[:500]
    for fields in rows:
        _log(fields)
    security_events_record(rows=rows)
