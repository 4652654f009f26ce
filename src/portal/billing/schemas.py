"""API shapes for invoices and the billing summary.

Money is a decimal string in the invoice's (or partner's) currency, with exactly
its minor unit of digits ("50.00", "5000" for JPY), next to a ``currency`` field.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from ninja import Field, Schema
from pydantic import ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr


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
    discount_id: int | None = None  # a discount item: the discount (GET /discounts/{id})
    credit_entry_id: int | None = None  # a credit item: its ledger entry (GET /credits)


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


# --- Client statements (domain §8.1) ---------------------------------------------------


class StatementItemOut(Schema):
    """One charge on a statement, with the same line, days and kind as its invoice item,
    at the resale price (``unit_price``) of the cycle it charges or corrects."""

    id: int
    kind: str  # recurring | move_credit | move_charge | activation | disconnect_credit
    line_id: int | None
    line_number: str | None
    service_start: dt.date
    service_end: dt.date
    day: int | None
    days: int
    quantity: int
    unit_price: str
    amount: str
    description: str


class StatementOut(Schema):
    """What a partner charges one client (a sub-account) for a cycle, issued with the
    partner's invoice of that cycle and numbered per sub-account. ``partner_name`` is the
    reseller as its clients know it; ``name`` and the contact fields are the client as
    they were when it was issued. ``status`` is its invoice's (``draft``, ``finalized``);
    the statement itself never changes. Never carries the provider's price, discounts or
    credits: it is the client's own shape (domain §8.2: a client reads it too), built from
    the statement's stored figures, which are all at the resale price."""

    id: int
    number: int
    sub_account_id: int
    name: str
    period_month: str  # "2026-07"
    period_start: dt.datetime
    period_end: dt.datetime
    status: str
    currency: str
    unit_price: str | None  # the resale price per line of the cycle, if one was in force
    partner_name: str
    contact_name: str
    contact_email: str
    contact_phone: str
    internal_reference: str
    line_quantity: int
    recurring: str
    prorations: str
    total: str
    issued_at: dt.datetime
    items: list[StatementItemOut]


class StatementListOut(Schema):
    items: list[StatementOut]
    count: int


# --- Discounts, credits, settings ---------------------------------------------------------

# Money and percentages in are decimal strings ("12.50"); JSON numbers are accepted too.
# Strict: lax parsing would read ``true`` as 1 and ``false`` as 0.
DecimalIn = StrictStr | StrictInt | StrictFloat

# Ids, counts and flags are strict too (as lines/schemas.py): lax parsing would read
# ``true`` as 1, "2" as 2 and "yes" or 0 as a policy, so a typo would change billing.


class DiscountIn(Schema):
    """A discount on recurring charges (never prorations), granted by staff.

    ``kind`` ``percent`` (``value`` 0 < v ≤ 100, at most 2 decimals) or ``amount`` (a
    fixed amount per invoice in the partner's currency, capped at the recurring charge).
    ``sub_account_id`` empty = the whole invoice, spread over sections in proportion to
    their recurring charges. ``first_month`` ("YYYY-MM") defaults to the next invoice not
    yet issued; ``cycles`` empty = until removed. Invoices already issued never change.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["percent", "amount"]
    value: DecimalIn
    name: str = ""
    sub_account_id: StrictInt | None = None
    first_month: str | None = Field(None, pattern=r"^\d{4}-\d{2}$", examples=["2026-08"])
    cycles: StrictInt | None = Field(None, ge=1, le=120)


class DiscountOut(Schema):
    id: int
    name: str
    kind: str
    value: str
    currency: str
    sub_account_id: int | None
    sub_account_name: str | None
    first_month: str
    last_month: str | None
    state: str  # active | removed
    created_at: dt.datetime
    created_by: str
    removed_at: dt.datetime | None


class DiscountListOut(Schema):
    items: list[DiscountOut]
    count: int


class CreditIn(Schema):
    """Credit granted by staff, with a reason, to the partner's balance or (with
    ``sub_account_id``) a sub-account's. Applied to the next invoices issued, after
    discounts, never below zero; what is left carries over."""

    model_config = ConfigDict(extra="forbid")

    amount: DecimalIn
    reason: str
    sub_account_id: StrictInt | None = None


class CreditEntryOut(Schema):
    """One ledger entry: ``grant`` (amount > 0), ``apply`` (amount < 0, with the
    invoice) or ``transfer`` (a merged or deleted sub-account's balance leaving it,
    amount < 0, or joining the target's or the partner's, amount > 0; the reason names
    the merge or deletion). ``balance`` is the pool's running balance after this entry."""

    id: int
    kind: str
    amount: str
    balance: str | None
    currency: str
    sub_account_id: int | None
    sub_account_name: str | None
    reason: str
    invoice_id: int | None
    invoice_number: int | None
    created_at: dt.datetime
    created_by: str


