"""No month is ever lost (domain §3): a billing run issues every cycle due since a
partner's latest invoice, oldest first, exactly as if it had run on time; a cycle with
no line at its start and nothing to prorate gets no invoice and spends no number.

History is laid down with ``frozen_at``; "on time" means a run at each cycle's start.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from io import StringIO
from typing import Any
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from portal.audit.models import AuditEvent
from portal.billing import invoicing
from portal.billing.cycles_due import invoice_cycles_due, next_invoice_cycle
from portal.billing.invoicing import invoices_finalize_due, invoices_issue_due
from portal.billing.models import CreditEntry, Discount, Invoice, InvoiceItem, InvoiceSection
from portal.billing.periods import Cycle, cycles_from
from portal.billing.terms import (
    credit_grant,
    discount_grant,
    discount_remove,
    partner_billing_update,
)
from portal.core.clock import frozen_at
from portal.core.errors import Invalid
from portal.core.phone import display_number
from portal.lines.models import Line
from portal.lines.services import line_disconnect, line_move
from portal.partners.models import Partner, SubAccount
from portal.partners.services import sub_account_update
from tests.factories import SYSTEM, at, make_lines, make_partner, make_sub_account

D = Decimal


def run_billing(when: dt.datetime) -> list[str]:
    out = StringIO()
    with frozen_at(when):
        call_command("runbilling", stdout=out)
    return out.getvalue().splitlines()


def invoices(partner: Partner) -> list[Invoice]:
    return list(Invoice.objects.filter(partner=partner).order_by("number"))


def kinds(invoice: Invoice) -> list[tuple[str, str, Decimal]]:
    """(section name, kind, amount) of every item, in section then item order."""
    rows = InvoiceItem.objects.filter(section__invoice=invoice).select_related("section")
    return [
        (i.section.name, i.kind, i.amount) for i in rows.order_by("section__position", "kind", "pk")
    ]


# --- The pure part ----------------------------------------------------------------------


def test_cycles_from_lists_the_months_oldest_first_across_a_year_end():
    months = cycles_from(Cycle(2026, 11, "Asia/Tokyo"), Cycle(2027, 2, "Asia/Tokyo"))
    assert [(c.year, c.month) for c in months] == [(2026, 11), (2026, 12), (2027, 1), (2027, 2)]
    assert cycles_from(Cycle(2026, 6, "UTC"), Cycle(2026, 6, "UTC")) == [Cycle(2026, 6, "UTC")]
    assert cycles_from(Cycle(2026, 7, "UTC"), Cycle(2026, 6, "UTC")) == []
    with pytest.raises(ValueError):
        cycles_from(Cycle(2026, 6, "UTC"), Cycle(2026, 7, "Asia/Tokyo"))


# --- The issue's scenario, through the command ------------------------------------------


def test_a_run_on_september_1_issues_july_august_and_september(db):
    """Created June 20 with one line, the line moved July 10, nothing run until
    September 1: July, August and September are issued then, numbered 1 to 3."""
    with frozen_at(at("2026-06-20T09:00:00+00:00")):
        partner = make_partner("Late Starter")
        (line,) = make_lines(partner, 1)
    a = make_sub_account(partner, "A")
    with frozen_at(at("2026-07-10T12:00:00+00:00")):
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=a.pk)

    output = run_billing(at("2026-09-01T00:10:00+00:00"))

    assert output == [
        f"{partner.slug}: invoice 1 for 2026-07 (UTC): 68.33 USD",
        f"{partner.slug}: invoice 2 for 2026-08 (UTC): 50.00 USD",
        f"{partner.slug}: invoice 3 for 2026-09 (UTC): 50.00 USD",
        "Issued 3 invoices.",
    ]
    july, august, september = invoices(partner)
    # June: nothing held on June 1, nothing to prorate from May: no invoice.
    assert [i.period_month.month for i in (july, august, september)] == [7, 8, 9]
    # July: the line in advance plus its activation on June 20 (11 of 30 days).
    assert kinds(july) == [
        ("Available", "activation", D("18.33")),
        ("Available", "recurring", D("50.00")),
    ]
    activation = InvoiceItem.objects.get(section__invoice=july, kind="activation")
    assert (activation.day, activation.days) == (20, 11)
    # August: the line in A, and the July 10 move (22 of 31 days) as a pair.
    assert kinds(august) == [
        ("Available", "move_credit", D("-35.48")),
        ("A", "move_charge", D("35.48")),
        ("A", "recurring", D("50.00")),
    ]
    assert kinds(september) == [("A", "recurring", D("50.00"))]
    # One issue event per invoice, as for an invoice issued on time.
    events = AuditEvent.objects.filter(action="invoice.issue", partner_id=partner.pk)
    assert sorted(e.data["number"] for e in events) == [1, 2, 3]
    assert {e.data["period_month"] for e in events} == {"2026-07", "2026-08", "2026-09"}
    # Rerunning issues nothing.
    assert run_billing(at("2026-09-01T00:20:00+00:00")) == ["Issued 0 invoices."]
    # Issued late, they are drafts for the usual grace period from their issue.
    assert invoices_finalize_due(principal=SYSTEM, now=at("2026-09-03T23:59:00+00:00")) == 0
    assert invoices_finalize_due(principal=SYSTEM, now=at("2026-09-04T00:10:00+00:00")) == 3


def test_a_run_in_the_month_a_partner_is_created_spends_no_number(db):
    with frozen_at(at("2026-06-20T09:00:00+00:00")):
        partner = make_partner("Brand New")
        make_lines(partner, 2)
    empty = make_partner("No Lines Yet")

    assert run_billing(at("2026-06-20T09:10:00+00:00")) == ["Issued 0 invoices."]
    assert not Invoice.objects.exists()
    assert invoice_cycles_due(empty, at("2026-06-20T09:10:00+00:00")) == []

    assert run_billing(at("2026-07-01T00:10:00+00:00"))[-1] == "Issued 1 invoice."
    (july,) = invoices(partner)
    assert july.number == 1 and july.total == D("2") * D("50.00") + D("2") * D("18.33")
    assert not Invoice.objects.filter(partner=empty).exists()


def test_a_grant_made_in_an_empty_cycle_applies_from_the_first_invoice(db):
    with frozen_at(at("2026-06-20T09:00:00+00:00")):
        partner = make_partner("Welcome Discount")
        make_lines(partner, 1)
    held = make_partner("Held On June 1")
    with frozen_at(at("2026-06-01T00:00:00+00:00")):
        make_lines(held, 1)

    with frozen_at(at("2026-06-25T00:00:00+00:00")):
        # June will never have an invoice for the first; the second's is due.
        assert next_invoice_cycle(partner) == Cycle(2026, 7, "UTC")
        assert next_invoice_cycle(held) == Cycle(2026, 6, "UTC")
        discount = discount_grant(
            principal=SYSTEM.acting_for(partner.pk), kind="percent", value="10", cycles=1
        )
    assert discount.first_month == dt.date(2026, 7, 1)
    run_billing(at("2026-07-01T00:10:00+00:00"))
    (july,) = invoices(partner)
    assert ("Available", "discount", D("-5.00")) in kinds(july)


def test_a_refused_first_month_says_why(db):
    """A discount starts with the next invoice not issued yet; an earlier month is
    refused with its real reason: issued, skipped with nothing to bill, or missed by
    billing and issued by the next run as it stood when due."""
    with frozen_at(at("2026-06-01T09:00:00+00:00")):
        partner = make_partner("Asks For June")
        make_lines(partner, 1)
    run_billing(at("2026-07-01T00:10:00+00:00"))  # June held nothing on June 1

    def refused(month: int) -> str:
        with (
            frozen_at(at("2026-09-15T12:00:00+00:00")),
            pytest.raises(Invalid) as info,
        ):
            discount_grant(
                principal=SYSTEM.acting_for(partner.pk),
                kind="percent",
                value="10",
                first_month=dt.date(2026, month, 1),
            )
        return str(info.value)

    assert refused(6).startswith("2026-06 had nothing to bill, so it got no invoice; ")
    assert refused(7).startswith("The invoice of 2026-07 is already issued and never changes")
    assert refused(8) == (
        "The invoice of 2026-08, not issued yet, was due on 2026-08-01: billing issues it as "
        "it would have been then; start from 2026-09 or later."
    )


# --- Exactly as if on time ------------------------------------------------------------------

Step = tuple[str, Callable[["World"], object]]


@dataclass
class World:
    partner: Partner
    subs: dict[str, SubAccount]
    lines: list[Line] = field(default_factory=list)

    def add_lines(self, count: int) -> None:
        self.lines += make_lines(self.partner, count)

    def move(self, index: int, to: str) -> None:
        line_move(principal=SYSTEM, line_id=self.lines[index].pk, sub_account_id=self.subs[to].pk)

    def disconnect(self, index: int) -> None:
        line_disconnect(principal=SYSTEM, line_id=self.lines[index].pk)


BUSY: list[Step] = [
    ("2026-05-12T10:00:00+00:00", lambda w: w.add_lines(3)),
    ("2026-05-12T10:05:00+00:00", lambda w: (w.move(0, "A"), w.move(1, "A"))),
    (
        "2026-05-12T10:10:00+00:00",
        lambda w: partner_billing_update(
            principal=SYSTEM.acting_for(w.partner.pk), credit_disconnects=True
        ),
    ),
    (
        "2026-05-12T11:00:00+00:00",
        lambda w: credit_grant(
            principal=SYSTEM.acting_for(w.partner.pk), amount="30", reason="Goodwill"
        ),
    ),
    (
        "2026-05-12T11:05:00+00:00",
        lambda w: discount_grant(
            principal=SYSTEM.acting_for(w.partner.pk),
            kind="percent",
            value="10",
            first_month=dt.date(2026, 6, 1),
            cycles=3,
        ),
    ),
    ("2026-06-16T12:00:00+00:00", lambda w: w.move(1, "B")),
    ("2026-06-20T09:00:00+00:00", lambda w: w.add_lines(1)),
    ("2026-07-10T08:00:00+00:00", lambda w: w.move(3, "C")),
    ("2026-07-10T15:00:00+00:00", lambda w: w.move(3, "B")),  # Available→C→B in one day is →B
    (
        "2026-07-15T12:00:00+00:00",
        lambda w: partner_billing_update(
            principal=SYSTEM.acting_for(w.partner.pk), line_price="60.00"
        ),
    ),
    ("2026-07-21T09:00:00+00:00", lambda w: w.disconnect(2)),
    ("2026-08-01T00:00:00+00:00", lambda w: w.add_lines(1)),
    ("2026-08-31T23:30:00+00:00", lambda w: w.move(0, "C")),
]

# A line from June 1 (after the cycle began) gone in July (no refund), a new one in
# October: June and August to October have nothing to bill; numbers run on without a gap.
DORMANT: list[Step] = [
    ("2026-06-01T09:00:00+00:00", lambda w: w.add_lines(1)),
    ("2026-07-15T09:00:00+00:00", lambda w: w.disconnect(0)),
    ("2026-10-05T09:00:00+00:00", lambda w: w.add_lines(1)),
]


def _snapshot(world: World) -> list[Any]:
    """The partner's invoices and ledger as comparable values: line and discount ids
    replaced by the order they were created in, sub-accounts by their names, and the
    issue instant and status (which depend on when the run happened) left out."""
    line_index = {line.pk: i for i, line in enumerate(world.lines)}
    shown = {display_number(line.number): f"L{i}" for i, line in enumerate(world.lines)}

    def text(description: str) -> str:
        for number, name in shown.items():
            description = description.replace(number, name)
        return description

    result: list[Any] = []
    for invoice in invoices(world.partner):
        sections = []
        for s in InvoiceSection.objects.filter(invoice=invoice).order_by("position"):
            items = [
                (
                    i.kind,
                    line_index.get(i.line_id),
                    i.other_name,
                    i.service_start,
                    i.service_end,
                    i.day,
                    i.days,
                    i.quantity,
                    i.unit_price,
                    i.amount,
                    text(i.description),
                    i.discount.name if i.discount_id else None,
                    i.credit_entry.amount if i.credit_entry_id else None,
                )
                for i in InvoiceItem.objects.filter(section=s)
                .select_related("discount", "credit_entry")
                .order_by("pk")
            ]
            sections.append(
                (
                    *(s.position, s.name, s.kind, s.line_quantity, s.recurring, s.prorations),
                    *(s.discounts, s.credits, s.total, items),
                )
            )
        result.append(
            (
                *(invoice.number, invoice.period_month, invoice.period_start, invoice.period_end),
                *(invoice.unit_price, invoice.currency, invoice.total, sections),
            )
        )
    ledger = CreditEntry.objects.filter(partner=world.partner).order_by("pk")
    result.append([(e.kind, e.amount, e.reason, e.invoice_id is not None) for e in ledger])
    return result


def _play(world: World, steps: list[Step], runs: list[dt.datetime]) -> None:
    """The history's steps in time order, with a billing run at each of ``runs``."""
    timeline: list[tuple[dt.datetime, int, Callable[[], object]]] = [
        (at(when), 0, lambda step=step: step(world)) for when, step in steps
    ]
    timeline += [
        (when, 1, lambda when=when: invoices_issue_due(principal=SYSTEM, now=when)) for when in runs
    ]
    for when, _, action in sorted(timeline, key=lambda t: (t[0], t[1])):
        with frozen_at(when):
            action()


