"""Scoped reads of billing, and the set-based computation of what an invoice holds.

The invoice of cycle N is computed from assignment history only (nothing is
counted incrementally), so issuing it late, or twice, gives the same answer:

- **recurring**: one ``GROUP BY`` over the assignment periods open at the cycle's
  start ``S``: lines held per sub-account;
- **prorations** for cycle N−1: one SQL statement (:func:`holder_changes`) finds, for
  the lines whose periods start or end inside that cycle, the days on which the
  holder *at the end of the day* changes. Python only turns those few change rows
  into rounded items.
"""

from __future__ import annotations

import datetime as dt
import gc
import itertools
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache

import phonenumbers
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import (
    Case,
    Count,
    F,
    Max,
    Min,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    When,
    Window,
)

from portal.accounts.policies import require
from portal.accounts.principal import Principal
from portal.audit.models import AuditEvent
from portal.billing import adjustments
from portal.billing.models import (
    PRORATION_KINDS,
    CreditEntry,
    CreditEntryKind,
    Discount,
    DiscountKind,
    Invoice,
    InvoiceItem,
    InvoiceItemKind,
    InvoiceSection,
    InvoiceStatus,
    PriceChange,
    SummaryAccrual,
    SummaryAccrualRow,
)
from portal.billing.money import minor_units, quantize, quantum
from portal.billing.periods import Cycle, cycle_containing, cycles_from
from portal.billing.policies import (
    can_read_adjustments,
    can_read_billing_summary,
    can_read_invoices,
)
from portal.billing.proration import prorated_amount
from portal.core import clock
from portal.core.errors import BadRequest, NotFound
from portal.core.tenancy import db_id
from portal.lines.models import AssignmentPeriod, Line
from portal.partners.models import Partner, SubAccount, SubAccountKind, SubAccountStatus
from portal.partners.selectors import partner_for

# --- Scoped reads ----------------------------------------------------------------------


def invoice_list(*, principal: Principal, status: str | None = None) -> QuerySet[Invoice]:
    require(can_read_invoices(principal), "Your role may not read invoices.")
    qs = Invoice.objects.visible_to(principal)
    if status:
        if status not in InvoiceStatus.values:
            raise BadRequest(f"Unknown status {status!r}; use draft or finalized.")
        qs = qs.filter(status=status)
    return qs.order_by("-period_month", "partner_id", "-pk")


def invoice_get(*, principal: Principal, invoice_id: int) -> Invoice:
    """The invoice with its sections and their items, in three queries whatever its size."""
    require(can_read_invoices(principal), "Your role may not read invoices.")
    qs = Invoice.objects.prefetch_related(
        Prefetch(
            "sections",
            queryset=InvoiceSection.objects.order_by("position", "pk").prefetch_related(
                Prefetch(
                    "items",
                    queryset=InvoiceItem.objects.select_related("line")
                    .only(*_ITEM_FIELDS)
                    .order_by("pk"),
                )
            ),
        )
    )
    return qs.get_visible(principal, invoice_id, what="Invoice")


def invoice_head_get(*, principal: Principal, invoice_id: object) -> Invoice:
    """The invoice alone, without its sections: the invoice page reads those a page at a
    time (:func:`invoice_section_page`), an invoice may have 10,000 of them."""
    require(can_read_invoices(principal), "Your role may not read invoices.")
    return Invoice.objects.get_visible(principal, invoice_id, what="Invoice")


@dataclass(frozen=True, slots=True)
class SectionSums:
    """The sums of an invoice's section columns: the summary table's totals row."""

    count: int
    line_quantity: int
    recurring: Decimal
    prorations: Decimal
    discounts: Decimal
    credits: Decimal
    total: Decimal


def invoice_section_sums(invoice: Invoice) -> SectionSums:
    """Each column of the invoice's sections summed, in one aggregate. Every item belongs
    to a section (whole-invoice discounts and the partner's credit are spread over them),
    so ``total`` is the invoice's total."""
    zero = Decimal(0)
    sums = InvoiceSection.objects.filter(partner_id=invoice.partner_id, invoice=invoice).aggregate(
        count=Count("id"),
        line_quantity=Sum("line_quantity"),
        recurring=Sum("recurring"),
        prorations=Sum("prorations"),
        discounts=Sum("discounts"),
        credits=Sum("credits"),
        total=Sum("total"),
    )
    return SectionSums(
        count=sums["count"],
        line_quantity=sums["line_quantity"] or 0,
        **{k: sums[k] or zero for k in ("recurring", "prorations", "discounts", "credits")},
        total=sums["total"] or zero,
    )


def invoice_sections(invoice: Invoice) -> QuerySet[InvoiceSection]:
    """The invoice's sections in invoice order (Available first), without their items."""
    return InvoiceSection.objects.filter(partner_id=invoice.partner_id, invoice=invoice).order_by(
        "position", "pk"
    )


def invoice_section_get(
    *, principal: Principal, invoice_id: object, sub_account_id: object
) -> InvoiceSection:
    """A sub-account's section of an invoice, with its invoice (one query). The
    sub-account's id names it: the address stays the same for every invoice, and a
    sub-account's page can link to its section of each."""
    require(can_read_invoices(principal), "Your role may not read invoices.")
    invoice_key = db_id(invoice_id)
    found = (
        InvoiceSection.objects.visible_to(principal)
        .filter_id("sub_account_id", sub_account_id)
        .select_related("invoice")
        .filter(invoice_id=invoice_key)
        .first()
        if invoice_key is not None
        else None
    )
    if found is None:
        raise NotFound(f"Invoice {invoice_id} has no section for sub-account {sub_account_id}.")
    return found


def invoice_section_items(section: InvoiceSection) -> QuerySet[InvoiceItem]:
    """A section's items in invoice order, each with its line's number."""
    return (
        InvoiceItem.objects.filter(partner_id=section.partner_id, section=section)
        .select_related("line")
        .only(*_ITEM_FIELDS)
        .order_by("pk")
    )


def invoice_items_of(sections: list[InvoiceSection], limit: int) -> list[InvoiceItem]:
    """The items of ``sections`` (of one invoice) in invoice order, at most ``limit``:
    one query, whatever the sections hold."""
    if not sections:
        return []
    return list(
        InvoiceItem.objects.filter(
            partner_id=sections[0].partner_id, section_id__in=[s.pk for s in sections]
        )
        .select_related("line")
        .only(*_ITEM_FIELDS)
        .order_by("pk")[:limit]
    )


_ITEM_FIELDS = (
    "pk",
    "section_id",
    "kind",
    "line_id",
    "line__number",
    "other_sub_account_id",
    "other_name",
    "service_start",
    "service_end",
    "day",
    "days",
    "quantity",
    "unit_price",
    "amount",
    "description",
    "discount_id",
    "credit_entry_id",
)


def invoice_for_cycle(partner_id: int, cycle: Cycle) -> Invoice | None:
    return Invoice.objects.filter(partner_id=partner_id, period_month=cycle.first_day).first()


def next_invoice_cycle(partner: Partner, now: dt.datetime | None = None) -> Cycle:
    """The cycle of the next invoice to be issued: the current one until its invoice
    exists, then the next; the next as well when the current cycle has nothing to bill
    (it never gets an invoice, see :func:`cycle_has_charges`). A grant made now applies
    from this cycle's invoice."""
    cycle = cycle_containing(now or clock.now(), partner.timezone)
    if invoice_for_cycle(partner.pk, cycle) is not None or not cycle_has_charges(partner, cycle):
        return cycle.next()
    return cycle


def discount_list(
    *, principal: Principal, sub_account_id: object = None, state: str | None = None
) -> QuerySet[Discount]:
    """Discounts newest first; ``state`` ``active`` (not removed) or ``removed``."""
    require(can_read_adjustments(principal), "Your role may not see discounts.")
    qs = Discount.objects.visible_to(principal).select_related("sub_account")
    if sub_account_id is not None:
        qs = qs.filter_id("sub_account_id", sub_account_id)
    if state == "active":
        qs = qs.filter(removed_at__isnull=True)
    elif state == "removed":
        qs = qs.filter(removed_at__isnull=False)
    elif state:
        raise BadRequest(f"Unknown state {state!r}; use active or removed.")
    return qs.order_by("-pk")


def discount_get(*, principal: Principal, discount_id: object) -> Discount:
    require(can_read_adjustments(principal), "Your role may not see discounts.")
    return Discount.objects.select_related("sub_account").get_visible(
        principal, discount_id, what="Discount"
    )


