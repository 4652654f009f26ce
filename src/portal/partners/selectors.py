"""Scoped reads of partners and sub-accounts."""

from __future__ import annotations

from collections.abc import Collection

from django.db.models import QuerySet
from django.db.models.functions import Lower

from portal.core.errors import BadRequest, NotFound
from portal.core.principal import Principal
from portal.core.text import can_be_stored
from portal.partners.models import Partner, SubAccount, SubAccountKind, SubAccountStatus


def partner_for(principal: Principal, *, lock: bool = False) -> Partner:
    """The partner a principal acts in: its own, or the one staff act for
    (``principal.acting_for(partner_id)``; an API staff key's ``?partner=``).

    The one way a service learns the partner it writes in: from the principal, never
    from its caller, so no argument aims a service at another partner. ``lock`` takes
    the partner's row ``FOR NO KEY UPDATE`` (second in the lock order of
    docs/architecture.md). 400 when the principal acts in no partner.
    """
    partner_id = principal.scope_partner_id
    if partner_id is None:
        if principal.is_staff:
            raise BadRequest("Staff must name the partner to act on (the 'partner' parameter).")
        raise BadRequest("This login belongs to no partner.")
    rows = Partner.objects.select_for_update(no_key=True) if lock else Partner.objects
    try:
        return rows.get(pk=partner_id)
    except Partner.DoesNotExist:
        raise NotFound(f"Partner {partner_id} not found.") from None


def partner_by_slug(slug: str) -> Partner:
    try:
        if not can_be_stored(slug):
            raise Partner.DoesNotExist
        return Partner.objects.get(slug=slug)
    except Partner.DoesNotExist:
        raise NotFound(f"Partner {slug!r} not found.") from None


def available_pool(partner_id: int) -> SubAccount:
    """The partner's Available pool. Internal: callers have scoped ``partner_id``."""
    return SubAccount.objects.get(partner_id=partner_id, kind=SubAccountKind.AVAILABLE)


def sub_account_list(
    *,
    principal: Principal,
    search: str | None = None,
    status: str | None = None,
    statuses: Collection[str] | None = None,
) -> QuerySet[SubAccount]:
    """Sub-accounts the principal sees, Available first.

    Without ``status`` (one, checked: the API's filter) or ``statuses`` (several, the
    page's own choices) the default list hides pending-deletion and purged ones.
    """
    qs = SubAccount.objects.visible_to(principal)
    if statuses is not None:
        qs = qs.filter(status__in=list(statuses))
    elif status:
        if status not in SubAccountStatus.values:
            raise BadRequest(
                f"Unknown status {status!r}; use one of {', '.join(SubAccountStatus.values)}."
            )
        qs = qs.filter(status=status)
    else:
        qs = qs.filter(status__in=[SubAccountStatus.ACTIVE, SubAccountStatus.MERGED])
    if search:
        term = search.strip()
        qs = qs.filter(name__icontains=term) if can_be_stored(term) else qs.none()
    return qs.listed_order()


def sub_account_get(*, principal: Principal, sub_account_id: int) -> SubAccount:
    return SubAccount.objects.get_visible(principal, sub_account_id, what="Sub-account")


def sub_account_name_taken(partner_id: int, name: str, *, exclude_id: int | None = None) -> bool:
    """Whether ``name`` clashes, ignoring case, with a sub-account that is not purged.
    Internal: the services that call it took ``partner_id`` from the principal.

    Compares ``Lower("name")``, the expression of the unique index, so the answer is
    the database's own on SQLite and PostgreSQL alike. "Available" is always taken.
    A name no sub-account can hold (a NUL, PostgreSQL refuses it) clashes with none.
    """
    if name.strip().lower() == "available":
        return True
    if not can_be_stored(name):
        return False
    clash = (
        SubAccount.objects.filter(partner_id=partner_id)
        .annotate(lower_name=Lower("name"))
        .filter(lower_name=name.strip().lower())
        .exclude(status=SubAccountStatus.DELETED)
    )
    if exclude_id is not None:
        clash = clash.exclude(pk=exclude_id)
    return clash.exists()