def _on_time_and_late(steps: list[Step], tz: str, last_month: int) -> tuple[list[Any], list[Any]]:
    """Snapshots of the same history billed on time (a run at each cycle's start, May to
    ``last_month``) and by one late run at the last cycle's start; the on-time world is
    rolled back before the late one is played."""
    partner = make_partner(f"As If On Time {tz}", timezone=tz)
    subs = {name: make_sub_account(partner, name) for name in ("A", "B", "C")}
    last = Cycle(2026, last_month, tz)
    starts = [c.start + dt.timedelta(minutes=10) for c in cycles_from(Cycle(2026, 5, tz), last)]

    on_time = World(partner, subs)
    savepoint = transaction.savepoint_create()
    _play(on_time, steps, runs=starts)
    expected = _snapshot(on_time)
    transaction.savepoint_rollback(savepoint)
    assert not Invoice.objects.exists() and not Line.objects.filter(partner=partner).exists()

    partner.refresh_from_db()
    late = World(partner, subs)
    _play(late, steps, runs=[starts[-1]])
    return expected, _snapshot(late)


@pytest.mark.parametrize(
    ("steps", "tz", "months"),
    [
        (BUSY, "UTC", [6, 7, 8, 9, 10]),
        (BUSY, "America/New_York", [6, 7, 8, 9, 10]),
        (DORMANT, "Europe/Paris", [7, 11, 12]),
    ],
    ids=["busy-utc", "busy-new-york", "dormant-paris"],
)
def test_a_late_run_issues_what_runs_on_time_would_have_issued(db, steps, tz, months):
    expected, got = _on_time_and_late(steps, tz, months[-1])

    assert [(row[0], row[1].month) for row in got[:-1]] == list(enumerate(months, start=1))
    assert got == expected
    assert any(item for row in got[:-1] for section in row[7] for item in section[9])


