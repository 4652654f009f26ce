"""Issuing and finalising invoices, one function per change.

An invoice is computed from history by :func:`~portal.billing.drafting.invoice_draft`
and stored in one transaction with one audit event, together with the client statements
issued with it (:mod:`portal.billing.statements`, domain §8.1). Issuing is idempotent: the
unique ``(partner, period_month)`` key means a second run, or a concurrent one,
returns the invoice already there, unchanged, whatever its status. The credits an
invoice takes are appended to the credit ledger in the same transaction as the
invoice, so they exist exactly when the invoice does.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Max

from portal.accounts.policies import require
from portal.audit.services import Change, audit_record, audit_record_many
from portal.billing.cycles_due import invoice_cycles_due
from portal.billing.drafting import DraftInvoice, invoice_as_of, invoice_draft, invoice_for_cycle
from portal.billing.models import (
    CreditEntry,
    CreditEntryKind,
    Invoice,
    InvoiceItem,
    InvoiceItemKind,
    InvoiceSection,
    InvoiceStatus,
)
from portal.billing.periods import Cycle, cycle_containing
from portal.billing.policies import can_finalize_invoices, can_issue_invoices
from portal.billing.statements import statements_store
from portal.core import clock
from portal.core.errors import Conflict, Invalid
from portal.core.principal import Principal
from portal.core.retry import retry_on_lost_race
from portal.partners.models import Partner

logger = logging.getLogger("portal.billing")


FINALIZE_AFTER = dt.timedelta(days=3)


_BATCH = 2000


class BillingRunIncomplete(Exception):
    """Some partners could not be invoiced; the others were (see ``issued``)."""

    def __init__(self, issued: list[Invoice], failed: list[str]) -> None:
        super().__init__(f"Could not issue invoices for: {', '.join(failed)}.")
        self.issued = issued
        self.failed = failed


# --- Issuing ------------------------------------------------------------------------------


def invoice_issue(*, principal: Principal, partner: Partner, cycle: Cycle) -> Invoice:
    """Issue the invoice of ``cycle`` (in the partner's timezone) for ``partner``, in advance.

    Recurring charges for the lines held at the cycle's start, prorations for the
    cycle before; see :mod:`portal.billing.drafting`. Returns the existing invoice
    unchanged when the cycle is already invoiced.

    This issues exactly the cycle asked for, even one with nothing to bill (a 0.00
    invoice). Billing runs go through :func:`invoices_issue_due`, which issues every
    cycle due since a partner's latest invoice, oldest first, and skips empty ones.
    """
    invoice, _ = _issue(principal=principal, partner=partner, cycle=cycle, skip_empty=False)
    assert invoice is not None  # only skip_empty leaves a cycle without an invoice
    return invoice


@retry_on_lost_race
def _issue(
    *, principal: Principal, partner: Partner, cycle: Cycle, skip_empty: bool
) -> tuple[Invoice | None, bool]:
    """The invoice of the cycle and whether this call created it; None (and nothing
    stored) when ``skip_empty`` and the cycle has nothing to bill."""
    require(can_issue_invoices(principal), "Only the provider issues invoices.")
    if cycle.tz != partner.timezone:
        raise Invalid(
            f"Cycle {cycle} is not in the partner's timezone ({partner.timezone}).", field="cycle"
        )
    if clock.now() < cycle.start:
        raise Conflict(f"The invoice for {cycle} is not due before {cycle.start.isoformat()}.")
    existing = invoice_for_cycle(partner.pk, cycle)
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            return _create(
                principal=principal, partner_id=partner.pk, cycle=cycle, skip_empty=skip_empty
            )
    except IntegrityError:
        # A concurrent run stored it first: its invoice is the answer.
        existing = invoice_for_cycle(partner.pk, cycle)
        if existing is None:
            raise
        return existing, False


def _create(
    *, principal: Principal, partner_id: int, cycle: Cycle, skip_empty: bool
) -> tuple[Invoice | None, bool]:
    # The partner's row serialises issuing per partner (numbers, price read once);
    # SQLite's IMMEDIATE transaction already does. NO KEY UPDATE, as every lock
    # (docs/architecture.md): rows referencing the partner (periods, rollups) can still
    # be inserted while an invoice is computed.
    partner = Partner.objects.select_for_update(no_key=True).get(pk=partner_id)
    existing = invoice_for_cycle(partner.pk, cycle)
    if existing is not None:
        return existing, False
    # A cycle already over is being caught up: issued as it would have been at its start.
    draft = invoice_draft(partner=partner, cycle=cycle, as_of=invoice_as_of(cycle, clock.now()))
    if skip_empty and not draft.sections:
        # No line held at the start, nothing to prorate: no invoice, no number spent.
        # Once the cycle has started this cannot change (the history it reads is closed).
        return None, False
    invoice = _store(principal=principal, partner=partner, draft=draft)
    statements = statements_store(partner=partner, invoice=invoice, draft=draft)
    audit_record(
        principal=principal,
        partner_id=partner.pk,
        action="invoice.issue",
        object_type="invoice",
        object_id=invoice.pk,
        at=invoice.issued_at,
        data={
            "number": invoice.number,
            "period_month": f"{cycle.first_day:%Y-%m}",
            "period_start": invoice.period_start.isoformat(),
            "period_end": invoice.period_end.isoformat(),
            "currency": invoice.currency,
            "unit_price": str(invoice.unit_price),
            "total": str(invoice.total),
            "discounts": str(sum((s.discounts for s in draft.sections), Decimal(0))),
            "credits": str(sum((s.credits for s in draft.sections), Decimal(0))),
            "sections": len(draft.sections),
            "items": sum(len(s.items) for s in draft.sections),
            "statements": statements,
        },
    )
    return invoice, True


def _store(*, principal: Principal, partner: Partner, draft: DraftInvoice) -> Invoice:
    cycle = draft.cycle
    last = Invoice.objects.filter(partner_id=partner.pk).aggregate(m=Max("number"))["m"]
    invoice = Invoice.objects.create(
        partner=partner,
        number=(last or 0) + 1,
        period_month=cycle.first_day,
        period_start=cycle.start,
        period_end=cycle.end,
        timezone=cycle.tz,
        currency=partner.currency,
        unit_price=draft.unit_price,
        issued_at=clock.now(),
        total=draft.total,
    )
    sections = InvoiceSection.objects.bulk_create(
        [
            InvoiceSection(
                invoice=invoice,
                partner_id=partner.pk,
                sub_account_id=s.sub_account_id,
                name=s.name,
                kind=s.kind,
                position=s.position,
                line_quantity=s.line_quantity,
                recurring=s.recurring,
                prorations=s.prorations,
                discounts=s.discounts,
                credits=s.credits,
                total=s.total,
            )
            for s in draft.sections
        ],
        batch_size=_BATCH,
    )
    # One ledger entry per balance drawn on; the partial unique keys on (invoice, pool)
    # refuse a second one, so a credit can never be applied to this invoice twice.
    entries = {
        pool: CreditEntry.objects.create(
            partner=partner,
            sub_account_id=pool,
            kind=CreditEntryKind.APPLY,
            amount=-amount,
            invoice=invoice,
            reason=f"Applied to invoice {invoice.number} ({cycle.first_day:%Y-%m})",
            created_at=invoice.issued_at,
            created_by=principal.label,
        )
        for pool, amount in draft.credits_applied().items()
        if amount
    }
    _insert_items(
        (
            stored.pk,
            partner.pk,
            i.kind,
            i.line_id,
            i.other_sub_account_id,
            i.other_name,
            i.service_start,
            i.service_end,
            i.day,
            i.days,
            i.quantity,
            i.unit_price,
            i.amount,
            i.description,
            i.discount_id,
            entries[i.credit_pool].pk if i.kind == InvoiceItemKind.CREDIT else None,
        )
        for stored, s in zip(sections, draft.sections, strict=True)
        for i in s.items
    )
    return invoice


# The columns _insert_items writes, in the order of its rows.
_ITEM_COLUMNS = (
    "section_id",
    "partner_id",
    "kind",
    "line_id",
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


def _insert_items(rows: Iterable[tuple[Any, ...]]) -> None:
    """Store invoice items given as tuples of :data:`_ITEM_COLUMNS`.

    On PostgreSQL one ``COPY`` streams them: a partner with a million lines and
    100,000 moves has some 200,000 items, and building that many model objects for
    ``bulk_create`` cost more than a minute where ``COPY`` takes a few seconds (the
    table's CHECK constraints still apply). Elsewhere (SQLite) ``bulk_create``.
    """
    if connection.vendor == "postgresql":
        qn = connection.ops.quote_name
        table = qn(InvoiceItem._meta.db_table)
        columns = ", ".join(qn(c) for c in _ITEM_COLUMNS)
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return
    InvoiceItem.objects.bulk_create(
        (InvoiceItem(**dict(zip(_ITEM_COLUMNS, row, strict=True))) for row in rows),
        batch_size=_BATCH,
    )


def invoices_issue_due(*, principal: Principal, now: dt.datetime | None = None) -> list[Invoice]:
    """Issue, for every partner, every invoice due by ``now`` and missing (domain §3, "no
    month is ever lost"): each cycle since its latest invoice up to the one containing
    ``now``, oldest first, each exactly as it would have been issued on time (history
    decides what it holds), in its own transaction. A cycle with nothing to bill is
    skipped without spending a number.

    Returns the invoices this call created, per partner oldest first. A partner that
    fails is logged and the others are still invoiced, then
    :class:`BillingRunIncomplete` reports it; what was issued before the failure stays,
    and a rerun resumes at the cycle after its latest invoice.
    """
    require(can_issue_invoices(principal), "Only the provider issues invoices.")
    now = now or clock.now()
    partners = list(Partner.objects.order_by("pk"))
    current = {p.pk: cycle_containing(now, p.timezone) for p in partners}
    # The usual run finds every current cycle invoiced: one query, then nothing to do.
    invoiced = set(
        Invoice.objects.filter(
            period_month__in={c.first_day for c in current.values()}
        ).values_list("partner_id", "period_month")
    )
    issued: list[Invoice] = []
    failed: list[str] = []
    for partner in partners:
        if (partner.pk, current[partner.pk].first_day) in invoiced:
            continue
        cycle = current[partner.pk]
        try:
            for cycle in invoice_cycles_due(partner, now):
                invoice, created = _issue(
                    principal=principal, partner=partner, cycle=cycle, skip_empty=True
                )
                if created and invoice is not None:
                    issued.append(invoice)
        except Exception:
            logger.exception("Could not issue the %s invoice of partner %s", cycle, partner.slug)
            failed.append(partner.slug)
    if failed:
        raise BillingRunIncomplete(issued, failed)
    return issued


# --- Finalising ---------------------------------------------------------------------------


@retry_on_lost_race
@transaction.atomic
def invoice_finalize(*, principal: Principal, invoice: Invoice) -> Invoice:
    """Draft → finalized, once; the invoice never changes afterwards (409 when not a draft)."""
    require(can_finalize_invoices(principal), "Only provider staff finalize invoices.")
    current = Invoice.objects.get_visible(principal, invoice.pk, what="Invoice")
    at = clock.now()
    finalized = Invoice.objects.filter(pk=current.pk, status=InvoiceStatus.DRAFT).update(
        status=InvoiceStatus.FINALIZED, finalized_at=at
    )
    if not finalized:
        raise Conflict(f"Invoice {current.number} is already finalized.")
    audit_record(
        principal=principal,
        partner_id=current.partner_id,
        action="invoice.finalize",
        object_type="invoice",
        object_id=current.pk,
        at=at,
        data={
            "number": current.number,
            "before": {"status": InvoiceStatus.DRAFT},
            "after": {"status": InvoiceStatus.FINALIZED},
        },
    )
    current.refresh_from_db()
    return current


@retry_on_lost_race
@transaction.atomic
def invoices_finalize_due(*, principal: Principal, now: dt.datetime | None = None) -> int:
    """Finalize every draft issued at least :data:`FINALIZE_AFTER` ago. Returns how many.

    Set-based: one conditional ``UPDATE`` per batch and one audit event per invoice.
    """
    require(can_finalize_invoices(principal), "Only provider staff finalize invoices.")
    at = now or clock.now()
    due = list(
        Invoice.objects.select_for_update(no_key=True)
        .filter(status=InvoiceStatus.DRAFT, issued_at__lte=at - FINALIZE_AFTER)
        .order_by("pk")
        .values_list("pk", "partner_id", "number")
    )
    by_partner: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for pk, partner_id, number in due:
        by_partner[partner_id].append((pk, number))
    done = 0
    for partner_id, invoices in sorted(by_partner.items()):
        for batch in _batches(invoices):
            done += Invoice.objects.filter(
                pk__in=[pk for pk, _ in batch], status=InvoiceStatus.DRAFT
            ).update(status=InvoiceStatus.FINALIZED, finalized_at=at)
            audit_record_many(
                principal=principal,
                partner_id=partner_id,
                action="invoice.finalize",
                at=at,
                changes=(
                    Change(
                        "invoice",
                        pk,
                        {
                            "number": number,
                            "before": {"status": InvoiceStatus.DRAFT},
                            "after": {"status": InvoiceStatus.FINALIZED},
                        },
                    )
                    for pk, number in batch
                ),
            )
    return done


def _batches(rows: Sequence[tuple[int, int]]) -> list[Sequence[tuple[int, int]]]:
    return [rows[i : i + _BATCH] for i in range(0, len(rows), _BATCH)]
