"""Who may change partners and sub-accounts."""

from __future__ import annotations

from portal.accounts.policies import is_partner_writer
from portal.core.errors import Conflict
from portal.core.principal import Principal
from portal.core.roles import Role
from portal.partners.models import SubAccount, SubAccountKind, SubAccountStatus


def can_create_partner(principal: Principal) -> bool:
    return principal.is_staff


def can_change_partner_settings(principal: Principal) -> bool:
    """A partner admin, or staff acting for the partner, changes the partner's own settings
    (display name, self-service approval, default daily limit, retention days; domain §2).
    Managers, billing and viewers do not: self-service decides who approves their requests."""
    return principal.is_staff or principal.role == Role.ADMIN


def can_change_sub_accounts(principal: Principal) -> bool:
    return is_partner_writer(principal)


def ensure_editable(sub_account: SubAccount) -> None:
    """Merged and pending-deletion sub-accounts are read-only."""
    if sub_account.status != SubAccountStatus.ACTIVE:
        state = sub_account.get_status_display().lower()
        name = sub_account.display_name
        raise Conflict(f"Sub-account {name!r} is {state} and cannot be changed.")


def ensure_can_hold_lines(sub_account: SubAccount) -> None:
    """A line may enter an active sub-account (standard or the pool) that is not locked."""
    ensure_editable(sub_account)
    ensure_unlocked(sub_account)


def ensure_unlocked(sub_account: SubAccount) -> None:
    if sub_account.lock_reason:
        raise Conflict(
            f"Sub-account {sub_account.display_name!r} is locked: {sub_account.lock_reason}."
        )


def ensure_standard(sub_account: SubAccount, *, action: str) -> None:
    if sub_account.kind != SubAccountKind.STANDARD:
        raise Conflict(f"The Available pool cannot be {action}.")


def unavailable_reason(sub_account: SubAccount, action: str) -> str:
    """Why ``action`` ("edit", "merge" or "delete") cannot start on this sub-account, or "".

    The same rules the services apply on submit, asked before a form is drawn so a page
    shows the reason instead of a form that would be refused.
    """
    name = sub_account.display_name
    if sub_account.status == SubAccountStatus.MERGED:
        into = sub_account.merged_into.name if sub_account.merged_into_id else "another"
        return f"{name} was merged into {into}; it is read-only."
    if sub_account.status != SubAccountStatus.ACTIVE:
        state = sub_account.get_status_display().lower()
        return f"{name} is {state}; it is read-only."
    if action == "edit":
        return ""
    if sub_account.kind == SubAccountKind.AVAILABLE:
        verb = "merged" if action == "merge" else "deleted"
        return f"Available cannot be {verb}: it holds every line not in a sub-account."
    if sub_account.lock_reason:
        return f"{name} is locked: {sub_account.lock_reason}. Wait until it is resolved."
    return ""