# What has no history table of its own (credit grants, discount removals, names): a late
# run reads it as of each missed cycle's start (drafting.invoice_as_of), so it still
# issues what the runs on time would have issued.
_HELD = [
    ("2026-05-12T10:00:00+00:00", lambda w: w.add_lines(2)),
    ("2026-05-12T10:05:00+00:00", lambda w: w.move(0, "A")),
]


def _remove_discounts(w: World) -> None:
    for discount in Discount.objects.filter(partner=w.partner):
        discount_remove(principal=SYSTEM, discount_id=discount.pk)


OUTAGE_GAPS = {
    "credit-granted-during-outage": [
        *_HELD,
        (
            "2026-08-15T12:00:00+00:00",
            lambda w: credit_grant(
                principal=SYSTEM.acting_for(w.partner.pk), amount="20", reason="x"
            ),
        ),
    ],
    "discount-removed-during-outage": [
        *_HELD,
        (
            "2026-05-12T11:00:00+00:00",
            lambda w: discount_grant(
                principal=SYSTEM.acting_for(w.partner.pk),
                kind="percent",
                value="10",
                first_month=dt.date(2026, 6, 1),
            ),
        ),
        ("2026-08-15T12:00:00+00:00", _remove_discounts),
    ],
    "sub-account-renamed-during-outage": [
        *_HELD,
        (
            "2026-08-15T12:00:00+00:00",
            lambda w: sub_account_update(
                principal=SYSTEM.acting_for(w.partner.pk), sub_account=w.subs["A"], name="A2"
            ),
        ),
    ],
}


