"""The billing summary: the current cycle per sub-account, what its invoice charged (or
will charge, drafted while it is not issued) plus the prorations accruing so far for the
next invoice (:mod:`portal.billing.accruals`), and one sub-account's row of it (a
workspace's "this month").
"""

from __future__ import annotations

import datetime as dt
import gc
import itertools
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import QuerySet

from portal.accounts.policies import require
from portal.billing.accruals import (
    accrual_changes,
    accrual_summary_rows,
    accruing_prorations,
    fetch_rows,
)
from portal.billing.drafting import invoice_draft, invoice_for_cycle
from portal.billing.models import Invoice, InvoiceSection
from portal.billing.money import quantum
from portal.billing.names import named_sub_accounts, section_name
from portal.billing.periods import Cycle, cycle_containing
from portal.billing.policies import can_read_billing_summary
from portal.core import clock
from portal.core.principal import Principal
from portal.partners.models import Partner, SubAccount, SubAccountKind
from portal.partners.selectors import partner_for


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
    subs = named_sub_accounts(partner.pk, set(accruing) - set(rows))
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
    (:func:`~portal.billing.accruals.accrual_rows`: one statement reading one row per
    section with its accruing sums) plus the lines changed since
    (:func:`~portal.billing.accruals.accrual_changes`): no statement reads the moves summed
    already. Otherwise (the cycle's first minutes, a price or policy just changed) from the
    sections and every change of the cycle so far."""
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
        for pk, name, quantity, recurring, prorations, discounts, credits in fetch_rows(sections):
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
