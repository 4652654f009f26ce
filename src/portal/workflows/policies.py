"""Who may request, decide, cancel and restore merge and deletion requests (domain §1, §5)."""

from __future__ import annotations

from portal.accounts.policies import is_partner_writer, refuse
from portal.core.principal import Principal
from portal.core.roles import Role
from portal.partners.models import Partner
from portal.workflows.models import RequestBase


def can_read_requests(principal: Principal) -> bool:
    """Admins, managers and billing read requests; viewers see no requests."""
    return principal.is_staff or principal.role in {Role.ADMIN, Role.MANAGER, Role.BILLING}


def can_make_requests(principal: Principal) -> bool:
    """Admins and managers request merges and deletions (staff may, for a partner)."""
    return is_partner_writer(principal)


def can_cancel_request(principal: Principal) -> bool:
    return is_partner_writer(principal)


def can_restore(principal: Principal) -> bool:
    """Staff or a partner admin restores a scheduled deletion."""
    return principal.is_staff or principal.role == Role.ADMIN


def is_requester(principal: Principal, request: RequestBase) -> bool:
    return (
        request.requested_by_type == principal.kind
        and request.requested_by_id is not None
        and request.requested_by_id == principal.id
    )


def can_decide(principal: Principal, request: RequestBase, partner: Partner) -> bool:
    """Staff always; a partner admin when self-service is on and they did not ask."""
    if principal.is_staff:
        return True
    return (
        principal.role == Role.ADMIN
        and partner.self_service_requests
        and not is_requester(principal, request)
    )


def require_can_decide(principal: Principal, request: RequestBase, partner: Partner) -> None:
    """Refuse (403, logged) with the reason a person can act on."""
    if can_decide(principal, request, partner):
        return
    if principal.role == Role.ADMIN and partner.self_service_requests:
        refuse("Another admin must approve or reject this request: you made it.")
    if principal.role == Role.ADMIN:
        refuse(
            "Your partner's requests are approved by the provider's staff "
            "(self-service approval is off)."
        )
    refuse("Your role may not approve or reject requests.")
