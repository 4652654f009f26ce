"""What a partner is billed for each cycle, and the staff grants that change it.

Invoice, InvoiceSection and InvoiceItem hold issued invoices; PriceChange is the
history of the partner's price; Discount and the CreditEntry ledger are what staff
grant and what issuing applies (domain §3, in that order: recurring, prorations,
discounts, credits).
"""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.db.models import Q

from portal.core.tenancy import TenantQuerySet

# Amounts are stored already rounded to the currency's minor unit (billing.money.quantize);
# four decimal places hold every ISO 4217 minor unit the portal bills in.
MONEY = {"max_digits": 18, "decimal_places": 4}


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    FINALIZED = "finalized", "Finalized"


class Invoice(models.Model):
    """The invoice of one partner for one billing cycle, issued in advance at its start.

    Invariants:
    - at most one invoice per partner and cycle (``period_month``, the 1st of the local
      month), so re-running billing never duplicates; ``number`` runs 1, 2, 3 … per partner;
    - ``period_start``/``period_end`` are the cycle's ``[S, E)`` as UTC instants in the
      partner's ``timezone`` (snapshotted with ``currency`` and ``unit_price``, so later
      changes to the partner never alter an issued invoice);
    - ``total`` is the sum of its sections' totals, each the sum of its rounded items;
    - ``status`` moves ``draft`` → ``finalized`` once (``finalized_at`` set exactly then);
      a finalized invoice and its sections and items never change.
    """

    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="+")
    number = models.PositiveIntegerField()
    period_month = models.DateField(help_text="The 1st of the cycle's month, local time.")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    timezone = models.CharField(max_length=64)
    currency = models.CharField(max_length=3)
    unit_price = models.DecimalField(
        **MONEY, help_text="The price per line charged for this cycle."
    )
    status = models.CharField(
        max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT
    )
    issued_at = models.DateTimeField()
    finalized_at = models.DateTimeField(null=True, blank=True)
    total = models.DecimalField(**MONEY)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "period_month"], name="invoice_one_per_partner_period"
            ),
            models.UniqueConstraint(
                fields=["partner", "number"], name="invoice_number_per_partner"
            ),
            models.CheckConstraint(condition=Q(number__gte=1), name="invoice_number_positive"),
            models.CheckConstraint(
                condition=Q(period_end__gt=models.F("period_start")),
                name="invoice_period_not_empty",
            ),
            models.CheckConstraint(
                condition=(
                    Q(status=InvoiceStatus.DRAFT, finalized_at__isnull=True)
                    | Q(status=InvoiceStatus.FINALIZED, finalized_at__isnull=False)
                ),
                name="invoice_finalized_at_iff_finalized",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "-period_month"], name="invoice_partner_month"),
            # The finalisation queue crosses partners, like the order queue: it is small
            # (drafts live for days) and partial, so it stays tiny.
            models.Index(
                fields=["issued_at"],
                condition=Q(status=InvoiceStatus.DRAFT),
                name="invoice_drafts_by_issue",
            ),
        ]

    def __str__(self) -> str:
        return f"Invoice {self.number} ({self.period_month:%Y-%m})"


class InvoiceSection(models.Model):
    """One sub-account's part of an invoice (the Available pool included).

    Invariants:
    - at most one section per sub-account on an invoice; ``name`` is the sub-account's
      name when the invoice was issued ("Available" for the pool, "X (merged into Y)"
      for a merged source), kept even after the sub-account is renamed or purged;
    - ``line_quantity`` is the number of lines it held at the cycle's start;
    - ``recurring`` + ``prorations`` + ``discounts`` + ``credits`` = ``total``, each
      the sum of the matching rounded items (discounts and credits are ≤ 0); the
      total may be negative when the section holds only proration credits.
    """

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="sections")
    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="+")
    sub_account = models.ForeignKey(
        "partners.SubAccount", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    name = models.CharField(max_length=300)
    kind = models.CharField(max_length=16, help_text="The sub-account's kind when issued.")
    position = models.PositiveIntegerField(help_text="Order on the invoice: Available first.")
    line_quantity = models.PositiveIntegerField(default=0)
    recurring = models.DecimalField(**MONEY, default=0)
    prorations = models.DecimalField(**MONEY, default=0)
    discounts = models.DecimalField(**MONEY, default=0)
    credits = models.DecimalField(**MONEY, default=0)
    total = models.DecimalField(**MONEY, default=0)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["invoice", "sub_account"], name="section_one_per_sub_account"
            ),
            models.CheckConstraint(
                condition=Q(discounts__lte=0, credits__lte=0, recurring__gte=0),
                name="section_amount_signs",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "invoice", "position"], name="section_partner_invoice"),
            models.Index(fields=["partner", "sub_account"], name="section_partner_sub"),
        ]

    def __str__(self) -> str:
        return self.name