@pytest.mark.parametrize("steps", OUTAGE_GAPS.values(), ids=OUTAGE_GAPS.keys())
def test_what_has_no_history_is_read_as_of_the_late_run(db, steps):
    expected, got = _on_time_and_late(steps, "UTC", 9)
    assert got == expected


def test_the_busy_history_holds_what_it_should(db):
    """A sanity check that the comparison above compares something: July carries the
    June move, the June activation, the discount and the partner's credit."""
    partner = make_partner("Busy")
    world = World(partner, {n: make_sub_account(partner, n) for n in ("A", "B", "C")})
    _play(world, BUSY, runs=[at("2026-10-01T00:10:00+00:00")])
    june, july, august, september, _ = invoices(partner)
    assert {k for _, k, _ in kinds(july)} >= {
        "recurring",
        "move_credit",
        "move_charge",
        "activation",
        "discount",
    }
    assert sum(a for _, k, a in kinds(june) if k == "credit") == D("-30.00")
    assert august.unit_price == D("60.00") and july.unit_price == D("50.00")
    assert any(k == "disconnect_credit" for _, k, _ in kinds(august))
    assert not any(k == "discount" for _, k, _ in kinds(september))


# --- Which cycles are listed --------------------------------------------------------------


def test_cycles_after_the_last_line_ended_are_not_listed(db):
    partner = make_partner("Gone Quiet")
    world = World(partner, {})
    _play(world, DORMANT[:2], runs=[])
    december = at("2026-12-01T00:10:00+00:00")
    # From the first line's month to the month after the last one ended (which would
    # carry a refund under credit_disconnects); nothing later can hold anything.
    assert invoice_cycles_due(partner, december) == [
        Cycle(2026, 6, "UTC"),
        Cycle(2026, 7, "UTC"),
        Cycle(2026, 8, "UTC"),
    ]
    with frozen_at(december):
        issued = invoices_issue_due(principal=SYSTEM)
    # June held nothing at its start; August has no refund to carry.
    assert [(i.number, i.period_month.month) for i in issued] == [(1, 7)]
    # August stays listed (a run drafts it and skips it again), nothing after it.
    assert invoice_cycles_due(partner, december) == [Cycle(2026, 8, "UTC")]


