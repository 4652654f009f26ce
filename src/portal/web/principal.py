"""The principal behind a browser session."""

from __future__ import annotations

from django.http import HttpRequest

from portal.core.principal import Principal
from portal.partners.models import Partner

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


def partner_for(request: HttpRequest) -> Partner | None:
    """The partner the session acts for (names, slug and timezone only), or None; one
    query per request, shared by the timezone activation and the page frame."""
    if hasattr(request, "_portal_partner"):
        return request._portal_partner  # type: ignore[attr-defined]
    partner_id = principal_for(request).scope_partner_id
    partner = None
    if partner_id is not None:
        partner = (
            Partner.objects.filter(pk=partner_id)
            .only("name", "display_name", "slug", "timezone")
            .first()
        )
    request._portal_partner = partner  # type: ignore[attr-defined]
    return partner
