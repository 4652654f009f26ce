"""Scoped reads of client statements for people (domain §8.1): lists by period and by
sub-account, one statement with its items, and the periods that have statements.

Each read checks ``can_read_statements`` and starts from
``Statement.objects.visible_to(principal)``, so another partner's statement answers like
a missing one, and a narrower principal (issue 20's client role) narrows every read here.
A statement's status is its invoice's: ``draft`` until the invoice is finalized, then
``finalized`` (the statement itself never changes either way).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Prefetch, QuerySet, Sum

from portal.accounts.policies import require
from portal.billing.models import Statement, StatementItem
from portal.billing.policies import can_read_statements
from portal.core.errors import Invalid
from portal.core.principal import Principal

REFUSED = "Your role may not read client statements."
_PERIOD = re.compile(r"(\d{4})-(\d{2})")

# What the pages, the API and the files read of an item: its line's number joined.
ITEM_FIELDS = (
    "pk",
    "statement_id",
    "kind",
    "line_id",
    "line__number",
    "service_start",
    "service_end",
    "day",
    "days",
    "quantity",
    "unit_price",
    "amount",
    "description",
)


def parse_period(value: str | None, *, field: str = "period") -> dt.date | None:
    """A period as asked for (``2026-07``) as the 1st of its month; None when empty.
    Anything else is refused with a 422 naming ``field``."""
    if value is None or not value.strip():
        return None
    match = _PERIOD.fullmatch(value.strip())
    month = None
    if match:
        try:
            month = dt.date(int(match[1]), int(match[2]), 1)
        except ValueError:
            month = None
    if month is None:
        raise Invalid(f"{value!r} is not a month such as 2026-07.", field=field)
    return month


def statement_items(statement: Statement) -> QuerySet[StatementItem]:
    """A statement's items in the order they were issued (recurring first, then the
    prorations in the invoice's order), each with its line's number."""
    return (
        StatementItem.objects.filter(partner_id=statement.partner_id, statement=statement)
        .select_related("line")
        .only(*ITEM_FIELDS)
        .order_by("pk")
    )


def _items_prefetch() -> Prefetch:
    return Prefetch(
        "items",
        queryset=StatementItem.objects.select_related("line").only(*ITEM_FIELDS).order_by("pk"),
    )


def statement_list(
    *,
    principal: Principal,
    period: dt.date | None = None,
    sub_account_id: object = None,
    with_items: bool = False,
) -> QuerySet[Statement]:
    """Statements newest period first, by client name within a period, each with its
    invoice (for the status); ``period`` (the 1st of a month) and ``sub_account_id``
    narrow it (an id of another partner's sub-account finds nothing, like a missing one).
    ``with_items`` prefetches every statement's items in one more query."""
    require(can_read_statements(principal), REFUSED)
    qs = Statement.objects.visible_to(principal).select_related("invoice")
    if period is not None:
        qs = qs.filter(period_month=period)
    if sub_account_id is not None:
        qs = qs.filter_id("sub_account_id", sub_account_id)
    if with_items:
        qs = qs.prefetch_related(_items_prefetch())
    return qs.order_by("-period_month", "name", "pk")


def statement_get(
    *, principal: Principal, statement_id: object, with_items: bool = True
) -> Statement:
    """One statement with its invoice and (``with_items``) its items: two queries."""
    require(can_read_statements(principal), REFUSED)
    qs = Statement.objects.select_related("invoice")
    if with_items:
        qs = qs.prefetch_related(_items_prefetch())
    return qs.get_visible(principal, statement_id, what="Statement")


def statement_periods(*, principal: Principal) -> list[dt.date]:
    """The months that have statements, newest first (what the period picker offers)."""
    require(can_read_statements(principal), REFUSED)
    return list(
        Statement.objects.visible_to(principal)
        .order_by("-period_month")
        .values_list("period_month", flat=True)
        .distinct()
    )


@dataclass(frozen=True, slots=True)
class StatementSums:
    """Columns of a list of statements summed: the totals row of a period's table."""

    count: int
    line_quantity: int
    recurring: Decimal
    prorations: Decimal
    total: Decimal
    currencies: tuple[str, ...]


def statement_sums(statements: QuerySet[Statement]) -> StatementSums:
    """The sums of ``statements`` (a :func:`statement_list`), per currency: one query.
    Amounts are only summed when they share one currency (a partner's always do; staff
    reading every partner's may not), otherwise they are zero and ``currencies`` says why."""
    rows = list(
        statements.order_by()
        .values("currency")
        .annotate(
            n=Count("id"),
            lines=Sum("line_quantity"),
            recurring_sum=Sum("recurring"),
            prorations_sum=Sum("prorations"),
            total_sum=Sum("total"),
        )
        .order_by("currency")
    )
    zero = Decimal(0)
    single = rows[0] if len(rows) == 1 else None
    return StatementSums(
        count=sum(r["n"] for r in rows),
        line_quantity=sum(r["lines"] or 0 for r in rows),
        recurring=(single["recurring_sum"] or zero) if single else zero,
        prorations=(single["prorations_sum"] or zero) if single else zero,
        total=(single["total_sum"] or zero) if single else zero,
        currencies=tuple(r["currency"] for r in rows),
    )
