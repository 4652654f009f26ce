"""Billing → Resale prices (domain §8.1): the partner's default resale price, and its
active sub-accounts a page at a time, each with the price in force this cycle, its own
price (edited in place: the row's field saves on change or Enter and the row comes back
with what the next cycle charges) and the price from the next cycle.

Admins, billing people and staff acting for the partner: ``resale_overview`` refuses the
others (403), and the navigation does not offer the page to them. Every change goes
through ``billing.resale``'s services; the list reuses the Sub-accounts list's selector
(search by name) and paging, so 10,000 sub-accounts are a page of 50 and three queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models.functions import Lower
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods, require_POST

from portal.billing.forms import ResaleDefaultForm, ResaleRowForm, ResaleSearchForm
from portal.billing.money import format_amount, plain_amount
from portal.billing.navigation import billing_tabs
from portal.billing.resale import (
    ResaleOverview,
    resale_default_set,
    resale_overview,
    sub_account_resale_price_set,
)
from portal.core.errors import Conflict, DomainError, Invalid
from portal.partners.models import SubAccount, SubAccountKind, SubAccountStatus
from portal.partners.selectors import sub_account_get, sub_account_list
from portal.web.decorators import portal_view
from portal.web.forms import attach_error

PAGE_SIZE = 50
DASH = "—"


def _plain(price: Decimal | None, currency: str) -> str:
    """A price as the field holds it: ``80.00``, no separators; "" for none."""
    return "" if price is None else plain_amount(price, currency)


def _shown(price: Decimal | None, currency: str) -> str:
    return DASH if price is None else format_amount(price, currency)


@dataclass
class ResaleRow:
    """One sub-account as the table shows it."""

    sub_account: SubAccount
    this_cycle: str
    this_cycle_default: bool  # the partner's default, not its own
    own: str  # the field's value: its own price as set now, "" for the default
    next_cycle: str
    next_cycle_default: bool
    pending: bool  # the next cycle's price differs from this one's
    error: str = ""


def _row(sub: SubAccount, overview: ResaleOverview, *, typed: str | None = None) -> ResaleRow:
    c = overview.partner.currency
    now, later = overview.in_force, overview.set_now
    return ResaleRow(
        sub_account=sub,
        this_cycle=_shown(now.price_of(sub.pk), c),
        this_cycle_default=now.override_of(sub.pk) is None and now.default is not None,
        own=_plain(later.override_of(sub.pk), c) if typed is None else typed,
        next_cycle=_shown(later.price_of(sub.pk), c),
        next_cycle_default=later.override_of(sub.pk) is None and later.default is not None,
        pending=overview.pending(sub.pk),
    )


def _context(overview: ResaleOverview) -> dict[str, Any]:
    c = overview.partner.currency
    return {
        "currency": c,
        "this_month": overview.cycle.first_day,
        "next_month": overview.next_month,
        "default_placeholder": (
            f"Default ({_plain(overview.set_now.default, c)})"
            if overview.set_now.default is not None
            else "No price"
        ),
    }


@portal_view
@require_http_methods(["GET", "POST"])
def resale_prices(request: HttpRequest) -> HttpResponse:
    """The page: the default's form (posted here) and the sub-accounts' table."""
    principal = request.principal  # type: ignore[attr-defined]
    search = ResaleSearchForm(request.GET or None)
    q = search.cleaned_data.get("q", "") if search.is_valid() else ""
    listed = (
        sub_account_list(principal=principal, search=q or None, status=SubAccountStatus.ACTIVE)
        .exclude(kind=SubAccountKind.AVAILABLE)
        .order_by(Lower("name"), "pk")
    )
    page_obj = Paginator(listed, PAGE_SIZE).get_page(request.GET.get("page"))
    subs = list(page_obj.object_list)
    overview = resale_overview(principal=principal, sub_account_ids=[s.pk for s in subs])
    c = overview.partner.currency
    initial = {"default_resale_price": _plain(overview.set_now.default, c)}
    form = ResaleDefaultForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST" and form.is_valid():
        price = form.cleaned_data["default_resale_price"]
        try:
            change = resale_default_set(principal=principal, price=price)
        except DomainError as exc:
            attach_error(form, exc)
        else:
            if change is None:
                messages.success(request, "Nothing changed.")
            elif change.price is None:
                messages.success(
                    request,
                    f"Default resale price cleared from {change.effective_month:%B %Y}.",
                )
            else:
                messages.success(
                    request,
                    f"Default resale price {format_amount(change.price, c)} {c} "
                    f"from {change.effective_month:%B %Y}.",
                )
            return redirect("billing:resale_prices")
    kept = {"q": q} if q else {}
    context = {
        "active_section": "billing",
        "billing_tabs": billing_tabs(principal, "resale"),
        "overview": overview,
        "default_in_force": _shown(overview.in_force.default, c),
        "default_next": _shown(overview.set_now.default, c),
        "form": form,
        "search": search,
        "q": q,
        "page_obj": page_obj,
        "rows": [_row(s, overview) for s in subs],
        "query_prefix": urlencode(kept) + "&" if kept else "",
        **_context(overview),
    }
    template = "billing/resale_prices.html"
    if request.htmx and request.htmx.target == "results":  # type: ignore[attr-defined]
        template += "#results"
    return render(request, template, context, status=422 if form.errors else 200)


@portal_view
@require_POST
def resale_price_row(request: HttpRequest, sub_account_id: int) -> HttpResponse:
    """Save one sub-account's own price (empty: back to the default). Inside HTMX the
    row comes back, with the refusal in it when the price is refused (422); without
    JavaScript, the page again with a message."""
    principal = request.principal  # type: ignore[attr-defined]
    sub = sub_account_get(principal=principal, sub_account_id=sub_account_id)
    form = ResaleRowForm(request.POST)
    typed = (request.POST.get("resale_price") or "").strip()
    error = ""
    if not form.is_valid():
        error = "Enter a price such as 80.00, or leave it empty for the default."
    else:
        try:
            sub_account_resale_price_set(
                principal=principal, sub_account_id=sub.pk, price=form.cleaned_data["resale_price"]
            )
        except (Invalid, Conflict) as exc:
            error = str(exc.detail)
    if not request.htmx:  # type: ignore[attr-defined]
        if error:
            messages.error(request, f"{sub.display_name}: {error}")
        else:
            messages.success(request, f"Resale price of {sub.display_name} saved.")
        return redirect("billing:resale_prices")
    overview = resale_overview(principal=principal, sub_account_ids=[sub.pk])
    row = _row(sub, overview, typed=typed if error else None)
    row.error = error
    return render(
        request,
        "billing/_resale_row.html",
        {"row": row, "saved": not error, **_context(overview)},
        status=422 if error else 200,
    )
