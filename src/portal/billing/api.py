"""REST endpoints for invoices, the billing summary, discounts, credits, settings, resale
prices and margins.

Staff grant discounts and credits, finalize invoices and change the price and
policies (``?partner=<slug>`` names the partner); partner admins and billing people
may read them. Grants apply to invoices issued afterwards: an invoice already issued,
draft or finalized, never changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Status

from portal.accounts.policies import require
from portal.billing import invoicing, margins, names, resale, selectors, terms
from portal.billing import summary as summaries
from portal.billing.exports import invoice_csv_response, invoice_pdf_response
from portal.billing.models import CreditEntry, Discount, Invoice, InvoiceSection
from portal.billing.money import plain_amount
from portal.billing.policies import can_finalize_invoices
from portal.billing.schemas import (
    BillingSettingsOut,
    BillingSettingsPatchIn,
    BillingSummaryOut,
    CreditBalancesOut,
    CreditEntryOut,
    CreditIn,
    CreditLedgerOut,
    DiscountIn,
    DiscountListOut,
    DiscountOut,
    InvoiceListItemOut,
    InvoiceListOut,
    InvoiceOut,
    MarginsOut,
    ResaleSettingsOut,
    ResaleSettingsPatchIn,
)
from portal.core.api import MAX_LIMIT, MAX_OFFSET, page, principal_of
from portal.core.errors import Invalid
from portal.partners.models import Partner
from portal.partners.selectors import partner_for

router = Router(tags=["billing"])


def _invoice_head(invoice: Invoice) -> dict[str, Any]:
    c = invoice.currency
    return {
        "id": invoice.pk,
        "number": invoice.number,
        "period_month": f"{invoice.period_month:%Y-%m}",
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "status": invoice.status,
        "currency": c,
        "total": plain_amount(invoice.total, c),
        "issued_at": invoice.issued_at,
        "finalized_at": invoice.finalized_at,
    }


def _section_out(section: InvoiceSection, currency: str) -> dict[str, Any]:
    return {
        "sub_account_id": section.sub_account_id,
        "name": section.name,
        "kind": section.kind,
        "line_quantity": section.line_quantity,
        "recurring": plain_amount(section.recurring, currency),
        "prorations": plain_amount(section.prorations, currency),
        "discounts": plain_amount(section.discounts, currency),
        "credits": plain_amount(section.credits, currency),
        "total": plain_amount(section.total, currency),
        "items": [
            {
                "id": item.pk,
                "kind": item.kind,
                "line_id": item.line_id,
                "line_number": item.line.number if item.line_id else None,
                "other_sub_account_id": item.other_sub_account_id,
                "other_name": item.other_name,
                "service_start": item.service_start,
                "service_end": item.service_end,
                "day": item.day,
                "days": item.days,
                "quantity": item.quantity,
                "unit_price": plain_amount(item.unit_price, currency),
                "amount": plain_amount(item.amount, currency),
                "description": item.description,
                "discount_id": item.discount_id,
                "credit_entry_id": item.credit_entry_id,
            }
            for item in section.items.all()
        ],
    }


@router.get("/invoices", response=InvoiceListOut)
def list_invoices(
    request: HttpRequest,
    status: str | None = None,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    qs = selectors.invoice_list(principal=principal_of(request), status=status)
    return page(qs, limit=limit, offset=offset, shape=lambda rows: list(map(_invoice_head, rows)))


@router.get("/invoices/{invoice_id}", response=InvoiceOut)
def get_invoice(request: HttpRequest, invoice_id: int) -> dict[str, Any]:
    invoice = selectors.invoice_get(principal=principal_of(request), invoice_id=invoice_id)
    return {
        **_invoice_head(invoice),
        "timezone": invoice.timezone,
        "unit_price": plain_amount(invoice.unit_price, invoice.currency),
        "sections": [_section_out(s, invoice.currency) for s in invoice.sections.all()],
    }


def file_responses(media_type: str, what: str) -> dict[str, Any]:
    """OpenAPI for an endpoint answering with a file rather than JSON."""
    return {
        "responses": {
            "200": {
                "description": what,
                "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
            }
        }
    }


@router.get(
    "/invoices/{invoice_id}/csv",
    openapi_extra=file_responses("text/csv", "The invoice's items as CSV, one row per item."),
)
def get_invoice_csv(request: HttpRequest, invoice_id: int) -> HttpResponse:
    invoice = selectors.invoice_get(principal=principal_of(request), invoice_id=invoice_id)
    return invoice_csv_response(invoice)


@router.get(
    "/invoices/{invoice_id}/pdf",
    openapi_extra=file_responses("application/pdf", "The invoice as a PDF (A4)."),
)
def get_invoice_pdf(request: HttpRequest, invoice_id: int) -> HttpResponse:
    invoice = selectors.invoice_get(principal=principal_of(request), invoice_id=invoice_id)
    return invoice_pdf_response(invoice)


@router.get("/billing/summary", response=BillingSummaryOut)
def billing_summary(request: HttpRequest) -> dict[str, Any]:
    summary = summaries.billing_summary(principal=principal_of(request))
    currency = summary.invoice.currency if summary.invoice else summary.partner.currency
    return {
        "period_start": summary.cycle.start,
        "period_end": summary.cycle.end,
        "period_month": f"{summary.cycle.first_day:%Y-%m}",
        "as_of": summary.as_of,
        "currency": currency,
        "invoice_id": summary.invoice.pk if summary.invoice else None,
        "sub_accounts": [
            {
                "sub_account_id": r.sub_account_id,
                "name": r.name,
                "line_count": r.line_count,
                "recurring": plain_amount(r.recurring, currency),
                "prorations": plain_amount(r.prorations, currency),
                "accruing_prorations": plain_amount(r.accruing_prorations, currency),
                "discounts": plain_amount(r.discounts, currency),
                "credits": plain_amount(r.credits, currency),
                "total": plain_amount(r.total, currency),
            }
            for r in summary.rows
        ],
        "total": plain_amount(summary.total, currency),
    }


@router.post("/invoices/{invoice_id}/finalize", response=InvoiceListItemOut)
def finalize_invoice(request: HttpRequest, invoice_id: int) -> dict[str, Any]:
    """Staff: draft → finalized now, instead of after the 3-day grace period. 409 when
    it is already finalized; a finalized invoice never changes."""
    principal = principal_of(request)
    require(can_finalize_invoices(principal), "Only provider staff finalize invoices.")
    invoice = Invoice.objects.get_visible(principal, invoice_id, what="Invoice")
    return _invoice_head(invoicing.invoice_finalize(principal=principal, invoice=invoice))


# --- Discounts ---------------------------------------------------------------------------


def _discount_out(d: Discount, currency: str) -> dict[str, Any]:
    value = f"{d.value.normalize():f}" if d.kind == "percent" else plain_amount(d.value, currency)
    return {
        "id": d.pk,
        "name": d.name,
        "kind": d.kind,
        "value": value,
        "currency": currency,
        "sub_account_id": d.sub_account_id,
        "sub_account_name": names.section_name(d.sub_account) if d.sub_account else None,
        "first_month": f"{d.first_month:%Y-%m}",
        "last_month": f"{d.last_month:%Y-%m}" if d.last_month else None,
        "state": "removed" if d.removed_at else "active",
        "created_at": d.created_at,
        "created_by": d.created_by,
        "removed_at": d.removed_at,
    }


def _currencies(rows: list[Any]) -> dict[int, str]:
    """Each row's partner's currency (staff lists may span partners): one query."""
    ids = {r.partner_id for r in rows}
    return dict(Partner.objects.filter(pk__in=ids).values_list("pk", "currency"))


def _in_currencies(rows: list[Any], out: Callable[[Any, str], dict[str, Any]]) -> list[Any]:
    """``out(row, currency)`` for each row, its partner's currencies read in one query."""
    currencies = _currencies(rows)
    return [out(r, currencies[r.partner_id]) for r in rows]


