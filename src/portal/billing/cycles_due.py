"""Which cycles are due an invoice: every cycle a billing run issues, oldest first, so
that no month is ever lost (:func:`invoice_cycles_due`), whether a cycle has anything to
bill (a cycle without gets no invoice), and the cycle of the next invoice.

Internal (``core.tenancy``): it takes a bare partner, scoped by its callers.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Max, Min, Q

from portal.billing.drafting import invoice_draft, invoice_for_cycle
from portal.billing.models import Invoice
from portal.billing.periods import Cycle, cycle_containing, cycles_from
from portal.core import clock
from portal.lines.models import AssignmentPeriod
from portal.partners.models import Partner


def next_invoice_cycle(partner: Partner, now: dt.datetime | None = None) -> Cycle:
    """The cycle of the next invoice to be issued: the current one until its invoice
    exists, then the next; the next as well when the current cycle has nothing to bill
    (it never gets an invoice, see :func:`cycle_has_charges`). A grant made now applies
    from this cycle's invoice."""
    cycle = cycle_containing(now or clock.now(), partner.timezone)
    if invoice_for_cycle(partner.pk, cycle) is not None or not cycle_has_charges(partner, cycle):
        return cycle.next()
    return cycle


def cycle_has_charges(partner: Partner, cycle: Cycle) -> bool:
    """Whether the invoice of ``cycle`` holds anything: lines held at its start, or
    prorations of the cycle before. A cycle with neither gets no invoice (domain §3).

    Lines held at the start answer in one ``EXISTS``; otherwise the draft decides (a
    partner holding nothing has few changes to look at)."""
    held = (
        AssignmentPeriod.objects.filter(partner_id=partner.pk, start__lte=cycle.start)
        .filter(Q(end__isnull=True) | Q(end__gt=cycle.start))
        .exists()
    )
    return held or bool(invoice_draft(partner=partner, cycle=cycle).sections)


def invoice_cycles_due(partner: Partner, now: dt.datetime | None = None) -> list[Cycle]:
    """The cycles whose invoice is due by ``now`` and not issued, oldest first (domain §3,
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
