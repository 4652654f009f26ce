"""Who may see and run billing (domain §1)."""

from __future__ import annotations

from portal.core.principal import Principal
from portal.core.roles import Role


def can_read_invoices(principal: Principal) -> bool:
    """Admins and billing people read invoices; managers and viewers do not."""
    return principal.is_staff or principal.role in {Role.ADMIN, Role.BILLING}


def can_read_billing_summary(principal: Principal) -> bool:
    """Managers see what their sub-accounts cost, without the invoices themselves."""
    return principal.is_staff or principal.role in {Role.ADMIN, Role.MANAGER, Role.BILLING}


def can_issue_invoices(principal: Principal) -> bool:
    """Billing runs as the provider: staff, the worker and the ``runbilling`` command."""
    return principal.is_staff


def can_finalize_invoices(principal: Principal) -> bool:
    return principal.is_staff


def can_grant_adjustments(principal: Principal) -> bool:
    """Discounts and credits are the provider's commercial decisions (domain §1: staff)."""
    return principal.is_staff


def can_read_adjustments(principal: Principal) -> bool:
    """Whoever reads invoices may see the discounts and credits behind them (read-only)."""
    return can_read_invoices(principal)


def can_change_billing_settings(principal: Principal) -> bool:
    """Price and billing policies are set by the provider, never by the partner."""
    return principal.is_staff


def can_set_resale_prices(principal: Principal) -> bool:
    """What the partner charges its clients is its own decision: its admins and billing
    people set it (domain §8.1), and staff acting for the partner may help."""
    return principal.is_staff or principal.role in {Role.ADMIN, Role.BILLING}


def can_read_statements(principal: Principal) -> bool:
    """Client statements: whoever reads invoices, and a partner's client (domain §8.2),
    whose scope (``visible_to``) narrows them to its own sub-accounts' statements."""
    return can_read_invoices(principal) or principal.is_client


def can_read_resale_prices(principal: Principal) -> bool:
    """The partner's resale price list (every client's price): whoever reads invoices;
    a client reads its own prices only as they stand on its statements."""
    return can_read_invoices(principal)


def can_read_margins(principal: Principal) -> bool:
    """Margins put the provider's cost beside the resale: admins and billing only."""
    return can_read_invoices(principal)
