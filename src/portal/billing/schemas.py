"""API shapes for invoices and the billing summary.

Money is a decimal string in the invoice's (or partner's) currency, with exactly
its minor unit of digits ("50.00", "5000" for JPY), next to a ``currency`` field.
"""

from __future__ import annotations

import datetime as dt

from ninja import Schema


class InvoiceListItemOut(Schema):
    id: int
    number: int
    period_month: str  # "2026-07"
    period_start: dt.datetime
    period_end: dt.datetime
    status: str
    currency: str
    total: str
    issued_at: dt.datetime
    finalized_at: dt.datetime | None


class InvoiceListOut(Schema):
    items: list[InvoiceListItemOut]
    count: int


class InvoiceItemOut(Schema):
    id: int
    kind: str
    line_id: int | None
    line_number: str | None
    other_sub_account_id: int | None
    other_name: str
    service_start: dt.date
    service_end: dt.date
    day: int | None
    days: int
    quantity: int
    unit_price: str
    amount: str
    description: str


class InvoiceSectionOut(Schema):
    sub_account_id: int | None
    name: str
    kind: str
    line_quantity: int
    recurring: str
    prorations: str
    discounts: str
    credits: str
    total: str
    items: list[InvoiceItemOut]


class InvoiceOut(InvoiceListItemOut):
    timezone: str
    unit_price: str
    sections: list[InvoiceSectionOut]


class SummarySubAccountOut(Schema):
    sub_account_id: int | None
    name: str
    line_count: int
    recurring: str
    prorations: str
    accruing_prorations: str
    discounts: str
    credits: str
    total: str


class BillingSummaryOut(Schema):
    """The current cycle: ``recurring``, ``discounts`` and ``credits`` as its invoice
    charges them; ``prorations`` = the invoice's (for the cycle before) plus
    ``accruing_prorations``, those of the current cycle so far, due on the next invoice.
    """

    period_start: dt.datetime
    period_end: dt.datetime
    period_month: str
    as_of: dt.datetime
    currency: str
    invoice_id: int | None
    sub_accounts: list[SummarySubAccountOut]
    total: str
