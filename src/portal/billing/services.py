"""Writes for billing: issuing and finalising invoices, one function per change.

An invoice is computed from assignment history by :func:`selectors.invoice_draft`
and stored in one transaction with one audit event. Issuing is idempotent: the
unique ``(partner, period_month)`` key means a second run, or a concurrent one,
returns the invoice already there, unchanged, whatever its status.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Sequence

from django.db import IntegrityError, transaction
from django.db.models import Max

from portal.accounts.policies import require
from portal.accounts.principal import Principal
from portal.audit.services import Change, audit_record, audit_record_many
from portal.billing.models import Invoice, InvoiceItem, InvoiceSection, InvoiceStatus
from portal.billing.periods import Cycle, cycle_containing
from portal.billing.policies import can_finalize_invoices, can_issue_invoices
from portal.billing.selectors import DraftInvoice, invoice_draft, invoice_for_cycle
from portal.core import clock
from portal.core.errors import Conflict, Invalid
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


def invoice_issue(*, principal: Principal, partner: Partner, cycle: Cycle) -> Invoice:
    """Issue the invoice of ``cycle`` (in the partner's timezone) for ``partner``, in advance.

    Recurring charges for the lines held at the cycle's start, prorations for the
    cycle before; see :mod:`portal.billing.selectors`. Returns the existing invoice
    unchanged when the cycle is already invoiced.
    """
    invoice, _ = _issue(principal=principal, partner=partner, cycle=cycle)
    return invoice


def _issue(*, principal: Principal, partner: Partner, cycle: Cycle) -> tuple[Invoice, bool]:
    """The invoice of the cycle and whether this call created it."""
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
            return _create(principal=principal, partner_id=partner.pk, cycle=cycle)
    except IntegrityError:
        # A concurrent run stored it first: its invoice is the answer.
        existing = invoice_for_cycle(partner.pk, cycle)
        if existing is None:
            raise
        return existing, False


def _create(*, principal: Principal, partner_id: int, cycle: Cycle) -> tuple[Invoice, bool]:
    # The partner's row serialises issuing per partner (numbers, price read once);
    # SQLite's IMMEDIATE transaction already does.
    partner = Partner.objects.select_for_update().get(pk=partner_id)
    existing = invoice_for_cycle(partner.pk, cycle)
    if existing is not None:
        return existing, False
    draft = invoice_draft(partner=partner, cycle=cycle)
    invoice = _store(partner=partner, draft=draft)
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
            "sections": len(draft.sections),
            "items": sum(len(s.items) for s in draft.sections),
        },
    )
    return invoice, True


def _store(*, partner: Partner, draft: DraftInvoice) -> Invoice:
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
    InvoiceItem.objects.bulk_create(
        (
            InvoiceItem(
                section_id=stored.pk,
                partner_id=partner.pk,
                kind=i.kind,
                line_id=i.line_id,
                other_sub_account_id=i.other_sub_account_id,
                other_name=i.other_name,
                service_start=i.service_start,
                service_end=i.service_end,
                day=i.day,
                days=i.days,
                quantity=i.quantity,
                unit_price=i.unit_price,
                amount=i.amount,
                description=i.description,
            )
            for stored, s in zip(sections, draft.sections, strict=True)
            for i in s.items
        ),
        batch_size=_BATCH,
    )
    return invoice


def invoices_issue_due(*, principal: Principal, now: dt.datetime | None = None) -> list[Invoice]:
    """Issue, for every partner, the invoice of its cycle containing ``now`` if missing.

    Returns the invoices this call created. Each partner is its own transaction; a
    partner that fails is logged and the others are still invoiced, then
    :class:`BillingRunIncomplete` reports it (a rerun picks it up).
    """
    require(can_issue_invoices(principal), "Only the provider issues invoices.")
    now = now or clock.now()
    partners = list(Partner.objects.order_by("pk"))
    cycles = {p.pk: cycle_containing(now, p.timezone) for p in partners}
    invoiced = set(
        Invoice.objects.filter(period_month__in={c.first_day for c in cycles.values()}).values_list(
            "partner_id", "period_month"
        )
    )
    issued: list[Invoice] = []
    failed: list[str] = []
    for partner in partners:
        cycle = cycles[partner.pk]
        if (partner.pk, cycle.first_day) in invoiced:
            continue
        try:
            invoice, created = _issue(principal=principal, partner=partner, cycle=cycle)
        except Exception:
            logger.exception("Could not issue the %s invoice of partner %s", cycle, partner.slug)
            failed.append(partner.slug)
            continue
        if created:
            issued.append(invoice)
    if failed:
        raise BillingRunIncomplete(issued, failed)
    return issued


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


@transaction.atomic
def invoices_finalize_due(*, principal: Principal, now: dt.datetime | None = None) -> int:
    """Finalize every draft issued at least :data:`FINALIZE_AFTER` ago. Returns how many.

    Set-based: one conditional ``UPDATE`` per batch and one audit event per invoice.
    """
    require(can_finalize_invoices(principal), "Only provider staff finalize invoices.")
    at = now or clock.now()
    due = list(
        Invoice.objects.select_for_update()
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
