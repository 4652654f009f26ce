"""Who may change lines and orders."""

from __future__ import annotations

from portal.accounts.policies import is_partner_writer
from portal.core.principal import Principal
from portal.lines.models import LineOrder


def can_change_lines(principal: Principal) -> bool:
    return is_partner_writer(principal)


def can_order_lines(principal: Principal) -> bool:
    return is_partner_writer(principal)


def can_cancel_order(principal: Principal, order: LineOrder) -> bool:
    """Staff cancel any open order; partner writers only one with nothing fulfilled."""
    if principal.is_staff:
        return True
    return is_partner_writer(principal) and order.fulfilled_count == 0
