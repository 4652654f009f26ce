"""REST endpoints for invoices and the billing summary."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router

from portal.billing import selectors
from portal.billing.models import Invoice, InvoiceSection
from portal.billing.money import quantize
from portal.billing.schemas import BillingSummaryOut, InvoiceListOut, InvoiceOut
from portal.core.api import MAX_LIMIT, MAX_OFFSET, principal_of

router = Router(tags=["billing"])


def _money(amount: Decimal, currency: str) -> str:
    return f"{quantize(amount, currency):f}"


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
        "total": _money(invoice.total, c),
        "issued_at": invoice.issued_at,
        "finalized_at": invoice.finalized_at,
    }


def _section_out(section: InvoiceSection, currency: str) -> dict[str, Any]:
    return {
        "sub_account_id": section.sub_account_id,
        "name": section.name,
        "kind": section.kind,
        "line_quantity": section.line_quantity,
        "recurring": _money(section.recurring, currency),
        "prorations": _money(section.prorations, currency),
        "discounts": _money(section.discounts, currency),
        "credits": _money(section.credits, currency),
        "total": _money(section.total, currency),
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
                "unit_price": _money(item.unit_price, currency),
                "amount": _money(item.amount, currency),
                "description": item.description,
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
    return {
        "items": [_invoice_head(i) for i in qs[offset : offset + limit]],
        "count": qs.count(),
    }


@router.get("/invoices/{invoice_id}", response=InvoiceOut)
def get_invoice(request: HttpRequest, invoice_id: int) -> dict[str, Any]:
    invoice = selectors.invoice_get(principal=principal_of(request), invoice_id=invoice_id)
    return {
        **_invoice_head(invoice),
        "timezone": invoice.timezone,
        "unit_price": _money(invoice.unit_price, invoice.currency),
        "sections": [_section_out(s, invoice.currency) for s in invoice.sections.all()],
    }


@router.get("/billing/summary", response=BillingSummaryOut)
def billing_summary(request: HttpRequest) -> dict[str, Any]:
    summary = selectors.billing_summary(principal=principal_of(request))
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
                "recurring": _money(r.recurring, currency),
                "prorations": _money(r.prorations, currency),
                "accruing_prorations": _money(r.accruing_prorations, currency),
                "discounts": _money(r.discounts, currency),
                "credits": _money(r.credits, currency),
                "total": _money(r.total, currency),
            }
            for r in summary.rows
        ],
        "total": _money(summary.total, currency),
    }