class CreditLedgerOut(Schema):
    items: list[CreditEntryOut]
    count: int


class CreditBalanceOut(Schema):
    sub_account_id: int | None
    name: str
    balance: str


class CreditBalancesOut(Schema):
    """``partner`` is the partner's own balance; ``sub_accounts`` those of sub-accounts."""

    currency: str
    partner: str
    sub_accounts: list[CreditBalanceOut]
    total: str


class BillingSettingsOut(Schema):
    """``line_price`` is charged for the current cycle; ``next_line_price`` from
    ``next_period_month`` on (a change applies from the next cycle)."""

    currency: str
    timezone: str
    period_month: str
    line_price: str
    next_period_month: str
    next_line_price: str
    prorate_new_lines: bool
    credit_disconnects: bool


class BillingSettingsPatchIn(Schema):
    """Staff only. Omitted fields are kept. A new ``line_price`` applies from the next
    cycle; policies apply to invoices issued from now on."""

    model_config = ConfigDict(extra="forbid")

    line_price: DecimalIn | None = None
    prorate_new_lines: StrictBool | None = None
    credit_disconnects: StrictBool | None = None


# --- Resale prices and margins (domain §8.1) -------------------------------------------------


class ResaleSettingsOut(Schema):
    """The partner's default resale price: what it charges its clients per line per month,
    in ``currency``, unless a sub-account has its own (``resale_price`` on the
    SubAccount). ``default_resale_price`` is as set (null: none, so a sub-account without
    its own price gets no statement). A change applies from the next cycle: while one is
    pending, ``effective_month`` names that cycle (null otherwise) and ``in_force`` is the
    default of the current cycle, ``period_month``."""

    currency: str
    period_month: str
    default_resale_price: str | None
    effective_month: str | None
    in_force: str | None


class ResaleSettingsPatchIn(Schema):
    """Admins and billing people (and staff with ``partner``). ``default_resale_price``:
    a decimal string (or number) ≥ 0 with at most the currency's decimals, or null to
    clear it; omitted, nothing changes. It applies from the next cycle."""

    model_config = ConfigDict(extra="forbid")

    default_resale_price: DecimalIn | None = None


class MarginItemOut(Schema):
    """One section of the period's invoice (``sub_account_id`` null for a purged
    sub-account): ``cost`` is its total (after discounts and credits), ``resale`` its
    client statement's total ("0.00" without one), ``margin`` = resale − cost and
    ``margin_rate`` = margin / resale as a decimal ratio such as "0.3750" (null when
    resale is zero)."""

    sub_account_id: int | None
    name: str
    kind: str
    cost: str
    resale: str
    margin: str
    margin_rate: str | None


class MarginsOut(Schema):
    """Margins of one period (``period``, the invoice's month), in invoice order with the
    Available pool first, so ``cost`` is the invoice's total. ``invoice_id`` is null, and
    ``items`` empty, for a period with no invoice."""

    currency: str
    period: str
    invoice_id: int | None
    items: list[MarginItemOut]
    cost: str
    resale: str
    margin: str
    margin_rate: str | None
