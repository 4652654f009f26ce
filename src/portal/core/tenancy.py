"""Tenant scoping in one place.

Every model that belongs to a partner carries ``partner_id`` and uses
:class:`TenantQuerySet`; reads start from ``Model.objects.visible_to(principal)``
so another partner's rows are simply not there (and answer like missing ones).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from django.db import models

from portal.core.errors import NotFound

if TYPE_CHECKING:
    from portal.accounts.principal import Principal


class TenantQuerySet(models.QuerySet):
    def visible_to(self, principal: Principal) -> Self:
        """Rows the principal may see: its partner's, or every partner's for staff."""
        partner_id = principal.scope_partner_id
        if partner_id is None:
            if principal.is_staff:
                return self.all()
            return self.none()
        return self.filter(partner_id=partner_id)

    def get_visible(self, principal: Principal, pk: Any, *, what: str) -> Any:
        """The row with ``pk`` if the principal may see it; :class:`NotFound` otherwise."""
        try:
            key = int(pk)
            if not 0 < key < 2**63:
                raise ValueError(pk)
            return self.visible_to(principal).get(pk=key)
        except (ValueError, TypeError, OverflowError, self.model.DoesNotExist):
            raise NotFound(f"{what} {pk} not found.") from None


TenantManager = models.Manager.from_queryset(TenantQuerySet)
