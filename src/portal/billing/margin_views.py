"""Billing → Margins (domain §8.1): for a period (the month of one of the partner's
invoices), each sub-account's cost (its invoice section's total) beside its resale (its
client statement's total), the margin and margin rate, sorted by any column, with the
partner's totals, and the same as CSV.

Every figure comes from :func:`portal.billing.margins.margins_for_period` (as the API's
``GET /billing/margins``), read once for the whole invoice (one query over its sections),
then sorted and paged here. Admins, billing people and staff only (403 for the others).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import urlencode

from portal.billing.margins import MarginRow, Margins, margin_periods, margins_for_period
from portal.billing.margins import parse_period as parse_margin_period
from portal.billing.money import MINUS, format_amount, quantize
from portal.billing.navigation import billing_tabs
from portal.core.downloads import csv_response
from portal.core.text import csv_safe
from portal.web.decorators import portal_view
from portal.web.sorting import Column, sort_headers

PAGE_SIZE = 100
DASH = "—"

# Sorted in Python: every row is read anyway (the totals need them all).
COLUMNS = [
    Column("name", "Sub-account", lambda r: r.name.casefold(), numeric=False),
    Column("cost", "Cost", lambda r: r.cost),
    Column("resale", "Resale", lambda r: r.resale),
    Column("margin", "Margin", lambda r: r.margin),
    Column("margin_rate", "Margin rate", lambda r: r.margin_rate),
]
_BY_KEY = {c.key: c for c in COLUMNS}


def _sort(request: HttpRequest) -> str:
    """The sort asked for (``key`` or ``-key``); "" (invoice order) when unknown."""
    sort = request.GET.get("sort", "")
    return sort if sort.removeprefix("-") in _BY_KEY else ""


def sorted_rows(rows: list[MarginRow], sort: str) -> list[MarginRow]:
    """``rows`` by ``sort``; rows with no value (a rate without resale) last either way,
    ties in invoice order."""
    if not sort:
        return list(rows)
    value: Callable[[Any], Any] = _BY_KEY[sort.removeprefix("-")].value  # type: ignore[assignment]
    present = [r for r in rows if value(r) is not None]
    missing = [r for r in rows if value(r) is None]
    present.sort(key=value, reverse=sort.startswith("-"))
    return present + missing


def percent(rate: Decimal | None) -> str:
    """A margin rate as people read it: ``37.5 %``, ``−12.0 %``; a dash without resale."""
    if rate is None:
        return DASH
    text = f"{(rate * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}\u00a0%"
    return MINUS + text[1:] if text.startswith("-") else text


def _row_view(r: MarginRow, currency: str) -> dict[str, Any]:
    return {
        "row": r,
        "cost": format_amount(r.cost, currency),
        "resale": format_amount(r.resale, currency),
        "margin": format_amount(r.margin, currency),
        "margin_rate": percent(r.margin_rate),
        "negative": r.margin < 0,
    }


def _query(period: str, sort: str) -> dict[str, str]:
    return {k: v for k, v in (("period", period), ("sort", sort)) if v}


@portal_view
def margins_page(request: HttpRequest) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    found = margins_for_period(
        principal=principal, period=parse_margin_period(request.GET.get("period"))
    )
    periods = margin_periods(principal=principal)
    sort = _sort(request)
    period = f"{found.period:%Y-%m}"
    rows = sorted_rows(found.rows, sort)
    page_obj = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    c = found.currency
    kept = _query(period, sort)
    return render(
        request,
        "billing/margins.html",
        {
            "active_section": "billing",
            "billing_tabs": billing_tabs(principal, "margins"),
            "margins": found,
            "period": found.period,
            "period_value": period,
            "periods": [(f"{p:%Y-%m}", p) for p in periods],
            "currency": c,
            "headers": sort_headers(COLUMNS, sort, {"period": period}),
            "page_obj": page_obj,
            "rows": [_row_view(r, c) for r in page_obj],
            "totals": {
                "cost": format_amount(found.cost, c),
                "resale": format_amount(found.resale, c),
                "margin": format_amount(found.margin, c),
                "margin_rate": percent(found.margin_rate),
                "negative": found.margin < 0,
            },
            "sort": sort,
            "csv_query": urlencode(kept),
            "query_prefix": urlencode(kept) + "&",
        },
    )


CSV_HEADER = [
    "period",
    "sub_account_id",
    "sub_account",
    "kind",
    "cost",
    "resale",
    "margin",
    "margin_rate",
    "currency",
]


def margins_csv_rows(found: Margins, rows: list[MarginRow]) -> list[list[str]]:
    """The CSV rows (header first): amounts as plain numbers (``-25.00``), the rate as a
    ratio (``0.3750``, empty without resale), names made formula-safe."""
    c = found.currency

    def plain(amount: Decimal) -> str:
        return f"{quantize(amount, c):f}"

    out = [CSV_HEADER]
    for r in rows:
        out.append(
            [
                f"{found.period:%Y-%m}",
                "" if r.sub_account_id is None else str(r.sub_account_id),
                csv_safe(r.name),
                r.kind,
                plain(r.cost),
                plain(r.resale),
                plain(r.margin),
                "" if r.margin_rate is None else f"{r.margin_rate:f}",
                c,
            ]
        )
    return out


@portal_view
def margins_csv(request: HttpRequest) -> HttpResponse:
    """Every row of the page's period, in the page's order."""
    principal = request.principal  # type: ignore[attr-defined]
    found = margins_for_period(
        principal=principal, period=parse_margin_period(request.GET.get("period"))
    )
    return csv_response(
        f"margins-{found.period:%Y-%m}.csv",
        margins_csv_rows(found, sorted_rows(found.rows, _sort(request))),
    )
