"""Billing → Statements: the client statements by period and by sub-account, one
statement with its charges, and its PDF and CSV (domain §8.1).

Every figure comes from the selectors the REST API uses (``statement_selectors``) and
the files from ``statement_exports``; these views only format them for people. Admins and
billing people (and staff acting for the partner) open them under Billing; a partner's
client (domain §8.2) opens its own sub-accounts' under Statements, the scope narrowed by
``visible_to``; other roles get 403, and Billing's sub-navigation does not offer them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal.accounts.policies import require
from portal.billing.money import format_amount
from portal.billing.navigation import billing_tabs
from portal.billing.policies import can_read_statements
from portal.billing.statement_exports import (
    charge_label,
    client_lines,
    statement_csv_response,
    statement_notes,
    statement_pdf_response,
    statement_period,
)
from portal.billing.statement_selectors import (
    REFUSED,
    parse_period,
    statement_get,
    statement_items,
    statement_list,
    statement_periods,
    statement_sums,
)
from portal.core.errors import NotFound
from portal.core.phone import display_number_fast
from portal.core.principal import Principal
from portal.partners.choices import resolve_sub_account, sub_account_choices, suggest
from portal.partners.models import SubAccount
from portal.web.decorators import portal_view

PAGE_SIZE = 50
ITEM_PAGE_SIZE = 100
ALL = "all"
OPTIONS_ID = "filter-sub-account-options"


class StatementFilterForm(forms.Form):
    """Period and Sub-account: the two ways to look statements up."""

    period = forms.ChoiceField(label="Period", required=False)
    sub_account = forms.CharField(label="Sub-account", required=False, max_length=300)


def _filter_form(
    data: dict[str, str], principal: Principal, periods: list[dt.date], chosen: dt.date | None
) -> StatementFilterForm:
    form = StatementFilterForm(data)
    months = list(periods)
    if chosen is not None and chosen not in months:
        months = sorted([*months, chosen], reverse=True)  # asked for by address: keep it
    form.fields["period"].choices = [(ALL, "All periods")] + [
        (f"{m:%Y-%m}", f"{m:%B %Y}") for m in months
    ]
    choices = sub_account_choices(principal, include_pool=False, active_only=False)
    if choices is not None:
        form.fields["sub_account"] = forms.ChoiceField(
            label="Sub-account", required=False, choices=[("", "All sub-accounts"), *choices[1:]]
        )
    else:
        suggest(form.fields["sub_account"], OPTIONS_ID)
    return form


def _chosen_sub_account(principal: Principal, value: str) -> SubAccount | None:
    """The sub-account the filter names (an id from the select or the workspace's link,
    or a name typed): one of the principal's own, else 404 like a missing one."""
    if not value:
        return None
    pk = value if value.isdigit() else resolve_sub_account(principal, value)
    return SubAccount.objects.get_visible(principal, pk, what="Sub-account")


def _section(principal: Principal) -> str:
    """The navigation these pages are under: Billing, or a client's own Statements."""
    return "statements" if principal.is_client else "billing"


def _row(statement: Any) -> dict[str, Any]:
    c = statement.currency
    return {
        "statement": statement,
        "status": statement.invoice.status,
        "status_label": statement.invoice.get_status_display(),
        "recurring": format_amount(statement.recurring, c),
        "prorations": format_amount(statement.prorations, c),
        "total": format_amount(statement.total, c),
    }


