"""Who may manage webhooks: a partner admin, or staff acting for the partner (domain §8.3)."""

from __future__ import annotations

from portal.core.errors import Conflict
from portal.core.principal import Principal
from portal.core.roles import Role
from portal.webhooks.models import WebhookEndpoint


def can_manage_webhooks(principal: Principal) -> bool:
    """Endpoints send the partner's events to its own systems and hold their secrets:
    admins only, for reading too (managers, billing and viewers get 403)."""
    return principal.is_staff or principal.role == Role.ADMIN


def ensure_enabled(endpoint: WebhookEndpoint, doing: str) -> None:
    """A disabled endpoint gets no deliveries: refuse what would only wait (409)."""
    if not endpoint.enabled:
        raise Conflict(f"This endpoint is disabled: enable it to {doing}.")