def credit_ledger(*, principal: Principal, sub_account_id: object = None) -> QuerySet[CreditEntry]:
    """Ledger entries newest first, each with ``balance``: its pool's running balance
    after it (a window sum in id order, so it is derived, never stored)."""
    require(can_read_adjustments(principal), "Your role may not see credits.")
    qs = CreditEntry.objects.visible_to(principal)
    if sub_account_id is not None:
        qs = qs.filter_id("sub_account_id", sub_account_id)
    running = Window(
        Sum("amount"),
        partition_by=[F("partner_id"), F("sub_account_id")],
        order_by=F("id").asc(),
    )
    return qs.annotate(balance=running).select_related("sub_account", "invoice").order_by("-pk")


@dataclass(frozen=True, slots=True)
class CreditBalance:
    sub_account_id: int | None
    name: str
    balance: Decimal


def credit_balance_list(*, principal: Principal) -> tuple[Partner, list[CreditBalance]]:
    """The partner's credit balances, its own first (always listed), then each
    sub-account with credit left or ever granted, by name."""
    require(can_read_adjustments(principal), "Your role may not see credits.")
    partner = partner_for(principal)
    balances = credit_balances(partner_id=partner.pk, keep_zero=True)
    subs = _names(partner.pk, {pk for pk in balances if pk is not None})
    rows = [CreditBalance(None, partner.name, balances.get(None, Decimal(0)))]
    rows += sorted(
        (CreditBalance(pk, section_name(subs[pk]), b) for pk, b in balances.items() if pk),
        key=lambda r: (r.name.lower(), r.sub_account_id),
    )
    return partner, rows


@dataclass(frozen=True, slots=True)
class BillingSettings:
    partner: Partner
    current_cycle: Cycle
    current_price: Decimal
    next_price: Decimal
    price_changes: list[PriceChange]


def billing_settings(*, principal: Principal, now: dt.datetime | None = None) -> BillingSettings:
    """The price of the current cycle and of the next, and the policies."""
    require(can_read_adjustments(principal), "Your role may not see billing settings.")
    partner = partner_for(principal)
    cycle = cycle_containing(now or clock.now(), partner.timezone)
    invoice = invoice_for_cycle(partner.pk, cycle)
    current = invoice.unit_price if invoice is not None else price_for_cycle(partner, cycle)
    return BillingSettings(
        partner=partner,
        current_cycle=cycle,
        current_price=current,
        next_price=price_for_cycle(partner, cycle.next()),
        price_changes=list(
            PriceChange.objects.filter(partner_id=partner.pk).order_by("-effective_month", "-pk")
        ),
    )


# --- The computation ---------------------------------------------------------------------