class InvoiceItemKind(models.TextChoices):
    RECURRING = "recurring", "Recurring"
    MOVE_CREDIT = "move_credit", "Move credit"
    MOVE_CHARGE = "move_charge", "Move charge"
    ACTIVATION = "activation", "New line"
    DISCONNECT_CREDIT = "disconnect_credit", "Disconnect credit"
    DISCOUNT = "discount", "Discount"
    CREDIT = "credit", "Credit"


PRORATION_KINDS = (
    InvoiceItemKind.MOVE_CREDIT,
    InvoiceItemKind.MOVE_CHARGE,
    InvoiceItemKind.ACTIVATION,
    InvoiceItemKind.DISCONNECT_CREDIT,
)


class InvoiceItem(models.Model):
    """One rounded amount on a section: a recurring charge or a proration of one line.

    Invariants:
    - ``amount`` is rounded half-up to the currency's minor unit on its own;
      ``recurring`` = round(quantity × unit_price); a proration is
      ±round(unit_price × days / n) for the ``days`` from ``day`` to the end of the
      previous cycle (``service_start``..``service_end``);
    - charges are ≥ 0 and credits ≤ 0; a move gives a credit on the source's section
      and a charge of exactly the opposite amount on the target's section;
    - proration items name their ``line`` and, for moves, the ``other_sub_account``
      (with its name snapshotted in ``other_name``);
    - a ``discount`` item names its ``discount``, a ``credit`` item the ledger entry
      (``credit_entry``) that recorded the credit leaving the balance; both are ≤ 0.
    """

    # A large invoice stores some 200,000 items at once, and every index is work on each
    # of them: only ``section`` (read by section) and the partner-led composites are
    # indexed; ``partner`` and ``line`` lead or join those; ``other_sub_account`` is never
    # searched (and sub-accounts are never deleted: a purge keeps the row); discounts and
    # credit entries, on a few items only, have partial indexes.
    section = models.ForeignKey(InvoiceSection, on_delete=models.CASCADE, related_name="items")
    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    kind = models.CharField(max_length=24, choices=InvoiceItemKind.choices)
    line = models.ForeignKey(
        "lines.Line",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    other_sub_account = models.ForeignKey(
        "partners.SubAccount",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    other_name = models.CharField(max_length=300, blank=True)
    service_start = models.DateField()
    service_end = models.DateField()
    day = models.PositiveSmallIntegerField(null=True, blank=True)
    days = models.PositiveSmallIntegerField()
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(**MONEY)
    amount = models.DecimalField(**MONEY)
    description = models.CharField(max_length=500)
    discount = models.ForeignKey(
        "Discount",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    credit_entry = models.ForeignKey(
        "CreditEntry",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(
                        kind__in=[
                            InvoiceItemKind.RECURRING,
                            InvoiceItemKind.MOVE_CHARGE,
                            InvoiceItemKind.ACTIVATION,
                        ],
                        amount__gte=0,
                    )
                    | Q(
                        kind__in=[
                            InvoiceItemKind.MOVE_CREDIT,
                            InvoiceItemKind.DISCONNECT_CREDIT,
                            InvoiceItemKind.DISCOUNT,
                            InvoiceItemKind.CREDIT,
                        ],
                        amount__lte=0,
                    )
                ),
                name="item_sign_follows_kind",
            ),
            models.CheckConstraint(
                condition=Q(service_end__gte=models.F("service_start")),
                name="item_service_period_order",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "section"], name="item_partner_section"),
            models.Index(fields=["partner", "line"], name="item_partner_line"),
            models.Index(
                fields=["discount"], condition=Q(discount__isnull=False), name="item_discount"
            ),
            models.Index(
                fields=["credit_entry"],
                condition=Q(credit_entry__isnull=False),
                name="item_credit_entry",
            ),
        ]

    def __str__(self) -> str:
        return self.description


class PriceChange(models.Model):
    """One change of the partner's price per line, effective from a cycle's start.

    Appended, never rewritten: the price of cycle M is the ``price`` of the last change
    (by ``effective_month``, then id) effective at or before M; before the first change
    it is that change's ``previous_price``; with no change at all, ``Partner.line_price``.
    A change made during cycle C is effective from C+1, so an invoice already issued, or
    the one of the current cycle, keeps its price (domain §3 "Prices").
    """

    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="+")
    effective_month = models.DateField(help_text="The 1st of the first cycle at this price.")
    previous_price = models.DecimalField(**MONEY)
    price = models.DecimalField(**MONEY)
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=200)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(price__gte=0, previous_price__gte=0), name="price_change_nonneg"
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "effective_month"], name="price_change_partner_month"),
        ]


