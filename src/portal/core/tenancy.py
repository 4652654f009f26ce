"""Tenant scoping in one place.

Every model that belongs to a partner carries ``partner_id`` and uses
:class:`TenantQuerySet`; reads start from ``Model.objects.visible_to(principal)``
so another partner's rows are simply not there (and answer like missing ones).

The scope is a partner, then (for a principal with ``sub_account_ids``: a partner's
client, domain §8.2) a set of its sub-accounts. A model whose rows belong to one
sub-account says through which field in ``tenant_sub_account_field`` (``"pk"`` for
SubAccount itself, ``"sub_account_id"`` for Line); a narrowed principal sees nothing of
a model that does not declare one, so a table added later is closed to clients until
someone decides what of it they may read. A model whose rows are addressed to one person
(a notification) declares that field in ``tenant_person_field`` instead: a narrowed
principal sees the rows addressed to it when it is a person (a client's user), none when
it is a key.

Services take the partner they write in from the principal
(``partners.selectors.partner_for``), never from their caller. Functions below the
services that take a bare ``partner_id`` (billing drafting, analytics rollups, jobs,
bulk SQL) are internal: their callers have scoped the partner already.
"""

from __future__ import annotations

from collections.abc import Collection
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


def person_field(model: type[models.Model]) -> str | None:
    """The field naming the person a row of ``model`` is addressed to, or None
    (``tenant_person_field`` on the model)."""
    return getattr(model, "tenant_person_field", None)


def sub_account_field(model: type[models.Model]) -> str | None:
    """The field naming the sub-account a row of ``model`` belongs to, or None when its
    rows belong to no one sub-account (``tenant_sub_account_field`` on the model)."""
    return getattr(model, "tenant_sub_account_field", None)


class TenantQuerySet(models.QuerySet):
    def visible_to(self, principal: Principal) -> Self:
        """Rows the principal may see: its partner's, or every partner's for staff acting
        for none; narrowed to ``principal.sub_account_ids`` when it has them (to its own
        rows, for a model addressed to persons)."""
        partner_id = principal.scope_partner_id
        if partner_id is None:
            if not principal.is_staff:
                return self.none()
            rows = self.all()
        else:
            rows = self.filter(partner_id=partner_id)
        if principal.sub_account_ids is None:
            return rows
        person = person_field(self.model)
        if person is not None:
            # A person's own rows (a client's inbox); a key has no person behind it.
            if principal.kind != "user" or principal.id is None:
                return rows.none()
            return rows.filter(**{person: principal.id})
        return rows.within_sub_accounts(principal.sub_account_ids)

    def within_sub_accounts(self, sub_account_ids: Collection[int]) -> Self:
        """Rows that belong to one of ``sub_account_ids``; none for a model whose rows
        belong to no one sub-account (see the module's docstring)."""
        field = sub_account_field(self.model)
        if field is None:
            return self.none()
        return self.filter(**{f"{field}__in": sorted(sub_account_ids)})

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
