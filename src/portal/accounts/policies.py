"""Named permission predicates for people and keys. Services call these."""

from __future__ import annotations

from typing import NoReturn

from portal.accounts.security import refusal_note
from portal.core.errors import Forbidden
from portal.core.principal import Principal
from portal.core.roles import Role

_WRITERS = {Role.ADMIN, Role.MANAGER}


def is_partner_writer(principal: Principal) -> bool:
    """Admins, managers and staff change sub-accounts, lines and orders."""
    return principal.is_staff or principal.role in _WRITERS


def can_read_audit(principal: Principal) -> bool:
    """Everyone but viewers reads the audit log (viewers see sub-accounts, lines, analytics)."""
    return principal.is_staff or principal.role in {Role.ADMIN, Role.MANAGER, Role.BILLING}


def can_read_partner_areas(principal: Principal) -> bool:
    """Whether the principal reads anything of the partner as a whole (orders, requests,
    settings, users, keys, billing, the audit log). A partner's client (domain §8.2) reads
    only its sub-accounts, their lines, analytics and statements: every other area
    answers it 403. Role predicates name the roles they allow, so a client already falls
    outside them; this one is for reads every partner role shares."""
    return not principal.is_client


CLIENT_REFUSAL = "A client reads only its sub-accounts, their lines, analytics and statements."


def require_partner_area(principal: Principal) -> None:
    """Refuse a partner's client (403, logged) an area of the partner as a whole."""
    require(can_read_partner_areas(principal), CLIENT_REFUSAL)


def can_manage_users(principal: Principal) -> bool:
    return principal.is_staff or principal.role == Role.ADMIN


def can_manage_inventory(principal: Principal) -> bool:
    """Importing numbers and fulfilling orders is the provider's work."""
    return principal.is_staff


def refuse(message: str = "Your role may not do this.") -> NoReturn:
    """Refuse the principal (403), noting the attempt for the security log.

    Every "your role may not" goes through here (or :func:`require`), so each refused
    attempt is logged and stored once the request ends (``portal.accounts.security``).
    """
    refusal_note(reason=message)
    raise Forbidden(message)


def require(allowed: bool, message: str = "Your role may not do this.") -> None:
    if not allowed:
        refuse(message)
