"""Who may post message events and read analytics."""

from __future__ import annotations

from portal.core.principal import Principal


def can_ingest_message_events(principal: Principal) -> bool:
    """Only the provider's side: the messaging platform posts with a staff key."""
    return principal.is_staff


def can_read_analytics(principal: Principal) -> bool:
    """Every partner role reads analytics (domain §1: viewers included), and staff."""
    return principal.is_staff or principal.role is not None
