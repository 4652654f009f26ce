"""Who may change partners and sub-accounts."""

from __future__ import annotations

from portal.accounts.policies import is_partner_writer
from portal.accounts.principal import Principal
from portal.core.errors import Conflict
from portal.partners.models import SubAccount, SubAccountKind, SubAccountStatus


def can_create_partner(principal: Principal) -> bool:
    return principal.is_staff


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