class DiscountKind(models.TextChoices):
    PERCENT = "percent", "Percentage"
    AMOUNT = "amount", "Fixed amount"


class Discount(models.Model):
    """A reduction of recurring charges granted by staff (never of prorations).

    Invariants:
    - ``sub_account`` null = the whole invoice (spread over sections in proportion to
      what is left of their recurring charges, largest remainder); otherwise one
      sub-account's section;
    - ``kind`` percent: 0 < value ≤ 100; amount: value > 0 in the partner's currency,
      per invoice, never more than the recurring charge it applies to;
    - it applies to the invoices of cycles ``first_month`` … ``last_month`` (null =
      until removed) issued while it is not removed; removing it (``removed_at``) never
      changes an invoice already issued. Rows are kept for the invoices naming them.
    """

    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="+")
    sub_account = models.ForeignKey(
        "partners.SubAccount", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    name = models.CharField(max_length=120, help_text="Shown on the invoice items it gives.")
    kind = models.CharField(max_length=16, choices=DiscountKind.choices)
    value = models.DecimalField(**MONEY)
    first_month = models.DateField(help_text="The 1st of the first cycle it applies to.")
    last_month = models.DateField(
        null=True, blank=True, help_text="The 1st of the last cycle; empty = until removed."
    )
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=200)
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_by = models.CharField(max_length=200, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(value__gt=0)
                & (~Q(kind=DiscountKind.PERCENT) | Q(value__lte=100))
                & Q(kind__in=DiscountKind.values),
                name="discount_value_range",
            ),
            models.CheckConstraint(
                condition=Q(last_month__isnull=True) | Q(last_month__gte=models.F("first_month")),
                name="discount_months_order",
            ),
            models.CheckConstraint(
                condition=Q(removed_at__isnull=True) | ~Q(removed_by=""),
                name="discount_removed_by_someone",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "first_month"], name="discount_partner_month"),
        ]

    def __str__(self) -> str:
        return self.name


class CreditEntryKind(models.TextChoices):
    GRANT = "grant", "Granted"
    APPLY = "apply", "Applied to an invoice"
    TRANSFER = "transfer", "Transferred"


class CreditEntry(models.Model):
    """The credit ledger: append-only entries of a balance, never updated or deleted.

    A balance ("pool") is the partner's own (``sub_account`` null) or one
    sub-account's. Its running balance is the sum of its entries in id order.

    Invariants:
    - ``grant``: amount > 0, a ``reason``, no invoice;
    - ``apply``: amount < 0 and the ``invoice`` it reduced; at most one per pool and
      invoice (two partial unique constraints), so re-running or concurrently running
      billing can never apply a credit twice: the invoice's own unique key already makes
      a second issue fail, and these keys would refuse a second application even then;
    - ``transfer``: a balance following its sub-account (domain §3): when a sub-account is
      merged its whole balance moves to the target's, when its deletion is scheduled to
      the partner's. Always a pair written together: amount < 0 on the pool it leaves,
      the same amount > 0 on the pool it joins, each naming the other pool in
      ``counterpart`` (null on the leaving entry = the partner's balance) and the merge or
      deletion in ``reason``; no invoice;
    - issuing never applies more than the balance and a transfer moves exactly the
      balance (the partner row is locked while either runs), so every pool's balance
      stays ≥ 0.
    """

    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="+")
    sub_account = models.ForeignKey(
        "partners.SubAccount", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=CreditEntryKind.choices)
    amount = models.DecimalField(**MONEY)
    reason = models.CharField(max_length=500, blank=True)
    invoice = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    counterpart = models.ForeignKey(
        "partners.SubAccount",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        help_text="For a transfer: the sub-account whose balance it came from or went to "
        "(empty when it went to the partner's).",
    )
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=200)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(kind=CreditEntryKind.GRANT, amount__gt=0, invoice__isnull=True)
                    & ~Q(reason="")
                )
                | Q(kind=CreditEntryKind.APPLY, amount__lt=0, invoice__isnull=False)
                | (
                    Q(kind=CreditEntryKind.TRANSFER, invoice__isnull=True)
                    & ~Q(amount=0)
                    & ~Q(reason="")
                ),
                name="credit_entry_kind_shape",
            ),
            models.UniqueConstraint(
                fields=["invoice", "sub_account"],
                condition=Q(kind=CreditEntryKind.APPLY, sub_account__isnull=False),
                name="credit_applied_once_per_sub_account",
            ),
            models.UniqueConstraint(
                fields=["invoice"],
                condition=Q(kind=CreditEntryKind.APPLY, sub_account__isnull=True),
                name="credit_applied_once_per_partner",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "sub_account", "id"], name="credit_partner_pool"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount}"


