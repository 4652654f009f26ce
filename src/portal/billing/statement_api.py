"""REST endpoints for client statements (domain §8.1): the list by period and by
sub-account, one statement, and its CSV and PDF, the files a reseller sends its client.

Read-only: statements are issued with the partner's invoices by the billing run.
Admins and billing people read them (staff with ``?partner=<slug>``), and a partner's
client its own sub-accounts' (domain §8.2: the shape holds no provider figure, and
``visible_to`` narrows every read to the grant); managers and viewers get 403; another
partner's statement, or another sub-account's for a client, answers 404 like a missing
one.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router

from portal.billing.api import file_responses
from portal.billing.models import Statement
from portal.billing.money import plain_amount
from portal.billing.schemas import StatementListOut, StatementOut
from portal.billing.statement_exports import statement_csv_response, statement_pdf_response
from portal.billing.statement_selectors import parse_period, statement_get, statement_list
from portal.core.api import MAX_LIMIT, MAX_OFFSET, page, principal_of

router = Router(tags=["statements"])


def statement_out(statement: Statement) -> dict[str, Any]:
    """The API's shape of a statement read with its invoice and items."""
    c = statement.currency
    return {
        "id": statement.pk,
        "number": statement.number,
        "sub_account_id": statement.sub_account_id,
        "name": statement.name,
        "period_month": f"{statement.period_month:%Y-%m}",
        "period_start": statement.period_start,
        "period_end": statement.period_end,
        "status": statement.invoice.status,
        "currency": c,
        "unit_price": None
        if statement.unit_price is None
        else plain_amount(statement.unit_price, c),
        "partner_name": statement.partner_name,
        "contact_name": statement.contact_name,
        "contact_email": statement.contact_email,
        "contact_phone": statement.contact_phone,
        "internal_reference": statement.internal_reference,
        "line_quantity": statement.line_quantity,
        "recurring": plain_amount(statement.recurring, c),
        "prorations": plain_amount(statement.prorations, c),
        "total": plain_amount(statement.total, c),
        "issued_at": statement.issued_at,
        "items": [
            {
                "id": item.pk,
                "kind": item.kind,
                "line_id": item.line_id,
                "line_number": item.line.number if item.line_id else None,
                "service_start": item.service_start,
                "service_end": item.service_end,
                "day": item.day,
                "days": item.days,
                "quantity": item.quantity,
                "unit_price": plain_amount(item.unit_price, c),
                "amount": plain_amount(item.amount, c),
                "description": item.description,
            }
            for item in statement.items.all()
        ],
    }


@router.get("/statements", response=StatementListOut)
def list_statements(
    request: HttpRequest,
    period: str | None = Query(None, pattern=r"^\d{4}-\d{2}$", examples=["2026-07"]),
    sub_account_id: int | None = None,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    """Client statements, newest period first and by client name within one, each with
    its items. ``period`` (``YYYY-MM``) keeps one cycle's, ``sub_account_id`` one
    client's (numbered 1, 2, 3 … per sub-account)."""
    qs = statement_list(
        principal=principal_of(request),
        period=parse_period(period),
        sub_account_id=sub_account_id,
        with_items=True,
    )
    return page(qs, limit=limit, offset=offset, shape=lambda rows: list(map(statement_out, rows)))


@router.get("/statements/{statement_id}", response=StatementOut)
def get_statement(request: HttpRequest, statement_id: int) -> dict[str, Any]:
    statement = statement_get(principal=principal_of(request), statement_id=statement_id)
    return statement_out(statement)


@router.get(
    "/statements/{statement_id}/csv",
    openapi_extra=file_responses("text/csv", "The statement's charges as CSV, one row each."),
)
def get_statement_csv(request: HttpRequest, statement_id: int) -> HttpResponse:
    statement = statement_get(principal=principal_of(request), statement_id=statement_id)
    return statement_csv_response(statement)


@router.get(
    "/statements/{statement_id}/pdf",
    openapi_extra=file_responses(
        "application/pdf", "The statement as a PDF (A4) to send to the client."
    ),
)
def get_statement_pdf(request: HttpRequest, statement_id: int) -> HttpResponse:
    statement = statement_get(principal=principal_of(request), statement_id=statement_id)
    return statement_pdf_response(statement)
