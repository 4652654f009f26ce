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
    from portal.core.principal import Principal


MAX_DB_ID = 2**63 - 1


def db_id(value: Any) -> int | None:
    """``value`` as a row id that fits a 64-bit key column, or None when it cannot name a row.

    Used before filtering so huge ids (2**70) read as "no such row" instead of
    overflowing the database driver.
    """
    if isinstance(value, bool):
        return None
    try:
        key = int(value)
    except (ValueError, TypeError, OverflowError):
        return None
    return key if 0 < key <= MAX_DB_ID else None


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
        key = db_id(pk)
        try:
            if key is None:
                raise self.model.DoesNotExist
            return self.visible_to(principal).get(pk=key)
        except self.model.DoesNotExist:
            raise NotFound(f"{what} {pk} not found.") from None

    def filter_id(self, field: str, value: Any) -> Self:
        """Rows whose ``field`` equals the id ``value``; none when it cannot be an id."""
        key = db_id(value)
        return self.none() if key is None else self.filter(**{field: key})


TenantManager = models.Manager.from_queryset(TenantQuerySet)
