"""The principal behind a browser session."""

from __future__ import annotations

from django.http import HttpRequest

from portal.accounts.principal import Principal

ACTING_PARTNER_SESSION_KEY = "acting_partner_id"


def principal_for(request: HttpRequest) -> Principal:
    """The logged-in user as a Principal; staff narrowed to the partner they chose."""
    cached = getattr(request, "_portal_principal", None)
    if cached is not None:
        return cached
    principal = Principal.for_user(request.user)  # type: ignore[arg-type]
    if principal.is_staff:
        principal = principal.acting_for(request.session.get(ACTING_PARTNER_SESSION_KEY))
    request._portal_principal = principal  # type: ignore[attr-defined]
    return principal