class SummaryAccrual(models.Model):
    """The worker's precomputed billing summary of a partner's current cycle, through one
    instant (``through``): one row (:class:`SummaryAccrualRow`) per section of the cycle's
    invoice, with the prorations accruing for the next invoice summed into it, plus a row
    per other sub-account with accruing items. The billing summary reads it in one
    statement and adds only the lines changed since ``through``; written by
    ``proration_accruals_precompute`` every few minutes. Derived data, never billed: the
    invoice always computes its prorations from the assignment history.

    Invariants:
    - one per partner, updated in place (its rows too): a read is one statement, which
      sees one computation whole, so no older computation needs to stay;
    - ``through`` was at least ``ACCRUAL_LAG`` in the past when written, and history is
      appended at the instant of each change, so what the rows sum never changes;
    - keyed by what the figures depend on besides history (the cycle, the price charged,
      the two proration policies, the invoice whose sections the rows copy, none before
      it is issued): a read whose key differs ignores it, and the next run recomputes;
    - ``invoice_id`` is a plain id (a cache holds no lock on an invoice).
    """

    # Indexed by its unique constraint.
    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    period_month = models.DateField()
    price = models.DecimalField(**MONEY)
    prorate_new_lines = models.BooleanField()
    credit_disconnects = models.BooleanField()
    invoice_id = models.BigIntegerField(null=True, blank=True)
    through = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["partner"], name="summary_accrual_one_per_partner"),
        ]

    def __str__(self) -> str:
        return f"{self.period_month:%Y-%m} through {self.through:%Y-%m-%d %H:%M}"


class SummaryAccrualRow(models.Model):
    """One row of a :class:`SummaryAccrual`, shaped like the billing summary's row: the
    section's figures as issued (``position`` its order on the invoice; null for a
    sub-account without a section, whose name is read when shown) and the prorations
    accruing through the summary's instant, as integer minor units (exact on SQLite as on
    PostgreSQL, and quick to read) with the number of items they sum. A sub-account
    without a section whose items cancel out keeps its row while it has items; one with no
    items has none.

    ``sub_account_id`` is a plain id: a cache row holds no lock on the sub-account and
    never blocks its purge."""

    # Indexed by its constraint and by the read's index (its rows in order).
    summary = models.ForeignKey(
        SummaryAccrual, on_delete=models.CASCADE, related_name="rows", db_index=False
    )
    position = models.PositiveIntegerField(null=True, blank=True)
    sub_account_id = models.BigIntegerField(null=True, blank=True)
    name = models.CharField(max_length=300, blank=True)
    line_quantity = models.PositiveIntegerField(default=0)
    recurring = models.DecimalField(**MONEY, default=0)
    prorations = models.DecimalField(**MONEY, default=0)
    discounts = models.DecimalField(**MONEY, default=0)
    credits = models.DecimalField(**MONEY, default=0)
    accruing_units = models.BigIntegerField(default=0)
    accruing_items = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["summary", "sub_account_id"], name="summary_accrual_row_once"
            ),
        ]
        indexes = [models.Index(fields=["summary", "position"], name="summary_accrual_row_order")]

    def __str__(self) -> str:
        return f"{self.name or self.sub_account_id}: {self.accruing_units}"


# --- Recharging clients (domain §8.1) -----------------------------------------------------


