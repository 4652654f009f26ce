"""Bearer API keys for the REST API."""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer

from portal.accounts.principal import Principal
from portal.accounts.services import api_key_authenticate
from portal.partners.selectors import partner_by_slug


class ApiKeyAuth(HttpBearer):
    """Authenticates ``Authorization: Bearer rpp_…``; the principal lands in ``request.auth``.

    A staff key may add ``?partner=<slug>`` to act on one partner's objects.
    """

    def authenticate(self, request: HttpRequest, token: str) -> Principal | None:
        key = api_key_authenticate(token)
        if key is None:
            return None
        principal = Principal.for_api_key(key)
        slug = request.GET.get("partner")
        if principal.is_staff and slug:
            principal = principal.acting_for(partner_by_slug(slug).pk)
        request.principal = principal  # type: ignore[attr-defined]
        return principal
