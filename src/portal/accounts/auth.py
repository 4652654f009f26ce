"""Bearer API keys for the REST API."""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer

from portal.accounts.policies import refuse
from portal.accounts.security import AUTHN_FAILED, refusal_note
from portal.accounts.services import api_key_authenticate
from portal.core.principal import Principal
from portal.partners.selectors import partner_by_slug

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiKeyAuth(HttpBearer):
    """Authenticates ``Authorization: Bearer rpp_…``; the principal lands in ``request.auth``.

    A staff key may add ``?partner=<slug>`` to act on one partner's objects. A client key
    reads only: any other method answers 403 before the operation runs.
    """

    def authenticate(self, request: HttpRequest, token: str) -> Principal | None:
        key = api_key_authenticate(token)
        if key is None:
            refusal_note(
                action=AUTHN_FAILED,
                reason="Unknown or revoked API key.",
                actor_label=_key_label(token),
            )
            return None
        principal = Principal.for_api_key(key)
        if principal.is_client and request.method not in SAFE_METHODS:
            # Clients change nothing (domain §8.2): every service refuses them too, but no
            # write reaches one, so an object named in its path cannot be told from none.
            refuse("A client changes nothing.")
        slug = request.GET.get("partner")
        if principal.is_staff and slug:
            principal = principal.acting_for(partner_by_slug(slug).pk)
        request.principal = principal  # type: ignore[attr-defined]
        return principal


def _key_label(token: str) -> str:
    """The public prefix of a presented key, for the security log; never the secret."""
    parts = token.split("_")
    if len(parts) >= 3 and parts[0] == "rpp" and parts[1].isalnum() and len(parts[1]) <= 16:
        return f"key:{parts[1]}"
    return "key:(malformed)"