class ResalePriceChange(models.Model):
    """One change of what a partner charges its own clients per line per month, effective
    from a cycle's start: the partner's default (``sub_account`` null) or one
    sub-account's override.

    Appended, never rewritten, like :class:`PriceChange`: the resale price of a
    sub-account for cycle M is the ``price`` of its last override effective at or before
    M (by ``effective_month``, then id) unless that is null ("the partner's default"),
    else the ``price`` of the partner's last default effective by then, unless null or
    absent ("no resale price": no statement). The Available pool never has one. A change
    made during cycle C is effective from C+1, so a statement already issued, or the one
    of the current cycle, keeps its price.
    """

    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="+")
    sub_account = models.ForeignKey(
        "partners.SubAccount",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        help_text="Empty: the partner's default.",
    )
    effective_month = models.DateField(help_text="The 1st of the first cycle at this price.")
    price = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="Empty: no price of its own."
    )
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=200)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(price__isnull=True) | Q(price__gte=0), name="resale_price_nonneg"
            ),
        ]
        indexes = [
            models.Index(
                fields=["partner", "sub_account", "effective_month"],
                name="resale_change_partner_sub",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.price} from {self.effective_month:%Y-%m}"


class Statement(models.Model):
    """What a partner charges one of its clients (a sub-account) for a cycle, issued with
    the partner's invoice of that cycle (domain §8.1).

    Invariants:
    - at most one per sub-account and invoice, so re-running billing never issues a
      second; ``number`` runs 1, 2, 3 … per sub-account;
    - its items mirror the sub-account's section of ``invoice``: every item has exactly
      one invoice item with the same line, days and kind, priced at the resale price in
      force for the cycle it charges (recurring) or corrects (prorations), rounded on its
      own; it never carries the provider's price, discounts or credits;
    - ``recurring`` + ``prorations`` = ``total``, each the sum of its rounded items;
    - the reseller (``partner_name``) and the client (name, contact, internal reference)
      are snapshotted when issued; it never changes once the invoice is finalized (and
      nothing changes it before).
    """

    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="+")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="statements")
    sub_account = models.ForeignKey(
        "partners.SubAccount", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    number = models.PositiveIntegerField()
    period_month = models.DateField(help_text="The 1st of the cycle's month, local time.")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    timezone = models.CharField(max_length=64)
    currency = models.CharField(max_length=3)
    unit_price = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="The resale price of this cycle, if any."
    )
    partner_name = models.CharField(max_length=300)
    name = models.CharField(max_length=300)
    contact_name = models.CharField(max_length=120, blank=True)
    contact_email = models.CharField(max_length=254, blank=True)
    contact_phone = models.CharField(max_length=32, blank=True)
    internal_reference = models.CharField(max_length=120, blank=True)
    line_quantity = models.PositiveIntegerField(default=0)
    recurring = models.DecimalField(**MONEY, default=0)
    prorations = models.DecimalField(**MONEY, default=0)
    total = models.DecimalField(**MONEY, default=0)
    issued_at = models.DateTimeField()

    objects = TenantQuerySet.as_manager()
    # A partner's client reads the statements of its granted sub-accounts (domain §8.2).
    tenant_sub_account_field: ClassVar[str] = "sub_account_id"

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["invoice", "sub_account"], name="statement_one_per_invoice_sub"
            ),
            models.UniqueConstraint(
                fields=["sub_account", "number"], name="statement_number_per_sub"
            ),
            models.CheckConstraint(condition=Q(number__gte=1), name="statement_number_positive"),
            models.CheckConstraint(condition=Q(recurring__gte=0), name="statement_recurring_sign"),
        ]
        indexes = [
            models.Index(fields=["partner", "-period_month", "name"], name="statement_by_period"),
            # Numbers grow with the period per sub-account: one index lists a client's
            # statements newest first and gives issuing each sub-account's last number.
            models.Index(fields=["partner", "sub_account", "-number"], name="statement_by_sub"),
        ]

    def __str__(self) -> str:
        return f"Statement {self.number} of {self.name} ({self.period_month:%Y-%m})"


class StatementItem(models.Model):
    """One rounded amount on a statement: a recurring charge or a proration of one line,
    with the same kind, line, day and days as its invoice item and the sign rules of
    :class:`InvoiceItem` (charges ≥ 0, credits ≤ 0). Discounts and credits never appear.
    """

    statement = models.ForeignKey(Statement, on_delete=models.CASCADE, related_name="items")
    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    kind = models.CharField(max_length=24, choices=InvoiceItemKind.choices)
    line = models.ForeignKey(
        "lines.Line",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    service_start = models.DateField()
    service_end = models.DateField()
    day = models.PositiveSmallIntegerField(null=True, blank=True)
    days = models.PositiveSmallIntegerField()
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(**MONEY)
    amount = models.DecimalField(**MONEY)
    description = models.CharField(max_length=500)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(
                        kind__in=[
                            InvoiceItemKind.RECURRING,
                            InvoiceItemKind.MOVE_CHARGE,
                            InvoiceItemKind.ACTIVATION,
                        ],
                        amount__gte=0,
                    )
                    | Q(
                        kind__in=[
                            InvoiceItemKind.MOVE_CREDIT,
                            InvoiceItemKind.DISCONNECT_CREDIT,
                        ],
                        amount__lte=0,
                    )
                ),
                name="statement_item_sign_follows_kind",
            ),
            models.CheckConstraint(
                condition=Q(service_end__gte=models.F("service_start")),
                name="statement_item_service_order",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "statement"], name="statement_item_partner_st"),
        ]

    def __str__(self) -> str:
        return self.description
