"""Who may post message events and read analytics."""

from __future__ import annotations

from portal.accounts.policies import can_read_partner_areas
from portal.core.principal import Principal


def can_ingest_message_events(principal: Principal) -> bool:
    """Only the provider's side: the messaging platform posts with a staff key."""
    return principal.is_staff


def can_read_analytics(principal: Principal) -> bool:
    """Every partner role reads analytics (domain §1: viewers included), and staff."""
    return principal.is_staff or principal.role is not None


def can_read_capacity_advice(principal: Principal) -> bool:
    """Where the reseller should add or remove lines is its own decision (domain §8.4):
    every partner role and staff read the advice, a partner's client does not."""
    return can_read_analytics(principal) and can_read_partner_areas(principal)
