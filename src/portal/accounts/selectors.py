"""Scoped reads of a partner's users and API keys."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count, F, QuerySet, Window
from django.db.models.functions import RowNumber

from portal.accounts.models import ApiKey, Membership
from portal.core.principal import Principal
from portal.partners.models import SubAccountStatus

# Names shown beside a client in Settings → Users; the rest are counted.
GRANT_NAMES_SHOWN = 5


def membership_list(*, principal: Principal) -> QuerySet[Membership]:
    """The users of the principal's partner with their roles, by email."""
    return (
        Membership.objects.visible_to(principal)
        .select_related("user")
        .order_by("user__email", "pk")
    )


def api_key_list(*, principal: Principal) -> QuerySet[ApiKey]:
    """The partner's API keys, newest first (staff keys are never listed here)."""
    return (
        ApiKey.objects.visible_to(principal)
        .filter(is_staff=False)
        .defer("key_hash")
        .order_by("-created_at", "-pk")
    )


def api_key_get(*, principal: Principal, key_id: int) -> ApiKey:
    return api_key_list(principal=principal).get_visible(principal, key_id, what="API key")


@dataclass(frozen=True, slots=True)
class GrantSummary:
    """A client's grant as Settings lists it: the first names (by name) and how many."""

    names: tuple[str, ...]
    count: int

    @property
    def more(self) -> int:
        return self.count - len(self.names)


def client_grants(
    *, principal: Principal, holders: Iterable[Membership | ApiKey]
) -> dict[int, GrantSummary]:
    """The grants of the clients among ``holders`` (memberships or keys of the principal's
    partner, a page of them), by holder id: one query whatever the grants' size (the
    first :data:`GRANT_NAMES_SHOWN` names of each by a window, with the count)."""
    clients = [h for h in holders if h.role == "client"]
    if not clients:
        return {}
    model = type(clients[0])
    through = model.sub_accounts.through
    owner = f"{model._meta.model_name}_id"
    own_ids = model.objects.visible_to(principal).filter(pk__in=[h.pk for h in clients])
    rows = (
        through.objects.filter(**{f"{owner}__in": own_ids})
        .exclude(subaccount__status=SubAccountStatus.DELETED)
        .annotate(
            name=F("subaccount__name"),
            rank=Window(RowNumber(), partition_by=[F(owner)], order_by=[F("subaccount__name")]),
            total=Window(Count("pk"), partition_by=[F(owner)]),
        )
        .filter(rank__lte=GRANT_NAMES_SHOWN)
        .order_by(owner, "rank")
        .values_list(owner, "name", "total")
    )
    names: dict[int, list[str]] = {h.pk: [] for h in clients}
    totals: dict[int, int] = dict.fromkeys(names, 0)
    for holder_id, name, total in rows:
        names[holder_id].append(name)
        totals[holder_id] = total
    return {pk: GrantSummary(tuple(names[pk]), totals[pk]) for pk in names}