def test_a_failed_catch_up_resumes_at_the_cycle_after_the_latest_invoice(db):
    partner = make_partner("Interrupted")
    with frozen_at(at("2026-06-01T00:00:00+00:00")):
        make_lines(partner, 1)
    real = invoicing._issue

    def fail_in_august(*, cycle: Cycle, **kwargs: Any) -> Any:
        if cycle.month == 8:
            raise RuntimeError("the database went away")
        return real(cycle=cycle, **kwargs)

    october = at("2026-10-01T00:10:00+00:00")
    with (
        mock.patch.object(invoicing, "_issue", side_effect=fail_in_august),
        pytest.raises(invoicing.BillingRunIncomplete) as info,
    ):
        invoices_issue_due(principal=SYSTEM, now=october)
    assert [i.period_month.month for i in info.value.issued] == [6, 7]
    assert info.value.failed == [partner.slug]

    with frozen_at(october):
        issued = invoices_issue_due(principal=SYSTEM)
    assert [(i.number, i.period_month.month) for i in issued] == [(3, 8), (4, 9), (5, 10)]


# --- Concurrent runs ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_catch_up_runs_issue_each_cycle_once_numbered_in_order():
    partners = []
    for name in ("Racing One", "Racing Two"):
        partner = make_partner(name)
        with frozen_at(at("2026-05-20T00:00:00+00:00")):
            make_lines(partner, 2)
        partners.append(partner)
    october = at("2026-10-01T00:10:00+00:00")
    count = 3
    barrier = threading.Barrier(count, timeout=30)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait()
            with frozen_at(october):
                if i == 0:
                    out = StringIO()
                    call_command("runbilling", stdout=out)
                    results[i] = out.getvalue()
                else:
                    results[i] = [inv.pk for inv in invoices_issue_due(principal=SYSTEM)]
        except BaseException as exc:  # reported below with the thread's index
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not [r for r in results if isinstance(r, BaseException)], results

    for partner in partners:
        rows = [(i.number, i.period_month.month) for i in invoices(partner)]
        assert rows == [(1, 6), (2, 7), (3, 8), (4, 9), (5, 10)]
        events = AuditEvent.objects.filter(action="invoice.issue", partner_id=partner.pk)
        assert events.count() == 5
    # Each invoice is reported as created by exactly one of the runs.
    created = results[1] + results[2]
    assert len(set(created)) == len(created)
    assert len(created) + results[0].count(": invoice ") == 10
