"""Who may read alerts and change alert rules (domain §8.4)."""

from __future__ import annotations

from portal.accounts.policies import is_partner_writer
from portal.core.principal import Principal
from portal.core.roles import Role

# Named, not "any partner role": a role added later (a reseller's client) reads no
# partner-wide alerts unless it is added here.
_READERS = {Role.ADMIN, Role.MANAGER, Role.BILLING, Role.VIEWER}


def can_read_alerts(principal: Principal) -> bool:
    """Everyone who reads the partner's analytics reads its rules and alerts, and staff."""
    return principal.is_staff or principal.role in _READERS


def can_manage_alert_rules(principal: Principal) -> bool:
    """Admins and managers (and staff acting for the partner) add, change and delete rules."""
    return is_partner_writer(principal)