def lines_held_at(partner_id: int, instant: dt.datetime) -> dict[int, int]:
    """Lines held per sub-account at ``instant``: one ``GROUP BY`` over the periods."""
    rows = (
        AssignmentPeriod.objects.filter(partner_id=partner_id, start__lte=instant)
        .filter(Q(end__isnull=True) | Q(end__gt=instant))
        .values("sub_account_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["sub_account_id"]: row["n"] for row in rows}


@dataclass(frozen=True, slots=True)
class HolderChange:
    """The holder of a line at the end of ``day`` differs from the end of the day before.

    ``before`` is None when the line was not active then (a new line), ``after`` is
    None when it is no longer active (a disconnected line). "The end of day 0" is the
    cycle's start itself, the instant the invoice charged in advance.
    """

    line_id: int
    number: str
    day: int
    before: int | None
    after: int | None


def holder_changes(
    *, partner_id: int, cycle: Cycle, until: dt.datetime | None = None
) -> list[HolderChange]:
    """Every change of holder, day by day, of the partner's lines during ``cycle``.

    One statement. Python supplies the instants that end each day (local midnights,
    so DST is already handled) as a ``VALUES`` list; ``until`` (an instant inside the
    cycle, e.g. now) stops the days there, the last one ending at ``until``.

    In SQL: ``changed`` keeps the lines with a period starting or ending strictly
    inside the cycle (the others have one holder all along and give nothing). Each
    of their periods covers a contiguous range of day ends, ``first_day..last_day``
    (day 0 is the cycle's start, held by the period open *at* it; day d ≥ 1 is held by
    the period open just *before* its end, so a move at midnight belongs to the next
    day); a period that begins and ends between two day ends covers none, which is
    how several moves in one day collapse into one. ``LAG``/``LEAD`` over a line's
    remaining periods then give the changes: a period that starts a range after
    another holder's range is a move (or a new line when nothing held it the day
    before); a range that ends before the last day with nothing after it is a
    disconnection.

    Merges never prorate (SPEC §3): a period that began because a merge moved the line
    (``via_merge``) *inside* the cycle is billed to the holder before it, as if the
    line had not moved. ``billed_run`` numbers a line's periods so that such a period
    joins the run of the one before it (chains of merges included), and
    ``FIRST_VALUE`` gives the whole run that run's first holder: the merge is then no
    change at all, and a later move in the cycle credits the source, which was charged.
    A merge at or before the cycle's start is an ordinary holder: the target was
    charged in advance.
    """
    found = _changes_sql(partner_id=partner_id, cycle=cycle, until=until)
    if found is None:
        return []
    changes, params = found
    lines = connection.ops.quote_name(Line._meta.db_table)
    sql = f"""
        {changes}
        SELECT ch.line_id, l.number, ch.day, ch.before_id, ch.after_id
        FROM changes ch JOIN {lines} l ON l.id = ch.line_id
        ORDER BY ch.line_id, ch.day
    """  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [HolderChange(*row) for row in cursor.fetchall()]


def _changes_sql(
    *,
    partner_id: int,
    cycle: Cycle,
    until: dt.datetime | None,
    since: dt.datetime | None = None,
    changed_before: dt.datetime | None = None,
) -> tuple[str, list[object]] | None:
    """The ``WITH`` clause of :func:`holder_changes` (ending with the CTE ``changes``:
    ``line_id, day, before_id, after_id``) and its parameters, for a ``SELECT`` over the
    changes to follow; None when ``until`` is at or before the cycle's start.

    ``since`` (an instant inside the cycle, e.g. a day's end) keeps only the lines with a
    period starting or ending at or after it: their changes after it are all there are
    (the changes before it are those of every line, and this leaves most out).
    ``changed_before`` (after ``until``) widens that to the lines changed before it: the
    same lines as they stood at ``until``, before their later changes."""
    ends = cycle.day_ends()
    if until is not None:
        if until <= cycle.start:
            return None
        if until < cycle.end:
            ends = [end for end in ends if end < until] + [until]
    adapt = connection.ops.adapt_datetimefield_value
    start = adapt(cycle.start)
    upper = adapt(ends[-1])
    last = len(ends)
    qn = connection.ops.quote_name
    periods = qn(AssignmentPeriod._meta.db_table)
    p_start, p_end = qn("start"), qn("end")
    # A change at the cycle's start changes nothing in it; one at a day's end starts the next.
    after = ">" if since is None else ">="
    in_cycle = f"p.partner_id = %s AND p.{p_start} < %s AND (p.{p_end} IS NULL OR p.{p_end} > %s)"
    if since is not None and connection.vendor == "postgresql":
        # A day's few changed lines: each line's periods by its index. PostgreSQL would
        # otherwise hash-join them with a scan of all the partner's periods; OFFSET 0
        # keeps it from flattening the LATERAL subquery back into that join.
        lateral = f"SELECT * FROM {periods} p WHERE p.line_id = c.line_id AND {in_cycle}"  # noqa: S608
        lines_periods = f"changed c CROSS JOIN LATERAL ({lateral} OFFSET 0) p"
    else:
        lines_periods = f"{periods} p JOIN changed c ON c.line_id = p.line_id WHERE {in_cycle}"
    params: list[object] = []
    if connection.vendor == "postgresql":
        # The day ends as one sorted array: width_bucket() counts the ends at or before an
        # instant by binary search, where a COUNT over a VALUES list scans all of them
        # for every period (most of this statement's time on a million lines).
        days = "bounds (ends) AS (SELECT %s::timestamptz[])"
        params.append([connection.ops.adapt_datetimefield_value(end) for end in ends])

        def ends_through(instant: str) -> str:
            return f"width_bucket({instant}, (SELECT ends FROM bounds))"  # noqa: S608

        # Computed once per period, not once per reference to its columns below.
        materialized = "MATERIALIZED"
    else:
        days = f"days (d, at) AS (VALUES {', '.join(['(%s, %s)'] * len(ends))})"
        for d, end in enumerate(ends, start=1):
            params += [d, connection.ops.adapt_datetimefield_value(end)]

        def ends_through(instant: str) -> str:
            return f"(SELECT COUNT(*) FROM days WHERE days.at <= {instant})"  # noqa: S608

        materialized = ""
    # Only quoted identifiers and placeholders are formatted in; values are parameters.
    sql = f"""
        WITH {days},
        changed AS (
            SELECT DISTINCT line_id FROM {periods}
            WHERE partner_id = %s
              AND (({p_start} {after} %s AND {p_start} < %s)
                   OR ({p_end} {after} %s AND {p_end} < %s))
        ),
        overlapping AS (
            SELECT p.id, p.line_id, p.sub_account_id, p.{p_start}, p.{p_end},
                   SUM(CASE WHEN p.via_merge AND p.{p_start} > %s THEN 0 ELSE 1 END) OVER (
                       PARTITION BY p.line_id ORDER BY p.{p_start}, p.id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                   ) AS billed_run
            FROM {lines_periods}
        ),
        billed AS (
            SELECT line_id, {p_start}, {p_end},
                   FIRST_VALUE(sub_account_id) OVER (
                       PARTITION BY line_id, billed_run ORDER BY {p_start}, id
                   ) AS sub_account_id
            FROM overlapping
        ),
        spans AS {materialized} (
            SELECT p.line_id, p.sub_account_id,
                   CASE WHEN p.{p_start} <= %s THEN 0
                        ELSE {ends_through(f"p.{p_start}")} + 1
                   END AS first_day,
                   CASE WHEN p.{p_end} IS NULL THEN %s
                        ELSE {ends_through(f"p.{p_end}")}
                   END AS last_day
            FROM billed p
        ),
        held AS (
            SELECT line_id, sub_account_id, first_day, last_day,
                   LAG(sub_account_id) OVER (PARTITION BY line_id ORDER BY first_day)
                       AS prev_holder,
                   LAG(last_day) OVER (PARTITION BY line_id ORDER BY first_day) AS prev_last,
                   LEAD(first_day) OVER (PARTITION BY line_id ORDER BY first_day) AS next_first
            FROM spans
            WHERE first_day <= last_day
        ),
        changes AS (
            SELECT line_id, first_day AS day,
                   CASE WHEN prev_last = first_day - 1 THEN prev_holder END AS before_id,
                   sub_account_id AS after_id
            FROM held
            WHERE first_day > 0
              AND (prev_last IS NULL OR prev_last < first_day - 1
                   OR prev_holder <> sub_account_id)
            UNION ALL
            SELECT line_id, last_day + 1 AS day, sub_account_id AS before_id, NULL AS after_id
            FROM held
            WHERE last_day < %s AND (next_first IS NULL OR next_first > last_day + 1)
        )
    """  # noqa: S608
    lower = start if since is None else connection.ops.adapt_datetimefield_value(since)
    window = upper if changed_before is None else adapt(changed_before)
    params += [partner_id, lower, window, lower, window]  # changed
    params += [start, partner_id, upper, start]  # overlapping
    params += [start, last]  # spans
    params += [last]  # disconnections
    return sql, params


@dataclass(slots=True)
class DraftItem:
    """An invoice item before it is stored (see :class:`~portal.billing.models.InvoiceItem`)."""

    sub_account_id: int
    kind: str
    amount: Decimal
    unit_price: Decimal
    service_start: dt.date
    service_end: dt.date
    days: int
    description: str
    quantity: int = 1
    day: int | None = None
    line_id: int | None = None
    line_number: str = ""
    other_sub_account_id: int | None = None
    other_name: str = ""
    discount_id: int | None = None
    # The balance a credit item comes from: None = the partner's, else a sub-account's.
    credit_pool: int | None = None


@dataclass(slots=True)
class DraftSection:
    sub_account_id: int
    name: str
    kind: str
    position: int
    line_quantity: int = 0
    items: list[DraftItem] = field(default_factory=list)
    # (number of items summed, sum per kind): items are only ever appended, so the sums
    # stand until the list grows. Issuing reads them a dozen times per section.
    _sums: tuple[int, dict[str, Decimal]] = field(default=(0, {}), repr=False, compare=False)

    def _by_kind(self) -> dict[str, Decimal]:
        counted, sums = self._sums
        if counted != len(self.items):
            sums = {}
            for item in self.items:
                sums[item.kind] = sums.get(item.kind, Decimal(0)) + item.amount
            self._sums = (len(self.items), sums)
        return sums

    def _sum(self, kinds: tuple[str, ...]) -> Decimal:
        sums = self._by_kind()
        return sum((sums[k] for k in kinds if k in sums), Decimal(0))

    @property
    def recurring(self) -> Decimal:
        return self._sum((InvoiceItemKind.RECURRING,))

    @property
    def prorations(self) -> Decimal:
        return self._sum(PRORATION_KINDS)

    @property
    def discounts(self) -> Decimal:
        return self._sum((InvoiceItemKind.DISCOUNT,))

    @property
    def credits(self) -> Decimal:
        return self._sum((InvoiceItemKind.CREDIT,))

    @property
    def total(self) -> Decimal:
        return sum(self._by_kind().values(), Decimal(0))


@dataclass(slots=True)
class DraftInvoice:
    """What the invoice of ``cycle`` holds, computed from history; nothing stored."""

    partner: Partner
    cycle: Cycle
    unit_price: Decimal
    proration_price: Decimal
    sections: list[DraftSection]

    @property
    def total(self) -> Decimal:
        return sum((s.total for s in self.sections), Decimal(0))

    def credits_applied(self) -> dict[int | None, Decimal]:
        """Credit taken from each balance (None = the partner's), positive."""
        taken: dict[int | None, Decimal] = {}
        for s in self.sections:
            for i in s.items:
                if i.kind == InvoiceItemKind.CREDIT:
                    taken[i.credit_pool] = taken.get(i.credit_pool, Decimal(0)) - i.amount
        return taken


def section_name(sub_account: SubAccount) -> str:
    """How a sub-account is named on an invoice, snapshotted when it is issued."""
    if sub_account.kind == SubAccountKind.AVAILABLE:
        return "Available"
    if sub_account.status == SubAccountStatus.MERGED and sub_account.merged_into is not None:
        return f"{sub_account.name} (merged into {sub_account.merged_into.name})"
    return sub_account.name


def display_number(e164: str) -> str:
    """``+14155550100`` as ``+1 415 555 0100`` for descriptions people read."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    formatted = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return formatted.replace("-", " ")


@lru_cache(maxsize=4096)
def _number_template(block: str, length: int) -> str:
    """How the numbers of one block (the same characters but the last four, and the same
    length) are displayed: :func:`display_number`'s answer for one of them as a format
    string with one ``{}`` per digit; "" when the formatter did more than group digits.

    Numbering plans choose a grouping by the leading digits and the length, never by
    the last four digits, so one formatting serves the whole block (``phonenumbers``
    takes ~30 µs a number: three seconds for the 100,000 moves of a large invoice).
    """
    sample = block + "0" * (length - len(block))
    shown = display_number(sample)
    if [c for c in shown if c.isdigit()] != [c for c in sample if c.isdigit()]:
        return ""
    return "".join("{}" if c.isdigit() else c.replace("{", "{{").replace("}", "}}") for c in shown)


def display_number_fast(e164: str) -> str:
    """:func:`display_number`, exactly, through the template of the number's block."""
    digits = e164[1:]
    if len(e164) > 6 and e164[0] == "+" and digits.isascii() and digits.isdigit():
        # The template has one {} per digit of a number of this length (see above).
        template = _number_template(e164[:-4], len(e164))
        if template:
            return template.format(*digits)
    return display_number(e164)


def _negated(amount: Decimal) -> Decimal:
    """``-amount``, but never a negative zero (which would print as "-0.00")."""
    return -amount if amount else amount


def _price_text(amount: Decimal, currency: str) -> str:
    return f"{quantize(amount, currency):f}"


def proration_items(
    *,
    partner: Partner,
    cycle: Cycle,
    price: Decimal,
    changes: list[HolderChange],
    names: Callable[[int, int], str],
) -> list[DraftItem]:
    """SPEC §3's prorations of ``cycle`` from its holder changes, each rounded on its own.

    ``names(sub_account_id, day)`` is how a move's item names the other sub-account: as
    it was called on the day of the change (:class:`NameHistory`), not as it is now.

    A move on day d of n gives the source −price·(n−d+1)/n and the target the same
    amount positive (computed once, negated); a new line is charged that amount (the
    full price when ``prorate_new_lines`` is off) to its holder at the end of day d; a
    disconnected line is credited the unused days only under ``credit_disconnects``,
    and never more than its section was charged for the line this cycle.
    """
    n = cycle.days
    currency = partner.currency
    last_date = cycle.date_of(n)
    items: list[DraftItem] = []
    charged: dict[int, Decimal] = {}  # line -> what its current holder was charged
    full = quantize(price, currency)
    # What depends only on the day: at most 31 distinct values for 100,000s of changes.
    per_day: dict[int, tuple[int, Decimal, dt.date, str]] = {}
    for change in changes:
        facts = per_day.get(change.day)
        if facts is None:
            days = n - change.day + 1
            facts = per_day[change.day] = (
                days,
                prorated_amount(price, days, n, currency),
                cycle.date_of(change.day),
                f"{days} of {n} days",
            )
        days, amount, when, span = facts
        number = display_number_fast(change.number)
        common = {
            "unit_price": price,
            "service_start": when,
            "service_end": last_date,
            "day": change.day,
            "days": days,
            "line_id": change.line_id,
            "line_number": change.number,
        }
        if change.line_id not in charged and change.before is not None:
            charged[change.line_id] = full  # charged in advance
        if change.before is not None and change.after is not None:
            source, target = names(change.before, change.day), names(change.after, change.day)
            items.append(
                DraftItem(
                    sub_account_id=change.before,
                    kind=InvoiceItemKind.MOVE_CREDIT,
                    amount=_negated(amount),
                    other_sub_account_id=change.after,
                    other_name=target,
                    description=f"{number} moved to {target} on {when}: {span}",
                    **common,
                )
            )
            items.append(
                DraftItem(
                    sub_account_id=change.after,
                    kind=InvoiceItemKind.MOVE_CHARGE,
                    amount=amount,
                    other_sub_account_id=change.before,
                    other_name=source,
                    description=f"{number} moved from {source} on {when}: {span}",
                    **common,
                )
            )
            charged[change.line_id] = amount
        elif change.after is not None:
            if partner.prorate_new_lines:
                description = f"{number} activated on {when}: {span}"
            else:
                amount = full
                description = f"{number} activated on {when}: full month"
            items.append(
                DraftItem(
                    sub_account_id=change.after,
                    kind=InvoiceItemKind.ACTIVATION,
                    amount=amount,
                    description=description,
                    **common,
                )
            )
            charged[change.line_id] = amount
        elif change.before is not None:
            if partner.credit_disconnects:
                credit = min(amount, charged.get(change.line_id, Decimal(0)))
                items.append(
                    DraftItem(
                        sub_account_id=change.before,
                        kind=InvoiceItemKind.DISCONNECT_CREDIT,
                        amount=_negated(credit),
                        description=f"{number} disconnected on {when}: {span} unused",
                        **common,
                    )
                )
            charged[change.line_id] = Decimal(0)
    return items


def proration_sums(
    *,
    partner: Partner,
    cycle: Cycle,
    price: Decimal,
    until: dt.datetime | None = None,
    after_day: int = 0,
) -> dict[int, Decimal]:
    """Per sub-account, the sum of the proration items of ``cycle`` (through ``until``)
    that :func:`proration_items` gives for :func:`holder_changes`, exactly, without
    making the items: the billing summary's accruing prorations.

    One statement over the same changes: an item's amount depends only on its day and
    its kind, so Python rounds the (at most 31) day amounts once, as
    :func:`proration_items` does, and passes them in minor units; the database adds
    whole numbers per sub-account, which is exact on SQLite as on PostgreSQL. A
    disconnection credits the day's amount: never more than was charged, since what was
    charged is the full price or the amount of an earlier day, and the amounts do not
    grow from one day to the next. Sub-accounts whose items add up to zero are kept.

    ``after_day`` sums only the items of the days after it, reading only the lines that
    changed holder since that day ended.
    """
    since = cycle.day_end(after_day) if after_day else None
    parts = proration_parts(
        partner=partner, cycle=cycle, price=price, until=until, after_day=after_day, since=since
    )
    places = minor_units(partner.currency)
    # Whole minor units: scaled, they are rounded already (and never a negative zero).
    return {pk: Decimal(units).scaleb(-places) for pk, (units, _items) in parts.items()}


def proration_parts(
    *,
    partner: Partner,
    cycle: Cycle,
    price: Decimal,
    until: dt.datetime | None,
    after_day: int = 0,
    since: dt.datetime | None = None,
    changed_before: dt.datetime | None = None,
) -> dict[int, tuple[int, int]]:
    """:func:`proration_sums` as ``{sub-account: (minor units, items)}``, for the lines
    :func:`_changes_sql` selects (``since``, ``changed_before``), days after ``after_day``."""
    found = proration_parts_sql(
        partner=partner,
        cycle=cycle,
        price=price,
        until=until,
        after_day=after_day,
        since=since,
        changed_before=changed_before,
    )
    if found is None:
        return {}
    sql, params = found
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} SELECT sub_account_id, units, items FROM parts", params)  # noqa: S608
        return {pk: (int(total), int(items)) for pk, total, items in cursor.fetchall()}


def proration_parts_sql(
    *,
    partner: Partner,
    cycle: Cycle,
    price: Decimal,
    until: dt.datetime | None,
    after_day: int = 0,
    since: dt.datetime | None = None,
    changed_before: dt.datetime | None = None,
) -> tuple[str, list[object]] | None:
    """The ``WITH`` clause of :func:`proration_parts`, ending with the CTE ``parts``
    (``sub_account_id, units, items``), and its parameters, for a statement over the
    parts to follow (a ``SELECT``, or the worker's ``INSERT``); None when ``until`` is at
    or before the cycle's start."""
    found = _changes_sql(
        partner_id=partner.pk, cycle=cycle, until=until, since=since, changed_before=changed_before
    )
    if found is None:
        return None
    changes, params = found
    currency, n = partner.currency, cycle.days
    places = minor_units(currency)

    def units(amount: Decimal) -> int:
        return int(amount.scaleb(places))

    days = range(after_day + 1, n + 1)
    for day in days:
        params += [day, units(prorated_amount(price, n - day + 1, n, currency))]
    params += [int(partner.credit_disconnects), int(partner.prorate_new_lines)]
    params.append(units(quantize(price, currency)))
    sql = f"""
        {changes},
        amounts (day, units) AS (VALUES {", ".join(["(%s, %s)"] * len(days))}),
        parts (sub_account_id, units, items) AS (
            SELECT sub_account_id, SUM(units), COUNT(*) FROM (
                SELECT ch.before_id AS sub_account_id, -a.units AS units
                FROM changes ch JOIN amounts a ON a.day = ch.day
                WHERE ch.before_id IS NOT NULL AND (ch.after_id IS NOT NULL OR %s = 1)
                UNION ALL
                SELECT ch.after_id AS sub_account_id,
                       CASE WHEN ch.before_id IS NULL AND %s = 0 THEN %s ELSE a.units END
                           AS units
                FROM changes ch JOIN amounts a ON a.day = ch.day
                WHERE ch.after_id IS NOT NULL
            ) item_parts
            GROUP BY sub_account_id
        )
    """  # noqa: S608 (only the statement's own text and placeholders are formatted in)
    return sql, params


# How far behind now the worker sums (``proration_accruals_precompute``): history is
# appended at the instant of a change, but a transaction commits a little after it; a
# sum through an instant must not miss a change still uncommitted at that instant.
ACCRUAL_LAG = dt.timedelta(minutes=5)


def accrual_key(partner: Partner, cycle: Cycle, price: Decimal) -> dict[str, object]:
    """What a :class:`SummaryAccrual` of ``cycle`` depends on besides history and the
    invoice."""
    return {
        "partner_id": partner.pk,
        "period_month": cycle.first_day,
        "price": price,
        "prorate_new_lines": partner.prorate_new_lines,
        "credit_disconnects": partner.credit_disconnects,
    }


# The columns of a precomputed summary's rows as the summary reads them, the first with
# the summary's instant (:func:`accrual_summary_rows`).
_SUMMARY_FIELDS = (
    *("through_once", "sub_account_id", "position", "name", "line_quantity"),
    *("recurring", "prorations", "discounts", "credits", "accruing_units", "accruing_items"),
)


def _accrual_summary(
    partner: Partner, cycle: Cycle, price: Decimal, now: dt.datetime, invoice: Invoice | None
) -> QuerySet[SummaryAccrual]:
    """The worker's summary of ``cycle`` a read at ``now`` may use (made for ``invoice``
    when given), as a queryset to use as a subquery."""
    summary = SummaryAccrual.objects.filter(**accrual_key(partner, cycle, price), through__lte=now)
    return summary if invoice is None else summary.filter(invoice_id=invoice.pk)


def accrual_summary_rows(
    *,
    partner: Partner,
    cycle: Cycle,
    price: Decimal,
    now: dt.datetime,
    invoice: Invoice,
    sub_account_ids: Collection[int] | None = None,
) -> QuerySet:
    """The rows of the worker's precomputed summary of ``invoice``'s ``cycle``
    (:class:`SummaryAccrual`) usable at ``now``, shaped as :data:`_SUMMARY_FIELDS`:
    sections in their order on the invoice, then the other sub-accounts with accruing
    items. One statement, so the instant and the rows are of one computation even while
    the worker updates it; the summary is found by subqueries, not a join, so the rows are
    walked by their index in order. The instant is in the first row only (the others'
    are None): decoding 10,000 timestamps would cost a sixth of the read. With
    ``sub_account_ids`` (a page of a list), the rows of those only, each with the instant.
    """
    summary = _accrual_summary(partner, cycle, price, now, invoice)
    through = Subquery(summary.values("through")[:1])
    rows = SummaryAccrualRow.objects.filter(summary_id=Subquery(summary.values("pk")[:1]))
    if sub_account_ids is None:
        # The first row: the first section's, or one without a section (then first).
        once = Case(When(Q(position__isnull=True) | Q(position=1), then=through), default=None)
    else:
        rows, once = rows.filter(sub_account_id__in=sub_account_ids), through
    return (
        rows.annotate(through_once=once)
        .order_by(F("position").asc(nulls_last=True))
        .values_list(*_SUMMARY_FIELDS)
    )


def accrual_rows(
    *,
    partner: Partner,
    cycle: Cycle,
    price: Decimal,
    now: dt.datetime,
    sub_account_ids: Collection[int] | None = None,
) -> tuple[dt.datetime | None, list[tuple]]:
    """The worker's precomputed accruing sums of ``cycle`` usable at ``now``: its instant
    (None: none usable) and ``(through, sub-account, minor units, items)`` per
    sub-account with accruing items (of ``sub_account_ids`` when given), in one statement
    (one computation). With ``sub_account_ids`` and none of them accruing, the instant is
    read alone (a second statement: nothing to be inconsistent with)."""
    summary = _accrual_summary(partner, cycle, price, now, None)
    rows = SummaryAccrualRow.objects.filter(
        summary_id=Subquery(summary.values("pk")[:1]), accruing_items__gt=0
    )
    if sub_account_ids is not None:
        rows = rows.filter(sub_account_id__in=sub_account_ids)
    found = _rows(
        rows.annotate(through_once=Subquery(summary.values("through")[:1])).values_list(
            "through_once", "sub_account_id", "accruing_units", "accruing_items"
        )
    )
    if found:
        return found[0][0], found
    if sub_account_ids is not None:
        return summary.values_list("through", flat=True).first(), []
    return None, []


def accrual_changes(
    *, partner: Partner, cycle: Cycle, price: Decimal, since: dt.datetime, until: dt.datetime
) -> dict[int, tuple[int, int]]:
    """What turns the accruing prorations through ``since`` into those through ``until``
    (``since < until``, both in ``cycle``), as ``{sub-account: (minor units, items)}``
    to add: the lines with a period boundary in ``[since, until)``, their items through
    ``until`` less their items through ``since`` (two statements, each line's periods by
    index). The other lines had one holder from ``since`` to ``until``: their items are
    the same at both instants, and so are these lines' items of the days that ended
    before ``since``."""
    after_day = cycle.day_of(since) - 1 if since > cycle.start else 0
    common = {"partner": partner, "cycle": cycle, "price": price, "after_day": after_day}
    now = proration_parts(**common, until=until, since=since)
    then = proration_parts(**common, until=since, since=since, changed_before=until)
    delta = dict(now)
    for pk, (units, items) in then.items():
        had_units, had_items = delta.get(pk, (0, 0))
        delta[pk] = (had_units - units, had_items - items)
    return delta


def _rows(queryset: QuerySet) -> list[tuple]:
    """A ``values_list`` queryset's rows in one fetch. On PostgreSQL the driver's values
    are what Django would return for these fields (no converters), and one ``fetchall``
    saves a third of the time of Django's chunked iteration on 10,000 rows."""
    if connection.vendor != "postgresql":
        return list(queryset)
    try:
        sql, params = queryset.query.sql_with_params()
    except EmptyResultSet:  # e.g. an empty page of sub-accounts
        return []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _stream(queryset: QuerySet) -> Iterator[tuple]:
    """A ``values_list`` queryset's rows one at a time. On PostgreSQL the driver makes
    each tuple as it is reached, so a row dropped after use is freed at once: 10,000 rows
    held in a list until the last is read would be promoted through the garbage
    collector's generations and make its full collections come sooner."""
    if connection.vendor != "postgresql":
        yield from queryset
        return
    try:
        sql, params = queryset.query.sql_with_params()
    except EmptyResultSet:  # e.g. an empty page of sub-accounts
        return
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        yield from cursor


def accruing_prorations(
    *,
    partner: Partner,
    cycle: Cycle,
    price: Decimal,
    now: dt.datetime,
    sub_account_ids: Collection[int] | None = None,
) -> dict[int, Decimal]:
    """The prorations accruing in ``cycle`` until ``now``, per sub-account (those with
    items): the worker's latest sums (:func:`accrual_rows`) plus the changes since
    (:func:`accrual_changes`), or every change of the cycle so far when nothing is
    precomputed (e.g. in its first minutes). With the sums there, no query reads the
    moves made before they were summed. ``sub_account_ids`` reads the stored sums of
    those only (a page of a list), not the partner's ten thousand."""
    through, found = accrual_rows(
        partner=partner, cycle=cycle, price=price, now=now, sub_account_ids=sub_account_ids
    )
    if through is None:
        sums = proration_parts(partner=partner, cycle=cycle, price=price, until=now)
    else:
        sums = {pk: (units, items) for _through, pk, units, items in found}
        if through < now:
            delta = accrual_changes(
                partner=partner, cycle=cycle, price=price, since=through, until=now
            )
            for pk, (units, items) in delta.items():
                had_units, had_items = sums.get(pk, (0, 0))
                sums[pk] = (had_units + units, had_items + items)
    if sub_account_ids is not None:
        sums = {pk: part for pk, part in sums.items() if pk in sub_account_ids}
    places = minor_units(partner.currency)
    # Whole minor units: scaled, they are rounded already (and never a negative zero).
    return {pk: Decimal(units).scaleb(-places) for pk, (units, items) in sums.items() if items > 0}


def _names(partner_id: int, ids: set[int]) -> dict[int, SubAccount]:
    rows = SubAccount.objects.filter(partner_id=partner_id, pk__in=ids).select_related(
        "merged_into"
    )
    return {sa.pk: sa for sa in rows}


def _moved_between(
    subs: dict[int, SubAccount], changes: list[HolderChange]
) -> dict[int, SubAccount]:
    """The sub-accounts a move item names (both ends of each move), and the targets of
    those that are merged sources (loaded with them by ``select_related``): what a name
    history needs, and nothing when nothing moved."""
    named: dict[int, SubAccount] = {}
    for change in changes:
        if change.before is not None and change.after is not None:
            named[change.before] = subs[change.before]
            named[change.after] = subs[change.after]
    return _with_merge_targets(named)


def _with_merge_targets(subs: dict[int, SubAccount]) -> dict[int, SubAccount]:
    """``subs`` and the targets of those that are merged sources (loaded with them by
    ``select_related``): a name history names a source "(merged into <target>)"."""
    named = dict(subs)
    for sa in subs.values():
        if sa.merged_into_id is not None and sa.merged_into_id not in named:
            named[sa.merged_into_id] = sa.merged_into
    return named


@dataclass(slots=True)
class NameHistory:
    """How each sub-account was called at the end of each day of a cycle.

    Built from what is current (the rows) and what changed since (renames and merge
    completions, from their audit events): walking back from now, the name on a day is
    the name before the first rename made after that day ended, and a source merged
    after that day is not "merged" yet. A day's name is the one at its end, like its
    holder (SPEC §3). "(merged into <target>)" follows a merged source on the days after
    its merge, the target named as it was then too; the pool is always "Available".
    """

    cycle: Cycle
    subs: dict[int, SubAccount]
    # sub-account -> [(when, name before)] in time order, for renames after the cycle start
    renames: dict[int, list[tuple[dt.datetime, str]]]
    # merged source -> when its merge completed, for merges after the cycle start
    merged_at: dict[int, dt.datetime]
    _ends: list[dt.datetime] = field(default_factory=list)
    _cache: dict[tuple[int, int], str] = field(default_factory=dict)
    # The sub-accounts called the same all cycle long (nearly all): named by id alone.
    _constant: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        varies = set(self.renames) | set(self.merged_at)
        for pk, sa in self.subs.items():
            if pk not in varies and sa.merged_into_id not in self.renames:
                self._constant[pk] = self.name_at(pk, self.cycle.start)

    def __call__(self, sub_account_id: int, day: int) -> str:
        name = self._constant.get(sub_account_id)
        if name is not None:
            return name
        key = (sub_account_id, day)
        name = self._cache.get(key)
        if name is None:
            if not self._ends:
                self._ends = self.cycle.day_ends()
            name = self._cache[key] = self.name_at(sub_account_id, self._ends[day - 1])
        return name

    def plain_name_at(self, sub_account_id: int, instant: dt.datetime) -> str:
        for when, before in self.renames.get(sub_account_id, ()):
            if when > instant:
                return before
        return self.subs[sub_account_id].name

    def name_at(self, sub_account_id: int, instant: dt.datetime) -> str:
        sa = self.subs[sub_account_id]
        if sa.kind == SubAccountKind.AVAILABLE:
            return "Available"
        name = self.plain_name_at(sub_account_id, instant)
        merged = sa.status == SubAccountStatus.MERGED and sa.merged_into_id is not None
        if merged and self.merged_at.get(sub_account_id, instant) <= instant:
            return f"{name} (merged into {self.plain_name_at(sa.merged_into_id, instant)})"
        return name


# Above this many sub-accounts the name history reads the partner's renames rather than
# listing the ids (a statement's parameters are limited, SQLite's to 32,766).
_NAMED_BY_ID = 500


def name_history(
    *,
    partner_id: int,
    subs: dict[int, SubAccount],
    cycle: Cycle,
    since: dt.datetime | None = None,
) -> NameHistory:
    """The names of ``subs`` (loaded by :func:`_names`, targets of merges included) through
    ``cycle``, or from ``since`` on: one query over the audit events of renames and merge
    completions after the cycle's start (or ``since``), however many items will be named
    (none when nothing is to be named)."""
    renames: dict[int, list[tuple[dt.datetime, str]]] = {}
    merged_at: dict[int, dt.datetime] = {}
    if not subs:
        return NameHistory(cycle=cycle, subs=subs, renames=renames, merged_at=merged_at)
    renamed = Q(action="sub_account.update")
    if len(subs) <= _NAMED_BY_ID:
        renamed &= Q(sub_account_id__in=list(subs))
    events = (
        AuditEvent.objects.filter(partner_id=partner_id, at__gt=since or cycle.start)
        .filter(renamed | Q(action="merge_request.complete"))
        .order_by("at", "id")
        .values_list("action", "sub_account_id", "at", "data")
    )
    for action, sub_account_id, at, data in events:
        if action == "merge_request.complete":
            for source_id in data.get("source_ids") or ():
                if source_id in subs:
                    merged_at.setdefault(source_id, at)
        elif sub_account_id not in subs:
            continue
        elif "name" in (data.get("after") or {}) and "name" in (data.get("before") or {}):
            renames.setdefault(sub_account_id, []).append((at, data["before"]["name"]))
    return NameHistory(cycle=cycle, subs=subs, renames=renames, merged_at=merged_at)


def price_for_cycle(partner: Partner, cycle: Cycle) -> Decimal:
    """The price per line of ``cycle`` from the partner's price history.

    A change made during a cycle applies from the next one (:class:`PriceChange`); a
    partner whose price never changed through the service charges ``line_price``.
    """
    month = cycle.first_day
    changes = PriceChange.objects.filter(partner_id=partner.pk)
    last = changes.filter(effective_month__lte=month).order_by("-effective_month", "-pk").first()
    if last is not None:
        return last.price
    first = changes.order_by("effective_month", "pk").first()
    return first.previous_price if first is not None else partner.line_price


def charged_price(partner: Partner, cycle: Cycle) -> Decimal:
    """The price charged for ``cycle``: its invoice's, or its price if none was issued."""
    invoice = invoice_for_cycle(partner.pk, cycle)
    return invoice.unit_price if invoice is not None else price_for_cycle(partner, cycle)


def invoice_draft(
    *, partner: Partner, cycle: Cycle, as_of: dt.datetime | None = None
) -> DraftInvoice:
    """Compute the invoice of ``cycle`` (recurring at its start + prorations of the cycle
    before) without storing anything. A handful of queries whatever the partner's size.

    Lines, prorations and prices come from their history whenever this runs. What has no
    history of its own is read as it is now, unless ``as_of`` is given: a late run
    (:func:`invoice_as_of`) passes the cycle's start, the instant the invoice would have
    been issued on time, and then credits granted since, discounts removed since and
    renames or merges since are not seen (SPEC §3, "exactly as if it had run on time").
    """
    currency = partner.currency
    price = price_for_cycle(partner, cycle)
    previous = cycle.previous()
    proration_price = charged_price(partner, previous)
    held = lines_held_at(partner.pk, cycle.start)
    changes = holder_changes(partner_id=partner.pk, cycle=previous)
    involved = set(held) | {pk for c in changes for pk in (c.before, c.after) if pk is not None}
    discounts = list(discounts_in_force(partner_id=partner.pk, cycle=cycle, as_of=as_of))
    balances = credit_balances(partner_id=partner.pk, as_of=as_of)
    involved |= {d.sub_account_id for d in discounts if d.sub_account_id is not None}
    involved |= {pk for pk in balances if pk is not None}
    subs = _names(partner.pk, involved)
    if as_of is None:
        names = {pk: section_name(sa) for pk, sa in subs.items()}
    else:
        then = name_history(
            partner_id=partner.pk, subs=_with_merge_targets(subs), cycle=cycle, since=as_of
        )
        names = {pk: then.name_at(pk, as_of) for pk in subs}
    history = name_history(
        partner_id=partner.pk, subs=_moved_between(subs, changes), cycle=previous
    )
    prorations = proration_items(
        partner=partner, cycle=previous, price=proration_price, changes=changes, names=history
    )
    sections: dict[int, DraftSection] = {}

    def section(sub_account_id: int) -> DraftSection:
        if sub_account_id not in sections:
            sa = subs[sub_account_id]
            sections[sub_account_id] = DraftSection(
                sub_account_id=sub_account_id,
                name=names[sub_account_id],
                kind=sa.kind,
                position=0,
                line_quantity=held.get(sub_account_id, 0),
            )
        return sections[sub_account_id]

    first, last = cycle.first_day, cycle.date_of(cycle.days)
    for sub_account_id, count in held.items():
        plural = "line" if count == 1 else "lines"
        section(sub_account_id).items.append(
            DraftItem(
                sub_account_id=sub_account_id,
                kind=InvoiceItemKind.RECURRING,
                amount=quantize(count * price, currency),
                unit_price=price,
                quantity=count,
                service_start=first,
                service_end=last,
                days=cycle.days,
                description=(
                    f"{count} {plural} × {_price_text(price, currency)} {currency} "
                    f"for {first:%B %Y}"
                ),
            )
        )
    for item in prorations:
        into = sections.get(item.sub_account_id) or section(item.sub_account_id)
        into.items.append(item)
    ordered = sorted(
        sections.values(),
        key=lambda s: (s.kind != SubAccountKind.AVAILABLE, s.name.lower(), s.sub_account_id),
    )
    for position, s in enumerate(ordered, start=1):
        s.position = position
    _add_discounts_and_credits(
        partner=partner,
        cycle=cycle,
        sections=ordered,
        discounts=discounts,
        balances=balances,
        names=names,
        received=credit_transfers_in(partner_id=partner.pk) if balances else {},
    )
    return DraftInvoice(
        partner=partner,
        cycle=cycle,
        unit_price=price,
        proration_price=proration_price,
        sections=ordered,
    )


def invoice_as_of(cycle: Cycle, now: dt.datetime) -> dt.datetime | None:
    """The instant an invoice of ``cycle`` issued at ``now`` reads what has no history as
    of (see :func:`invoice_draft`): None (as it is now) while ``cycle`` is still running,
    so the invoice issued on time, or a few days late, is unchanged; the cycle's start
    once the cycle is over, when a run catching up on missed months issues it."""
    return cycle.start if now >= cycle.end else None


def discounts_in_force(
    *, partner_id: int, cycle: Cycle, as_of: dt.datetime | None = None
) -> QuerySet[Discount]:
    """Discounts that the invoice of ``cycle`` applies if issued now (not removed), or if
    issued at ``as_of`` (not removed by then: a discount removed at t still applies to
    the cycles whose invoice was due before t)."""
    month = cycle.first_day
    kept = Q(removed_at__isnull=True)
    if as_of is not None:
        kept |= Q(removed_at__gt=as_of)
    return (
        Discount.objects.filter(kept, partner_id=partner_id, first_month__lte=month)
        .filter(Q(last_month__isnull=True) | Q(last_month__gte=month))
        .order_by("pk")
    )


def credit_balances(
    *, partner_id: int, keep_zero: bool = False, as_of: dt.datetime | None = None
) -> dict[int | None, Decimal]:
    """Each credit balance of the partner (None = the partner's own): one ``GROUP BY``
    over the ledger. Balances at zero are left out unless ``keep_zero``.

    ``as_of`` leaves out the grants made at or after it: what an invoice due then could
    apply. Every application is counted (invoices are issued oldest first, so those
    already stored are all of earlier cycles), and so is every transfer: a balance
    follows its sub-account whenever the merge or deletion happened. A transfer moved
    the whole balance as it stood then, applications of a late run not yet taken, so
    reading it earlier than it happened could apply the same credit twice. Each
    balance read so is at most its ledger total, so no balance ever goes below zero;
    one left negative (a grant made after ``as_of`` and since transferred) counts as
    nothing.
    """
    rows = CreditEntry.objects.filter(partner_id=partner_id)
    if as_of is not None:
        rows = rows.exclude(kind=CreditEntryKind.GRANT, created_at__gte=as_of)
    sums = rows.values("sub_account_id").annotate(balance=Sum("amount")).order_by()
    if as_of is not None:
        return {r["sub_account_id"]: r["balance"] for r in sums if r["balance"] > 0}
    return {r["sub_account_id"]: r["balance"] for r in sums if keep_zero or r["balance"]}


def credit_transfers_in(*, partner_id: int) -> dict[int | None, list[tuple[Decimal, str]]]:
    """Per balance (None = the partner's), the ``(amount, reason)`` of each transfer it
    received since an invoice last drew on it, oldest first: where the balance the next
    invoice applies came from (a merged or deleted sub-account's). Transfers are few (one
    per merged or deleted sub-account that had credit left): one small query, and a
    ``GROUP BY`` over the applications only when there is one."""
    received = list(
        CreditEntry.objects.filter(
            partner_id=partner_id, kind=CreditEntryKind.TRANSFER, amount__gt=0
        )
        .order_by("pk")
        .values_list("pk", "sub_account_id", "amount", "reason")
    )
    if not received:
        return {}
    last_applied = dict(
        CreditEntry.objects.filter(partner_id=partner_id, kind=CreditEntryKind.APPLY)
        .values("sub_account_id")
        .annotate(last=Max("pk"))
        .order_by()
        .values_list("sub_account_id", "last")
    )
    found: dict[int | None, list[tuple[Decimal, str]]] = {}
    for pk, pool, amount, reason in received:
        if pk > last_applied.get(pool, 0):
            found.setdefault(pool, []).append((amount, reason))
    return found


def _received_text(received: list[tuple[Decimal, str]], currency: str, room: int) -> str:
    """ ", which received …" naming each transfer, or their sum when that would not fit
    ``room`` characters."""
    parts = [
        f"{_price_text(amount, currency)} {currency} from the {reason[:1].lower()}{reason[1:]}"
        for amount, reason in received
    ]
    text = f", which received {' and '.join(parts)}"
    if len(text) <= room:
        return text
    total = _price_text(sum((a for a, _ in received), Decimal(0)), currency)
    return (
        f", which received {total} {currency} from the balances of {len(received)} merged "
        "or deleted sub-accounts (see the credit ledger)"
    )


# InvoiceItem.description's length.
_DESCRIPTION_MAX = InvoiceItem._meta.get_field("description").max_length


def _percent_text(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return f"{text}%"


def _add_discounts_and_credits(
    *,
    partner: Partner,
    cycle: Cycle,
    sections: list[DraftSection],
    discounts: list[Discount],
    balances: dict[int | None, Decimal],
    names: dict[int, str],
    received: dict[int | None, list[tuple[Decimal, str]]],
) -> None:
    """Append discount then credit items to ``sections`` (SPEC §3 order), per
    :mod:`portal.billing.adjustments`. A credit item drawn on a balance that received a
    merged or deleted sub-account's credit since it was last drawn on says so
    (``received``, from :func:`credit_transfers_in`)."""
    currency = partner.currency
    first, last = cycle.first_day, cycle.date_of(cycle.days)
    by_sub = {s.sub_account_id: s for s in sections}
    rules = [adjustments.DiscountRule(d.pk, d.sub_account_id, d.kind, d.value) for d in discounts]
    recurring = {s.sub_account_id: s.recurring for s in sections}
    by_id = {d.pk: d for d in discounts}
    common = {"service_start": first, "service_end": last, "days": cycle.days}
    for part in adjustments.apply_discounts(recurring, rules, currency):
        d = by_id[part.discount_id]
        if d.kind == DiscountKind.PERCENT:
            what = f"{_percent_text(d.value)} off recurring charges"
        else:
            what = f"{_price_text(d.value, currency)} {currency} off recurring charges"
        if d.sub_account_id is None:
            what += (
                ", whole invoice, spread in proportion to recurring charges before "
                f"sub-account discounts: this section's {_price_text(part.basis, currency)} "
                f"of {_price_text(part.basis_total, currency)} {currency}"
            )
            if part.capped:
                what += ", limited to what its own discount left"
        by_sub[part.sub_account_id].items.append(
            DraftItem(
                sub_account_id=part.sub_account_id,
                kind=InvoiceItemKind.DISCOUNT,
                amount=_negated(part.amount),
                unit_price=part.amount,
                description=f"Discount “{d.name}”: {what}",
                discount_id=d.pk,
                **common,
            )
        )
    totals = {s.sub_account_id: s.total for s in sections}
    sub_balances = {pk: b for pk, b in balances.items() if pk is not None}
    for part in adjustments.apply_credits(
        totals, sub_balances, balances.get(None, Decimal(0)), currency
    ):
        if part.pool is None:
            source = "the partner's credit balance (shared by section totals)"
        else:
            source = f"the credit balance of {names.get(part.pool, 'this sub-account')}"
        description = f"Credit from {source}"
        if part.pool in received:
            room = _DESCRIPTION_MAX - len(description)
            description += _received_text(received[part.pool], currency, room)
        by_sub[part.sub_account_id].items.append(
            DraftItem(
                sub_account_id=part.sub_account_id,
                kind=InvoiceItemKind.CREDIT,
                amount=_negated(part.amount),
                unit_price=part.amount,
                description=description,
                credit_pool=part.pool,
                **common,
            )
        )


# --- Billing summary ------------------------------------------------------------------------


@dataclass(slots=True)
class SummaryRow:
    sub_account_id: int | None
    name: str
    line_count: int = 0
    recurring: Decimal = Decimal(0)
    prorations: Decimal = Decimal(0)
    accruing_prorations: Decimal = Decimal(0)
    discounts: Decimal = Decimal(0)
    credits: Decimal = Decimal(0)
    # ``line_count`` is what the cycle's invoice charges: the lines held at the cycle's
    # start. ``lines_now`` is what the sub-account holds now (its ``line_count``), which
    # moves since the start make differ.
    lines_now: int = 0

    @property
    def total(self) -> Decimal:
        """This cycle's invoice section (as issued, or as it will be) plus the
        prorations accruing so far for the next invoice."""
        return self.recurring + self.prorations + self.discounts + self.credits


@dataclass(slots=True)
class BillingSummary:
    partner: Partner
    cycle: Cycle
    invoice: Invoice | None
    as_of: dt.datetime
    rows: list[SummaryRow]

    @property
    def total(self) -> Decimal:
        return sum((r.total for r in self.rows), Decimal(0))


def billing_summary(
    *,
    principal: Principal,
    now: dt.datetime | None = None,
    sub_account_ids: Collection[int] | None = None,
) -> BillingSummary:
    """The current cycle per sub-account: what its invoice charged (computed as it will be
    when not issued yet) plus the prorations accruing so far for the next invoice.

    ``sub_account_ids`` keeps the rows of those sub-accounts only (the Sub-accounts list
    shows a page's "This month"): an issued invoice's sections and the stored sums are
    then read for them alone, so a page costs the same for ten or ten thousand."""
    require(can_read_billing_summary(principal), "Your role may not see the billing summary.")
    partner = partner_for(principal)
    now = now or clock.now()
    cycle = cycle_containing(now, partner.timezone)
    invoice = invoice_for_cycle(partner.pk, cycle)
    rows: dict[int | None, SummaryRow] = {}
    order: list[int | None] = []

    def row(sub_account_id: int | None, name: str) -> SummaryRow:
        if sub_account_id not in rows:
            rows[sub_account_id] = SummaryRow(sub_account_id=sub_account_id, name=name)
            order.append(sub_account_id)
        return rows[sub_account_id]

    ids = None if sub_account_ids is None else set(sub_account_ids)
    if invoice is not None:
        with _collector_paused():
            accruing = _summary_of_invoice(partner, cycle, invoice, now, rows, order, ids)
    else:
        draft = invoice_draft(partner=partner, cycle=cycle)
        for s in draft.sections:
            if ids is not None and s.sub_account_id not in ids:
                continue
            r = row(s.sub_account_id, s.name)
            r.line_count, r.recurring, r.prorations = s.line_quantity, s.recurring, s.prorations
            r.discounts, r.credits = s.discounts, s.credits
        accruing = accruing_prorations(
            partner=partner, cycle=cycle, price=draft.unit_price, now=now, sub_account_ids=ids
        )
    subs = _names(partner.pk, set(accruing) - set(rows))
    names = {pk: section_name(sa) for pk, sa in subs.items()}
    unlisted = sorted(
        subs, key=lambda pk: (subs[pk].kind != SubAccountKind.AVAILABLE, names[pk].lower(), pk)
    )
    for pk in unlisted:
        row(pk, names[pk])
    for pk, amount in accruing.items():
        r = rows[pk]
        r.prorations += amount
        r.accruing_prorations += amount
    held_now = SubAccount.objects.filter(partner_id=partner.pk, line_count__gt=0)
    if ids is not None:
        held_now = held_now.filter(pk__in=ids)
    for pk, count in _stream(held_now.values_list("pk", "line_count")):
        if pk in rows:
            rows[pk].lines_now = count
    return BillingSummary(
        partner=partner,
        cycle=cycle,
        invoice=invoice,
        as_of=now,
        rows=[rows[k] for k in order],
    )


@dataclass(slots=True)
class SubAccountCharges:
    """One sub-account's row of the billing summary, and the cycle it is about."""

    cycle: Cycle
    invoice: Invoice | None
    currency: str
    as_of: dt.datetime
    row: SummaryRow


def sub_account_charges(
    *, principal: Principal, sub_account: SubAccount, now: dt.datetime | None = None
) -> SubAccountCharges:
    """This cycle's charges of one sub-account (a workspace's "this month"): its row of
    :func:`billing_summary`, read for it alone (``sub_account_ids``), so a few indexed
    queries once the cycle's invoice is issued, whatever the partner's size. A
    sub-account with nothing this cycle gets a row of zeros."""
    summary = billing_summary(principal=principal, now=now, sub_account_ids=[sub_account.pk])
    row = next((r for r in summary.rows if r.sub_account_id == sub_account.pk), None)
    if row is None:
        row = SummaryRow(sub_account.pk, section_name(sub_account), lines_now=0)
    invoice = summary.invoice
    return SubAccountCharges(
        cycle=summary.cycle,
        invoice=invoice,
        currency=invoice.currency if invoice is not None else summary.partner.currency,
        as_of=summary.as_of,
        row=row,
    )


def sub_account_invoice_sections(
    *, principal: Principal, sub_account_id: int
) -> QuerySet[InvoiceSection]:
    """One sub-account's section of every invoice, newest first, with its invoice."""
    require(can_read_invoices(principal), "Your role may not read invoices.")
    return (
        InvoiceSection.objects.visible_to(principal)
        .filter_id("sub_account_id", sub_account_id)
        .select_related("invoice")
        .order_by("-invoice__period_month", "-invoice_id")
    )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pauses Python's cyclic garbage collector while a summary's rows are built.

    Every ``Decimal`` is tracked by the collector (Python 3.13), and a row holds five or
    six: 10,000 rows built by a Python loop trigger some thirty young collections, each
    promoting the rows built so far, and so a full collection every few reads (over the
    whole process, 100 ms and more on a loaded box). Built with the collector paused,
    the rows stay young and are freed by reference counting when the page is done, as the
    tuples of one ``fetchall`` are (the driver's loop in C lets no collection run). The
    rows hold no cycles: nothing is left for the collector to find."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _summary_of_invoice(
    partner: Partner,
    cycle: Cycle,
    invoice: Invoice,
    now: dt.datetime,
    rows: dict[int | None, SummaryRow],
    order: list[int | None],
    ids: set[int] | None = None,
) -> dict[int, Decimal]:
    """The summary's rows of an issued invoice, into ``rows`` and ``order``, each with its
    accruing prorations, of the sub-accounts ``ids`` only when given. Returns the
    accruing prorations of sub-accounts without a section.

    From the worker's precomputed summary when there is one for this invoice
    (:func:`accrual_rows`: one statement reading one row per section with its accruing
    sums) plus the lines changed since
    (:func:`accrual_changes`): no statement reads the moves summed already. Otherwise
    (the cycle's first minutes, a price or policy just changed) from the sections and
    every change of the cycle so far."""
    price = invoice.unit_price
    found = _stream(
        accrual_summary_rows(
            partner=partner,
            cycle=cycle,
            price=price,
            now=now,
            invoice=invoice,
            sub_account_ids=ids,
        )
    )
    first = next(found, None)
    zero = Decimal(0)
    if first is None:
        accruing = accruing_prorations(
            partner=partner, cycle=cycle, price=price, now=now, sub_account_ids=ids
        )
        # Tuples, not model instances: the large partner's invoice has 10,000 sections.
        sections = InvoiceSection.objects.filter(partner_id=partner.pk, invoice=invoice)
        if ids is not None:
            sections = sections.filter(sub_account_id__in=ids)
        sections = sections.order_by("position", "pk").values_list(
            *("sub_account_id", "name", "line_quantity", "recurring", "prorations"),
            *("discounts", "credits"),
        )
        pop = accruing.pop
        for pk, name, quantity, recurring, prorations, discounts, credits in _rows(sections):
            amount = pop(pk, None)
            if amount is None:
                rows[pk] = SummaryRow(
                    pk, name, quantity, recurring, prorations, zero, discounts, credits
                )
            else:
                rows[pk] = SummaryRow(
                    pk, name, quantity, recurring, prorations + amount, amount, discounts, credits
                )
            order.append(pk)
        return accruing
    # The lines changed since the summary's instant, read while its rows wait (the
    # driver holds them).
    through = first[0]
    delta = (
        accrual_changes(partner=partner, cycle=cycle, price=price, since=through, until=now)
        if through < now
        else {}
    )
    if ids is not None:
        delta = {pk: part for pk, part in delta.items() if pk in ids}
    unit = quantum(partner.currency)  # a whole number times it: exact, rounded already
    unlisted: dict[int, Decimal] = {}
    pop, append = delta.pop, order.append
    for (
        _,
        pk,
        position,
        name,
        quantity,
        recurring,
        prorations,
        discounts,
        credits,
        units,
        items,
    ) in itertools.chain((first,), found):
        if delta:
            changed = pop(pk, None)
            if changed is not None:
                units, items = units + changed[0], items + changed[1]
        if position is None:
            if items > 0:
                unlisted[pk] = Decimal(units) * unit
        elif items > 0:
            amount = Decimal(units) * unit
            rows[pk] = SummaryRow(
                pk, name, quantity, recurring, prorations + amount, amount, discounts, credits
            )
            append(pk)
        else:
            rows[pk] = SummaryRow(
                pk, name, quantity, recurring, prorations, zero, discounts, credits
            )
            append(pk)
    for pk, (units, items) in delta.items():
        if items > 0:
            unlisted[pk] = Decimal(units) * unit
    return unlisted


# --- Which cycles are due -------------------------------------------------------------------


def cycle_has_charges(partner: Partner, cycle: Cycle) -> bool:
    """Whether the invoice of ``cycle`` holds anything: lines held at its start, or
    prorations of the cycle before. A cycle with neither gets no invoice (SPEC §3).

    Lines held at the start answer in one ``EXISTS``; otherwise the draft decides (a
    partner holding nothing has few changes to look at)."""
    held = (
        AssignmentPeriod.objects.filter(partner_id=partner.pk, start__lte=cycle.start)
        .filter(Q(end__isnull=True) | Q(end__gt=cycle.start))
        .exists()
    )
    return held or bool(invoice_draft(partner=partner, cycle=cycle).sections)


def invoice_cycles_due(partner: Partner, now: dt.datetime | None = None) -> list[Cycle]:
    """The cycles whose invoice is due by ``now`` and not issued, oldest first (SPEC §3,
    "no month is ever lost").

    From the cycle after the partner's latest invoice, or from the cycle of its first
    line when it has none, up to the cycle containing ``now``. Cycles that cannot hold
    anything are left out: before the first line, and more than one cycle after the
    last line ended when none is active (that cycle still carries its prorations). A
    cycle listed may still have nothing to bill; issuing skips it. Four indexed
    queries whatever the partner's size.
    """
    tz = partner.timezone
    current = cycle_containing(now or clock.now(), tz)
    latest = Invoice.objects.filter(partner_id=partner.pk).aggregate(m=Max("period_month"))["m"]
    periods = AssignmentPeriod.objects.filter(partner_id=partner.pk)
    if latest is not None:
        first = Cycle(latest.year, latest.month, tz).next()
    else:
        started = periods.aggregate(m=Min("start"))["m"]
        if started is None:
            return []
        first = cycle_containing(started, tz)
    last = current
    if not periods.filter(end__isnull=True).exists():
        ended = periods.aggregate(m=Max("end"))["m"]
        if ended is None:
            return []
        after = cycle_containing(ended, tz).next()
        if after.first_day < current.first_day:
            last = after
    return cycles_from(first, last)
