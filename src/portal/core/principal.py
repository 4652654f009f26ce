"""Who is acting: a user, an API key, or the system (commands, tasks)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from portal.core.roles import Role

if TYPE_CHECKING:
    from portal.accounts.models import ApiKey, User


@dataclass(frozen=True, slots=True)
class Principal:
    """The acting party, as services and policies see it.

    ``partner_id`` is the partner a user or key belongs to (None for staff and the
    system). Staff may narrow their view to one partner with ``acting_partner_id``.

    ``sub_account_ids`` narrows the scope below the partner to a set of its sub-accounts
    (a partner's client, domain §8.2); None is the whole partner. ``TenantQuerySet.visible_to``
    applies it, the one place a scope narrows. A client's grant sets it (an empty set:
    a client that sees nothing).
    """

    kind: str  # "user", "api_key" or "system"
    id: int | None
    label: str
    partner_id: int | None
    role: Role | None
    is_staff: bool = False
    acting_partner_id: int | None = None
    sub_account_ids: frozenset[int] | None = None

    @property
    def scope_partner_id(self) -> int | None:
        """The partner this principal acts in: its own, or the one staff act for."""
        return self.partner_id if self.partner_id is not None else self.acting_partner_id

    @property
    def role_name(self) -> str:
        return "staff" if self.is_staff else (self.role.value if self.role else "none")

    def acting_for(self, partner_id: int | None) -> Principal:
        """A staff principal narrowed to one partner (partners' principals are unchanged)."""
        if not self.is_staff:
            return self
        return replace(self, acting_partner_id=partner_id)

    @classmethod
    def system(cls, label: str = "system") -> Principal:
        return cls(kind="system", id=None, label=label, partner_id=None, role=None, is_staff=True)

    @property
    def is_client(self) -> bool:
        """A partner's client (domain §8.2): its scope is its granted sub-accounts."""
        return self.role == Role.CLIENT

    @classmethod
    def for_user(cls, user: User) -> Principal:
        membership = getattr(user, "membership", None) if not user.is_staff else None
        role = Role(membership.role) if membership else None
        return cls(
            kind="user",
            id=user.pk,
            label=user.email,
            partner_id=membership.partner_id if membership else None,
            role=role,
            is_staff=bool(user.is_staff),
            sub_account_ids=_granted(membership) if role == Role.CLIENT else None,
        )

    @classmethod
    def for_api_key(cls, key: ApiKey) -> Principal:
        return cls(
            kind="api_key",
            id=key.pk,
            label=f"key:{key.prefix} ({key.name})",
            partner_id=key.partner_id,
            role=Role(key.role) if key.role else None,
            is_staff=key.is_staff,
            sub_account_ids=_granted(key) if key.role == Role.CLIENT else None,
        )


def _granted(holder: Any) -> frozenset[int]:
    """A client's granted sub-account ids (one query): a membership's or a key's.

    A merged or pending-deletion sub-account stays in the scope as history (domain §8.2);
    a purged one (``deleted``) leaves it. A merge grants nothing of its target."""
    from portal.partners.models import SubAccountStatus

    granted = holder.sub_accounts.exclude(status=SubAccountStatus.DELETED)
    return frozenset(granted.values_list("pk", flat=True))