@portal_view
def statement_list_page(request: HttpRequest) -> HttpResponse:
    """One period's statements (the latest by default) or one sub-account's (every
    period, or one), a page at a time, with their totals. A fixed number of queries
    whatever the partner's size."""
    principal = request.principal  # type: ignore[attr-defined]
    require(can_read_statements(principal), REFUSED)
    periods = statement_periods(principal=principal)
    raw_period = (request.GET.get("period") or "").strip()
    raw_sub = (request.GET.get("sub_account") or "").strip()
    period = None if raw_period == ALL else parse_period(raw_period)
    sub_account, error = None, None
    try:
        sub_account = _chosen_sub_account(principal, raw_sub)
    except NotFound as exc:
        if raw_sub.isdigit():
            raise  # an id from a link or the select: another partner's is missing, 404
        error = str(exc.detail)  # a name typed: say so beside the field
    if not raw_period and sub_account is None and error is None and periods:
        period = periods[0]  # by default, the latest period that has statements
    period_value = f"{period:%Y-%m}" if period else ALL
    form = _filter_form(
        {"period": period_value, "sub_account": raw_sub}, principal, periods, period
    )
    field = form.fields["sub_account"]
    if sub_account is not None and isinstance(field, forms.ChoiceField):
        if str(sub_account.pk) not in {value for value, _ in field.choices}:
            # One the select leaves out (purged), reached from its statement: name it.
            field.choices = [*field.choices, (str(sub_account.pk), sub_account.name)]
    elif sub_account is not None:
        form.data = {**form.data, "sub_account": sub_account.name}
    qs = statement_list(
        principal=principal, period=period, sub_account_id=sub_account.pk if sub_account else None
    )
    if error is not None:
        form.add_error("sub_account", error)
        qs = qs.none()
    sums = statement_sums(qs)
    paginator = Paginator(qs, PAGE_SIZE)
    paginator.count = sums.count  # known from the sums: no second count
    page_obj = paginator.get_page(request.GET.get("page"))
    currency = sums.currencies[0] if len(sums.currencies) == 1 else ""
    params = {"period": period_value, "sub_account": raw_sub}
    return render(
        request,
        "billing/statement_list.html",
        {
            "active_section": _section(principal),
            "billing_tabs": billing_tabs(principal, "statements"),
            "filters": form,
            "period": period,
            "sub_account": sub_account,
            "page_obj": page_obj,
            "rows": [_row(s) for s in page_obj],
            "sums": sums,
            "currency": currency,
            # Summed only in one currency (a partner's statements always share one).
            "totals": {
                name: format_amount(getattr(sums, name), currency)
                for name in ("recurring", "prorations", "total")
            }
            if currency
            else {},
            "has_periods": bool(periods),
            "query_prefix": urlencode({k: v for k, v in params.items() if v}) + "&",
        },
        status=422 if error else 200,
    )


@portal_view
def statement_detail(request: HttpRequest, statement_id: int) -> HttpResponse:
    """The statement as its client reads it: who it is from and for, the period, every
    charge with its explanation (a page at a time), the totals; PDF and CSV."""
    principal = request.principal  # type: ignore[attr-defined]
    statement = statement_get(principal=principal, statement_id=statement_id, with_items=False)
    c = statement.currency
    page_obj = Paginator(statement_items(statement), ITEM_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    items = [
        {
            "item": item,
            "charge": charge_label(item.kind),
            # No break inside a number: "+1 415 555 0100" stays on one line.
            "line_number": display_number_fast(item.line.number).replace(" ", "\u00a0")
            if item.line_id
            else "",
            "amount": format_amount(item.amount, c),
        }
        for item in page_obj
    ]
    period = statement_period(statement)
    return render(
        request,
        "billing/statement_detail.html",
        {
            "active_section": _section(principal),
            "statement": statement,
            "status": statement.invoice.status,
            "status_label": statement.invoice.get_status_display(),
            "period": period,
            "client_lines": client_lines(statement),
            "unit_price": (
                None if statement.unit_price is None else format_amount(statement.unit_price, c)
            ),
            "recurring": format_amount(statement.recurring, c),
            "prorations": format_amount(statement.prorations, c),
            "total": format_amount(statement.total, c),
            "items": items,
            "page_obj": page_obj,
            "notes": statement_notes(
                period,
                has_adjustments=statement_items(statement).exclude(kind="recurring").exists(),
            ),
        },
    )


@portal_view
def statement_csv(request: HttpRequest, statement_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    return statement_csv_response(statement_get(principal=principal, statement_id=statement_id))


@portal_view
def statement_pdf(request: HttpRequest, statement_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    return statement_pdf_response(statement_get(principal=principal, statement_id=statement_id))
