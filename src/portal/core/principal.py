"""Who is acting: a user, an API key, or the system (commands, tasks)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from portal.core.roles import Role

if TYPE_CHECKING:
    from portal.accounts.models import ApiKey, User


@dataclass(frozen=True, slots=True)
class Principal:
    """The acting party, as services and policies see it.

    ``partner_id`` is the partner a user or key belongs to (None for staff and the
    system). Staff may narrow their view to one partner with ``acting_partner_id``.

    ``sub_account_ids`` narrows the scope below the partner to a set of its sub-accounts
    (a partner's client, SPEC §8.2); None is the whole partner. ``TenantQuerySet.visible_to``
    applies it, the one place a scope narrows. Nothing sets it yet.
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

    @classmethod
    def for_user(cls, user: User) -> Principal:
        membership = getattr(user, "membership", None) if not user.is_staff else None
        return cls(
            kind="user",
            id=user.pk,
            label=user.email,
            partner_id=membership.partner_id if membership else None,
            role=Role(membership.role) if membership else None,
            is_staff=bool(user.is_staff),
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
        )
