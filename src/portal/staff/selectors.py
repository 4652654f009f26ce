"""Reads across every partner, for provider staff only."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import (
    Count,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, Lower

from portal.core.errors import NotFound
from portal.core.principal import Principal
from portal.core.text import can_be_stored
from portal.lines.models import (
    OPEN_ORDER_STATUSES,
    InventoryNumber,
    InventoryStatus,
    LineOrder,
)
from portal.partners.models import Partner, SubAccount, SubAccountKind, SubAccountStatus


def require_staff(principal: Principal) -> None:
    """Staff pages answer like missing pages to everyone else."""
    if not principal.is_staff:
        raise NotFound("Page not found.")


def _per_partner(qs: QuerySet, total: Count | Sum) -> Coalesce:
    """A correlated subquery: one number per partner row (0 when it has none)."""
    return Coalesce(
        Subquery(
            qs.filter(partner=OuterRef("pk")).values("partner").annotate(n=total).values("n")[:1],
            output_field=IntegerField(),
        ),
        Value(0),
    )


def partner_list(*, principal: Principal, search: str | None = None) -> QuerySet[Partner]:
    """Every partner by name, with its active lines, sub-accounts and open line orders.

    Line totals add up the sub-accounts' maintained ``line_count`` (the pool included),
    so the page never counts lines.
    """
    require_staff(principal)
    qs = Partner.objects.annotate(
        line_total=_per_partner(SubAccount.objects.all(), Sum("line_count")),
        sub_account_total=_per_partner(
            SubAccount.objects.filter(kind=SubAccountKind.STANDARD, status=SubAccountStatus.ACTIVE),
            Count("pk"),
        ),
        open_order_total=_per_partner(
            LineOrder.objects.filter(status__in=OPEN_ORDER_STATUSES), Count("pk")
        ),
    )
    if search:
        term = search.strip()
        if not can_be_stored(term):
            return qs.none()
        qs = qs.filter(Q(name__icontains=term) | Q(slug__icontains=term))
    return qs.order_by(Lower("name"), "pk")


def open_line_orders(*, principal: Principal) -> QuerySet[LineOrder]:
    """Every partner's orders still waiting for numbers, oldest first (the fulfilment order)."""
    require_staff(principal)
    return (
        LineOrder.objects.filter(status__in=OPEN_ORDER_STATUSES)
        .select_related("partner")
        .annotate(waiting=F("quantity") - F("fulfilled_count"))
        .order_by("created_at", "pk")
    )


@dataclass(frozen=True, slots=True)
class AreaCodeStock:
    area_code: str  # "" for orders that take any area code
    in_stock: int
    waiting: int


def stock_by_area_code(*, principal: Principal) -> list[AreaCodeStock]:
    """Numbers in stock and lines still wanted, per area code (two grouped queries)."""
    require_staff(principal)
    stock = dict(
        InventoryNumber.objects.filter(status=InventoryStatus.IN_STOCK)
        .values("area_code")
        .annotate(n=Count("pk"))
        .values_list("area_code", "n")
    )
    waiting = dict(
        LineOrder.objects.filter(status__in=OPEN_ORDER_STATUSES)
        .values("area_code")
        .annotate(n=Sum(F("quantity") - F("fulfilled_count")))
        .values_list("area_code", "n")
    )
    codes = sorted(set(stock) | set(waiting), key=lambda c: (c == "", c))
    return [AreaCodeStock(c, stock.get(c, 0), waiting.get(c) or 0) for c in codes]