@router.get("/discounts", response=DiscountListOut)
def list_discounts(
    request: HttpRequest,
    sub_account_id: int | None = None,
    state: str | None = None,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    """Discounts granted to the partner, newest first (``state``: active or removed).
    Read-only for partner admins and billing people."""
    qs = selectors.discount_list(
        principal=principal_of(request), sub_account_id=sub_account_id, state=state
    )
    return page(
        qs, limit=limit, offset=offset, shape=lambda rows: _in_currencies(rows, _discount_out)
    )


def _parse_month(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date(int(value[:4]), int(value[5:7]), 1)
    except ValueError:
        raise Invalid(f"{value!r} is not a month such as 2026-08.", field="first_month") from None


@router.post("/discounts", response={201: DiscountOut})
def grant_discount(request: HttpRequest, payload: DiscountIn) -> Status:
    """Staff: grant a discount. It applies to the next invoice issued and on (or from
    ``first_month``); invoices already issued are not changed."""
    principal = principal_of(request)
    partner = partner_for(principal)
    discount = terms.discount_grant(
        principal=principal,
        kind=payload.kind,
        value=str(payload.value),
        name=payload.name,
        sub_account_id=payload.sub_account_id,
        first_month=_parse_month(payload.first_month),
        cycles=payload.cycles,
    )
    discount = selectors.discount_get(principal=principal, discount_id=discount.pk)
    return Status(201, _discount_out(discount, partner.currency))


@router.get("/discounts/{discount_id}", response=DiscountOut)
def get_discount(request: HttpRequest, discount_id: int) -> dict[str, Any]:
    discount = selectors.discount_get(principal=principal_of(request), discount_id=discount_id)
    return _discount_out(discount, _currencies([discount])[discount.partner_id])


@router.post("/discounts/{discount_id}/remove", response=DiscountOut)
def remove_discount(request: HttpRequest, discount_id: int) -> dict[str, Any]:
    """Staff: end a discount now. Invoices issued from now on no longer apply it; those
    already issued keep it. 409 when already removed."""
    principal = principal_of(request)
    terms.discount_remove(principal=principal, discount_id=discount_id)
    discount = selectors.discount_get(principal=principal, discount_id=discount_id)
    return _discount_out(discount, _currencies([discount])[discount.partner_id])


# --- Credits ------------------------------------------------------------------------------


def _credit_out(e: CreditEntry, currency: str) -> dict[str, Any]:
    balance = getattr(e, "balance", None)
    return {
        "id": e.pk,
        "kind": e.kind,
        "amount": plain_amount(e.amount, currency),
        "balance": plain_amount(balance, currency) if balance is not None else None,
        "currency": currency,
        "sub_account_id": e.sub_account_id,
        "sub_account_name": names.section_name(e.sub_account) if e.sub_account else None,
        "reason": e.reason,
        "invoice_id": e.invoice_id,
        "invoice_number": e.invoice.number if e.invoice else None,
        "created_at": e.created_at,
        "created_by": e.created_by,
    }


@router.get("/credits", response=CreditLedgerOut)
def list_credits(
    request: HttpRequest,
    sub_account_id: int | None = None,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    """The credit ledger, newest first: grants and applications to invoices, each with
    its balance's running total (``sub_account_id`` null = the partner's balance)."""
    qs = selectors.credit_ledger(principal=principal_of(request), sub_account_id=sub_account_id)
    return page(
        qs, limit=limit, offset=offset, shape=lambda rows: _in_currencies(rows, _credit_out)
    )


@router.post("/credits", response={201: CreditEntryOut})
def grant_credit(request: HttpRequest, payload: CreditIn) -> Status:
    """Staff: grant credit with a reason. The next invoices issued apply it after
    discounts, never below zero; invoices already issued are not changed."""
    principal = principal_of(request)
    partner = partner_for(principal)
    entry = terms.credit_grant(
        principal=principal,
        amount=str(payload.amount),
        reason=payload.reason,
        sub_account_id=payload.sub_account_id,
    )
    entry = selectors.credit_ledger(principal=principal).get(pk=entry.pk)
    return Status(201, _credit_out(entry, partner.currency))


@router.get("/credits/balance", response=CreditBalancesOut)
def credit_balance(request: HttpRequest) -> dict[str, Any]:
    """What is left to apply: the partner's own balance and each sub-account's."""
    partner, rows = selectors.credit_balance_list(principal=principal_of(request))
    c = partner.currency
    return {
        "currency": c,
        "partner": plain_amount(rows[0].balance, c),
        "sub_accounts": [
            {
                "sub_account_id": r.sub_account_id,
                "name": r.name,
                "balance": plain_amount(r.balance, c),
            }
            for r in rows[1:]
        ],
        "total": plain_amount(sum((r.balance for r in rows), Decimal(0)), c),
    }


# --- Price and policies --------------------------------------------------------------------


def _settings_out(request: HttpRequest) -> dict[str, Any]:
    settings = selectors.billing_settings(principal=principal_of(request))
    partner, c = settings.partner, settings.partner.currency
    return {
        "currency": c,
        "timezone": partner.timezone,
        "period_month": f"{settings.current_cycle.first_day:%Y-%m}",
        "line_price": plain_amount(settings.current_price, c),
        "next_period_month": f"{settings.current_cycle.next().first_day:%Y-%m}",
        "next_line_price": plain_amount(settings.next_price, c),
        "prorate_new_lines": partner.prorate_new_lines,
        "credit_disconnects": partner.credit_disconnects,
    }


@router.get("/billing/settings", response=BillingSettingsOut)
def get_billing_settings(request: HttpRequest) -> dict[str, Any]:
    """The price per line (this cycle and the next) and the proration policies."""
    return _settings_out(request)


@router.patch("/billing/settings", response=BillingSettingsOut)
def update_billing_settings(request: HttpRequest, payload: BillingSettingsPatchIn) -> Any:
    """Staff: change the price (from the next cycle) and/or the policies."""
    principal = principal_of(request)
    changes = payload.model_dump(exclude_unset=True)
    for name in ("line_price", "prorate_new_lines", "credit_disconnects"):
        if name in changes and changes[name] is None:
            raise Invalid(f"{name} cannot be null; omit it to keep it.", field=name)
    if "line_price" in changes:
        changes["line_price"] = str(changes["line_price"])
    terms.partner_billing_update(principal=principal, **changes)
    return _settings_out(request)


# --- Resale prices and margins (domain §8.1) ------------------------------------------------


def _maybe_money(amount: Decimal | None, currency: str) -> str | None:
    return None if amount is None else plain_amount(amount, currency)


def _resale_out(request: HttpRequest) -> dict[str, Any]:
    overview = resale.resale_overview(principal=principal_of(request))
    c = overview.partner.currency
    return {
        "currency": c,
        "period_month": f"{overview.cycle.first_day:%Y-%m}",
        "default_resale_price": _maybe_money(overview.set_now.default, c),
        "effective_month": (f"{overview.next_month:%Y-%m}" if overview.default_pending() else None),
        "in_force": _maybe_money(overview.in_force.default, c),
    }


@router.get("/billing/resale", response=ResaleSettingsOut)
def get_resale_settings(request: HttpRequest) -> dict[str, Any]:
    """The partner's default resale price (admins and billing people). Each sub-account's
    own is ``resale_price`` on the SubAccount, set by ``PATCH /sub-accounts/{id}``."""
    return _resale_out(request)


@router.patch("/billing/resale", response=ResaleSettingsOut)
def update_resale_settings(request: HttpRequest, payload: ResaleSettingsPatchIn) -> Any:
    """Set or clear (null) the default resale price, from the next cycle."""
    changes = payload.model_dump(exclude_unset=True)
    if "default_resale_price" in changes:
        resale.resale_default_set(
            principal=principal_of(request), price=changes["default_resale_price"]
        )
    return _resale_out(request)


@router.get("/billing/margins", response=MarginsOut)
def get_margins(request: HttpRequest, period: str | None = None) -> dict[str, Any]:
    """What the provider charged each sub-account (its invoice section's total) beside
    what the partner charges it (its statement's total) for ``period`` (YYYY-MM; by
    default the latest invoice's). A period with no invoice answers empty items and zero
    totals. Admins and billing people only."""
    found = margins.margins_for_period(
        principal=principal_of(request), period=margins.parse_period(period)
    )
    c = found.currency

    def rate(value: Decimal | None) -> str | None:
        return None if value is None else f"{value:f}"

    return {
        "currency": c,
        "period": f"{found.period:%Y-%m}",
        "invoice_id": found.invoice.pk if found.invoice else None,
        "items": [
            {
                "sub_account_id": r.sub_account_id,
                "name": r.name,
                "kind": r.kind,
                "cost": plain_amount(r.cost, c),
                "resale": plain_amount(r.resale, c),
                "margin": plain_amount(r.margin, c),
                "margin_rate": rate(r.margin_rate),
            }
            for r in found.rows
        ],
        "cost": plain_amount(found.cost, c),
        "resale": plain_amount(found.resale, c),
        "margin": plain_amount(found.margin, c),
        "margin_rate": rate(found.margin_rate),
    }
