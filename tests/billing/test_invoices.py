"""Issuing invoices (domain §3): recurring in advance, prorations for the cycle before.

History is laid down in the past with ``frozen_at``: lines are activated, moved and
disconnected "now", so the clock is pinned at the instant each change should have.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from decimal import Decimal
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command, load_command_class
from django.db import IntegrityError

from portal.audit.models import AuditEvent
from portal.billing import holders, invoicing, proration
from portal.billing.drafting import invoice_draft, proration_items
from portal.billing.holders import holder_changes
from portal.billing.invoicing import (
    invoice_finalize,
    invoice_issue,
    invoices_finalize_due,
    invoices_issue_due,
)
from portal.billing.models import Invoice, InvoiceItem, InvoiceSection, InvoiceStatus
from portal.billing.periods import Cycle
from portal.core.clock import frozen_at
from portal.core.errors import Conflict, Forbidden, Invalid
from portal.core.phone import display_number
from portal.jobs import periodic
from portal.lines.models import AssignmentPeriod, Line
from portal.lines.services import line_disconnect, line_move
from portal.partners.models import Partner, SubAccount
from portal.partners.selectors import available_pool
from portal.partners.services import sub_account_update
from tests.factories import (
    SYSTEM,
    at,
    force_state,
    issue_invoice,
    make_lines,
    make_partner,
    make_sub_account,
)

D = Decimal


def sections(invoice: Invoice) -> dict[str, tuple[int, Decimal, Decimal, Decimal]]:
    """name -> (line quantity, recurring, prorations, total)."""
    return {
        s.name: (s.line_quantity, s.recurring, s.prorations, s.total)
        for s in InvoiceSection.objects.filter(invoice=invoice).order_by("position")
    }


def items(invoice: Invoice, *kinds: str) -> list[tuple[str, str, Decimal]]:
    """(section name, kind, amount) of the invoice's items, proration kinds by default."""
    kinds = kinds or (
        proration.MOVE_CREDIT,
        proration.MOVE_CHARGE,
        proration.ACTIVATION,
        proration.DISCONNECT_CREDIT,
    )
    qs = InvoiceItem.objects.filter(section__invoice=invoice, kind__in=kinds)
    qs = qs.order_by("section__position", "pk")
    return [(i.section.name, i.kind, i.amount) for i in qs.select_related("section")]


def move(line: Line, to: SubAccount, when: str) -> None:
    with frozen_at(at(when)):
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=to.pk)


def lines_at(partner: Partner, when: str, count: int) -> list[Line]:
    with frozen_at(at(when)):
        return make_lines(partner, count)


def set_partner(partner: Partner, **fields: object) -> None:
    Partner.objects.filter(pk=partner.pk).update(**fields)
    partner.refresh_from_db()


# --- domain §3 worked example -----------------------------------------------------------


def test_the_worked_example(db):
    partner = make_partner("Worked Example")
    a = make_sub_account(partner, "A")
    b = make_sub_account(partner, "B")
    first, second = lines_at(partner, "2026-04-10T09:00:00+00:00", 2)
    move(first, a, "2026-04-10T09:05:00+00:00")
    move(second, a, "2026-04-10T09:05:00+00:00")
    issue_invoice(partner, 2026, 5)

    june = issue_invoice(partner, 2026, 6)
    assert sections(june) == {"A": (2, D("100.00"), D(0), D("100.00"))}
    assert june.total == D("100.00")

    move(second, b, "2026-06-16T12:00:00+00:00")
    july = issue_invoice(partner, 2026, 7)

    assert sections(july) == {
        "A": (1, D("50.00"), D("-25.00"), D("25.00")),
        "B": (1, D("50.00"), D("25.00"), D("75.00")),
    }
    assert july.total == D("100.00")
    credit, charge = InvoiceItem.objects.filter(
        section__invoice=july, kind__in=["move_credit", "move_charge"]
    ).order_by("section__position")
    assert credit.amount == -charge.amount == D("-25.00")
    assert (credit.day, credit.days) == (16, 15)
    assert credit.service_start == dt.date(2026, 6, 16)
    assert credit.service_end == dt.date(2026, 6, 30)
    assert credit.line_id == second.pk and credit.other_sub_account_id == b.pk
    assert credit.other_name == "B" and charge.other_name == "A"
    shown = display_number(second.number)
    assert charge.description == f"{shown} moved from A on 2026-06-16: 15 of 30 days"
    assert credit.description == f"{shown} moved to B on 2026-06-16: 15 of 30 days"
    assert shown.startswith("+1 415 555 ")


def test_a_move_late_on_june_30_in_new_york_belongs_to_june(db):
    partner = make_partner("Empire Lines", timezone="America/New_York")
    a = make_sub_account(partner, "A")
    b = make_sub_account(partner, "B")
    first, second = lines_at(partner, "2026-05-10T12:00:00+00:00", 2)
    move(first, a, "2026-05-10T12:01:00+00:00")
    move(second, a, "2026-05-10T12:01:00+00:00")
    june = issue_invoice(partner, 2026, 6)
    assert june.period_start == at("2026-06-01T04:00:00+00:00")
    assert june.period_end == at("2026-07-01T04:00:00+00:00")
    assert june.period_month == dt.date(2026, 6, 1)

    move(second, b, "2026-07-01T02:00:00+00:00")  # 22:00 on June 30 in New York
    july = issue_invoice(partner, 2026, 7)

    assert sections(july) == {
        "A": (1, D("50.00"), D("-1.67"), D("48.33")),
        "B": (1, D("50.00"), D("1.67"), D("51.67")),
    }
    credit = InvoiceItem.objects.get(section__invoice=july, kind="move_credit")
    assert (credit.day, credit.days, credit.service_start) == (30, 1, dt.date(2026, 6, 30))


def test_the_same_move_in_utc_is_a_july_move(db):
    partner = make_partner("Greenwich Lines")
    a = make_sub_account(partner, "A")
    b = make_sub_account(partner, "B")
    (line,) = lines_at(partner, "2026-05-10T12:00:00+00:00", 1)
    move(line, a, "2026-05-10T12:01:00+00:00")
    move(line, b, "2026-07-01T02:00:00+00:00")

    july = issue_invoice(partner, 2026, 7)  # at 00:00 UTC, before the move

    assert sections(july) == {"A": (1, D("50.00"), D(0), D("50.00"))}
    august = issue_invoice(partner, 2026, 8)
    assert sections(august) == {
        "A": (0, D(0), D("-50.00"), D("-50.00")),
        "B": (1, D("50.00"), D("50.00"), D("100.00")),
    }


def test_moves_within_one_day_collapse(db):
    partner = make_partner("Busy Day")
    a, b, c = (make_sub_account(partner, name) for name in ("A", "B", "C"))
    via_c, back, at_midnight = lines_at(partner, "2026-05-02T08:00:00+00:00", 3)
    for line in (via_c, back, at_midnight):
        move(line, a, "2026-05-02T08:01:00+00:00")
    issue_invoice(partner, 2026, 6)

    move(via_c, c, "2026-06-10T10:00:00+00:00")  # A → C → B on June 10 is A → B
    move(via_c, b, "2026-06-10T15:00:00+00:00")
    move(back, b, "2026-06-12T09:00:00+00:00")  # A → B → A on June 12 is nothing
    move(back, a, "2026-06-12T18:00:00+00:00")
    move(at_midnight, b, "2026-06-20T00:00:00+00:00")  # midnight opens June 20
    july = issue_invoice(partner, 2026, 7)

    assert items(july) == [
        ("A", "move_credit", D("-35.00")),  # 21 of 30 days
        ("A", "move_credit", D("-18.33")),  # 11 of 30 days
        ("B", "move_charge", D("35.00")),
        ("B", "move_charge", D("18.33")),
    ]
    assert "C" not in sections(july)
    days = sorted(
        InvoiceItem.objects.filter(section__invoice=july, kind="move_charge").values_list(
            "line_id", "day"
        )
    )
    assert days == sorted([(via_c.pk, 10), (at_midnight.pk, 20)])


def test_a_new_line_is_prorated_to_its_holder_at_the_end_of_its_first_day(db):
    partner = make_partner("Growing")
    a = make_sub_account(partner, "A")
    issue_invoice(partner, 2026, 6)
    kept, assigned = lines_at(partner, "2026-06-10T12:00:00+00:00", 2)
    move(assigned, a, "2026-06-10T23:00:00+00:00")

    july = issue_invoice(partner, 2026, 7)

    assert sections(july) == {
        "Available": (1, D("50.00"), D("35.00"), D("85.00")),
        "A": (1, D("50.00"), D("35.00"), D("85.00")),
    }
    item = InvoiceItem.objects.get(section__invoice=july, line=kept)
    assert item.kind == "activation"
    assert (item.day, item.days) == (10, 21)
    shown = display_number(kept.number)
    assert item.description == f"{shown} activated on 2026-06-10: 21 of 30 days"


def test_new_lines_pay_the_full_month_when_proration_is_off(db):
    partner = make_partner("No Proration")
    set_partner(partner, prorate_new_lines=False)
    lines_at(partner, "2026-06-29T12:00:00+00:00", 1)

    july = issue_invoice(partner, 2026, 7)

    assert items(july) == [("Available", "activation", D("50.00"))]


def test_a_line_activated_at_the_cycle_start_is_charged_once_in_advance(db):
    partner = make_partner("On Time")
    lines_at(partner, "2026-06-01T00:00:00+00:00", 1)
    june = issue_invoice(partner, 2026, 6)
    assert sections(june) == {"Available": (1, D("50.00"), D(0), D("50.00"))}
    july = issue_invoice(partner, 2026, 7)
    assert items(july) == []


def _disconnect_history(partner: Partner) -> tuple[Line, Line]:
    a = make_sub_account(partner, "A")
    b = make_sub_account(partner, "B")
    held, moved = lines_at(partner, "2026-04-03T10:00:00+00:00", 2)
    move(held, a, "2026-04-03T10:01:00+00:00")
    move(moved, a, "2026-04-03T10:01:00+00:00")
    issue_invoice(partner, 2026, 6)
    move(moved, b, "2026-06-11T09:00:00+00:00")
    with frozen_at(at("2026-06-21T09:00:00+00:00")):
        line_disconnect(principal=SYSTEM, line_id=held.pk)
        line_disconnect(principal=SYSTEM, line_id=moved.pk)
    return held, moved


def test_a_disconnected_line_is_not_refunded_by_default(db):
    partner = make_partner("Telecom Norm")
    _disconnect_history(partner)

    july = issue_invoice(partner, 2026, 7)

    # Only the move: B was charged the days from June 11, the line then ended.
    assert items(july) == [("A", "move_credit", D("-33.33")), ("B", "move_charge", D("33.33"))]
    assert sections(july)["A"] == (0, D(0), D("-33.33"), D("-33.33"))


def test_credit_disconnects_credits_the_unused_days_to_the_section_charged(db):
    partner = make_partner("Generous")
    set_partner(partner, credit_disconnects=True)
    held, moved = _disconnect_history(partner)

    july = issue_invoice(partner, 2026, 7)

    assert items(july) == [
        ("A", "disconnect_credit", D("-16.67")),  # 10 of 30 days, June 21–30
        ("A", "move_credit", D("-33.33")),
        ("B", "move_charge", D("33.33")),
        ("B", "disconnect_credit", D("-16.67")),  # never more than the 33.33 charged
    ]
    assert sections(july)["A"] == (0, D(0), D("-50.00"), D("-50.00"))
    assert sections(july)["B"] == (0, D(0), D("16.66"), D("16.66"))
    july.refresh_from_db()
    assert july.total == D("-33.34")
    credit = InvoiceItem.objects.get(section__invoice=july, line=held)
    shown = display_number(held.number)
    assert credit.description == f"{shown} disconnected on 2026-06-21: 10 of 30 days unused"
    assert InvoiceItem.objects.filter(line=moved, kind="disconnect_credit").count() == 1


def test_yen_amounts_have_no_minor_unit(db):
    partner = make_partner("Tokyo Lines", currency="JPY", line_price="5000", timezone="Asia/Tokyo")
    a = make_sub_account(partner, "A")
    b = make_sub_account(partner, "B")
    line, other = lines_at(partner, "2026-06-03T03:00:00+00:00", 2)
    move(line, a, "2026-06-03T03:01:00+00:00")
    move(other, a, "2026-06-03T03:01:00+00:00")
    issue_invoice(partner, 2026, 7)
    move(line, b, "2026-07-11T03:00:00+00:00")  # noon on July 11 in Tokyo: 21 of 31 days

    august = issue_invoice(partner, 2026, 8)

    assert sections(august) == {
        "A": (1, D("5000"), D("-3387"), D("1613")),
        "B": (1, D("5000"), D("3387"), D("8387")),
    }
    assert august.currency == "JPY"
    assert all(i.amount == i.amount.to_integral_value() for i in InvoiceItem.objects.all())


def test_prorations_use_the_price_charged_for_the_cycle_they_correct(db):
    partner = make_partner("Price Change")
    a = make_sub_account(partner, "A")
    b = make_sub_account(partner, "B")
    (line,) = lines_at(partner, "2026-04-03T10:00:00+00:00", 1)
    move(line, a, "2026-04-03T10:01:00+00:00")
    june = issue_invoice(partner, 2026, 6)
    set_partner(partner, line_price=D("60.00"))  # a change applies from the next cycle
    move(line, b, "2026-06-16T12:00:00+00:00")

    july = issue_invoice(partner, 2026, 7)

    june.refresh_from_db()
    assert june.unit_price == D("50.00") and june.total == D("50.00")
    assert july.unit_price == D("60.00")
    assert sections(july) == {
        "A": (0, D(0), D("-25.00"), D("-25.00")),
        "B": (1, D("60.00"), D("25.00"), D("85.00")),
    }
    assert set(
        InvoiceItem.objects.filter(section__invoice=july)
        .exclude(kind="recurring")
        .values_list("unit_price", flat=True)
    ) == {D("50.00")}


# --- Sections -------------------------------------------------------------------------


def test_sections_snapshot_names_available_first(db):
    partner = make_partner("Names")
    zeta = make_sub_account(partner, "Zeta – Sales")
    alpha = make_sub_account(partner, "alpha – Support")
    merged = make_sub_account(partner, "Old Client")
    lines = lines_at(partner, "2026-04-03T10:00:00+00:00", 4)
    for line, sa in zip(lines, (zeta, alpha, merged), strict=False):
        move(line, sa, "2026-04-03T10:01:00+00:00")
    force_state(merged, status="merged", merged_into=zeta)

    june = issue_invoice(partner, 2026, 6)
    sub_account_update(principal=SYSTEM.acting_for(partner.pk), sub_account=zeta, name="Renamed")

    assert list(sections(june)) == [
        "Available",
        "alpha – Support",
        "Old Client (merged into Zeta – Sales)",
        "Zeta – Sales",
    ]
    pool = InvoiceSection.objects.get(invoice=june, name="Available")
    assert pool.sub_account_id == available_pool(partner.pk).pk
    assert pool.kind == "available"


def test_a_partner_without_lines_gets_an_empty_invoice_when_asked_for_one(db):
    # Billing runs skip such a cycle (test_catch_up.py); issuing it by name does not.
    partner = make_partner("Quiet")
    june = issue_invoice(partner, 2026, 6)
    assert june.total == 0
    assert sections(june) == {}


# --- Issuing: numbering, idempotence, refusals ----------------------------------------------


def test_numbers_run_per_partner(db):
    first, second = make_partner("First"), make_partner("Second")
    numbers = [issue_invoice(first, 2026, m).number for m in (4, 5, 6)]
    numbers.append(issue_invoice(second, 2026, 6).number)
    assert numbers == [1, 2, 3, 1]


def test_issuing_twice_returns_the_same_invoice_and_records_one_event(db):
    partner = make_partner("Twice")
    lines_at(partner, "2026-04-03T10:00:00+00:00", 3)
    first = issue_invoice(partner, 2026, 6)
    again = issue_invoice(partner, 2026, 6)
    assert again.pk == first.pk
    assert Invoice.objects.filter(partner=partner).count() == 1
    events = AuditEvent.objects.filter(action="invoice.issue", partner_id=partner.pk)
    assert events.count() == 1
    event = events.get()
    assert event.object_id == str(first.pk)
    assert event.data["number"] == 1
    assert event.data["total"] == "150.00"


def test_a_lost_race_returns_the_invoice_stored_first(db):
    partner = make_partner("Race")
    stored = issue_invoice(partner, 2026, 6)
    real = invoicing.invoice_for_cycle
    # Both looks before the INSERT miss the invoice, as when another run commits it
    # in between: the unique key refuses the second one.
    answers = [None, None]
    with mock.patch.object(
        invoicing,
        "invoice_for_cycle",
        side_effect=lambda p, c: answers.pop() if answers else real(p, c),
    ):
        cycle = Cycle(2026, 6, "UTC")
        with frozen_at(cycle.start):
            result = invoice_issue(principal=SYSTEM, partner=partner, cycle=cycle)
    assert result.pk == stored.pk
    assert Invoice.objects.filter(partner=partner).count() == 1


def test_the_unique_key_refuses_a_second_invoice_for_a_period(db):
    partner = make_partner("Unique")
    june = issue_invoice(partner, 2026, 6)
    with pytest.raises(IntegrityError):
        Invoice.objects.create(
            partner=partner,
            number=2,
            period_month=june.period_month,
            period_start=june.period_start,
            period_end=june.period_end,
            timezone="UTC",
            currency="USD",
            unit_price=D(50),
            issued_at=june.issued_at,
            total=D(0),
        )


def test_an_invoice_is_not_issued_before_its_cycle_starts(db):
    partner = make_partner("Early")
    with frozen_at(at("2026-06-30T23:59:00+00:00")), pytest.raises(Conflict):
        invoice_issue(principal=SYSTEM, partner=partner, cycle=Cycle(2026, 7, "UTC"))
    with frozen_at(at("2026-07-01T00:00:00+00:00")), pytest.raises(Invalid):
        invoice_issue(principal=SYSTEM, partner=partner, cycle=Cycle(2026, 7, "Europe/Paris"))
    assert not Invoice.objects.exists()


def test_only_the_provider_issues_and_finalizes(db, tenant):
    admin = tenant.principal("admin")
    cycle = Cycle(2026, 6, "UTC")
    with frozen_at(cycle.start):
        with pytest.raises(Forbidden):
            invoice_issue(principal=admin, partner=tenant.partner, cycle=cycle)
        with pytest.raises(Forbidden):
            invoices_issue_due(principal=admin)
        invoice = invoice_issue(principal=SYSTEM, partner=tenant.partner, cycle=cycle)
        with pytest.raises(Forbidden):
            invoice_finalize(principal=admin, invoice=invoice)


# --- Finalising -------------------------------------------------------------------------


def test_finalize_once_then_the_invoice_never_changes(db):
    partner = make_partner("Final")
    a = make_sub_account(partner, "A")
    (line,) = lines_at(partner, "2026-04-03T10:00:00+00:00", 1)
    june = issue_invoice(partner, 2026, 6)
    with frozen_at(at("2026-06-02T00:00:00+00:00")):
        done = invoice_finalize(principal=SYSTEM, invoice=june)
        assert done.status == InvoiceStatus.FINALIZED
        assert done.finalized_at == at("2026-06-02T00:00:00+00:00")
        with pytest.raises(Conflict):
            invoice_finalize(principal=SYSTEM, invoice=june)
    before = (sections(june), items(june, "recurring"))
    move(line, a, "2026-06-05T00:00:00+00:00")  # history moves on; June's invoice does not

    again = issue_invoice(partner, 2026, 6)
    with frozen_at(at("2026-06-20T00:00:00+00:00")):
        assert invoices_issue_due(principal=SYSTEM) == []

    assert again.pk == june.pk and again.status == InvoiceStatus.FINALIZED
    assert (sections(june), items(june, "recurring")) == before
    assert AuditEvent.objects.filter(action="invoice.finalize").count() == 1


def test_drafts_are_finalized_after_three_days(db):
    first, second = make_partner("Grace One"), make_partner("Grace Two")
    june = issue_invoice(first, 2026, 6)
    with frozen_at(at("2026-06-02T12:00:00+00:00")):
        late = invoice_issue(principal=SYSTEM, partner=second, cycle=Cycle(2026, 6, "UTC"))

    assert invoices_finalize_due(principal=SYSTEM, now=at("2026-06-03T23:59:00+00:00")) == 0
    assert invoices_finalize_due(principal=SYSTEM, now=at("2026-06-04T00:00:00+00:00")) == 1
    june.refresh_from_db()
    late.refresh_from_db()
    assert june.status == InvoiceStatus.FINALIZED
    assert late.status == InvoiceStatus.DRAFT
    assert invoices_finalize_due(principal=SYSTEM, now=at("2026-06-06T00:00:00+00:00")) == 1
    assert invoices_finalize_due(principal=SYSTEM, now=at("2026-06-30T00:00:00+00:00")) == 0
    events = AuditEvent.objects.filter(action="invoice.finalize").order_by("pk")
    assert [e.partner_id for e in events] == [first.pk, second.pk]


# --- Issuing what is due: the job and the command ---------------------------------------


def test_issue_due_invoices_each_partner_in_its_own_timezone(db):
    utc = make_partner("Due UTC")
    tokyo = make_partner("Due Tokyo", timezone="Asia/Tokyo")
    los_angeles = make_partner("Due LA", timezone="America/Los_Angeles")
    for partner in (utc, tokyo, los_angeles):
        lines_at(partner, "2026-05-20T00:00:00+00:00", 1)
    now = at("2026-07-01T02:00:00+00:00")  # July in UTC and Tokyo; still June in LA
    with frozen_at(now):
        issued = invoices_issue_due(principal=SYSTEM)
        assert invoices_issue_due(principal=SYSTEM) == []
    months: dict[int, list[dt.date]] = {}
    for invoice in issued:
        months.setdefault(invoice.partner_id, []).append(invoice.period_month)
    # May held nothing at its start (no invoice); June carries May's activation.
    assert months == {
        utc.pk: [dt.date(2026, 6, 1), dt.date(2026, 7, 1)],
        tokyo.pk: [dt.date(2026, 6, 1), dt.date(2026, 7, 1)],
        los_angeles.pk: [dt.date(2026, 6, 1)],
    }


def run_billing() -> list[str]:
    out = StringIO()
    call_command("runbilling", stdout=out)
    return out.getvalue().splitlines()


def test_runbilling_issues_what_is_due_and_nothing_more_when_rerun(db):
    partner = make_partner("Command Line")
    other = make_partner("Yen Partner", currency="JPY", line_price="5000")
    lines_at(partner, "2026-06-01T00:00:00+00:00", 3)
    lines_at(other, "2026-06-01T00:00:00+00:00", 1)
    with frozen_at(at("2026-06-01T00:10:00+00:00")):
        first = run_billing()
        second = run_billing()
    assert first == [
        f"{partner.slug}: invoice 1 for 2026-06 (UTC): 150.00 USD",
        f"{other.slug}: invoice 1 for 2026-06 (UTC): 5000 JPY",
        "Issued 2 invoices.",
    ]
    assert second == ["Issued 0 invoices."]
    with frozen_at(at("2026-07-01T00:10:00+00:00")):
        third = run_billing()
    assert third[-1] == "Issued 2 invoices."
    assert Invoice.objects.filter(partner=partner).count() == 2


def test_runbilling_has_help():
    command = load_command_class("portal.billing", "runbilling")
    text = command.create_parser("portal", "runbilling").format_help()
    assert text.startswith("usage: portal runbilling")
    assert "Idempotent" in command.help


def test_a_failing_partner_does_not_stop_the_others(db):
    good, bad = make_partner("Good"), make_partner("Bad")
    for partner in (good, bad):
        lines_at(partner, "2026-06-01T00:00:00+00:00", 1)
    real = invoicing._issue

    def flaky(*, partner, **kwargs):
        if partner.pk == bad.pk:
            raise RuntimeError("boom")
        return real(partner=partner, **kwargs)

    with (
        frozen_at(at("2026-06-01T00:10:00+00:00")),
        mock.patch.object(invoicing, "_issue", side_effect=flaky),
        pytest.raises(invoicing.BillingRunIncomplete) as info,
    ):
        invoices_issue_due(principal=SYSTEM)
    assert [i.partner_id for i in info.value.issued] == [good.pk]
    assert info.value.failed == [bad.slug]


def test_the_worker_runs_billing_periodically():
    jobs = {job.name: job for job in periodic.registered_jobs()}
    assert jobs["issue_due_invoices"].every == dt.timedelta(minutes=10)
    assert jobs["finalize_due_invoices"].every == dt.timedelta(hours=1)


def test_the_jobs_issue_and_finalize(db):
    partner = make_partner("Jobs")
    lines_at(partner, "2026-06-01T00:00:00+00:00", 1)
    jobs = {job.name: job for job in periodic.registered_jobs()}
    with frozen_at(at("2026-06-01T00:10:00+00:00")):
        jobs["issue_due_invoices"].func()
    invoice = Invoice.objects.get(partner=partner)
    with frozen_at(at("2026-06-05T00:00:00+00:00")):
        jobs["finalize_due_invoices"].func()
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.FINALIZED


# --- The SQL engine against the pure oracle (billing/proration.py) ------------------------

RANDOM_CASES = [
    # (timezone, year, month, currency, price, seed): DST changes inside March, October
    # and November; Tokyo is ahead of UTC, New York and Los Angeles behind it.
    ("UTC", 2026, 6, "USD", "50.00", 1),
    ("America/New_York", 2026, 3, "USD", "49.99", 2),
    ("Europe/Paris", 2026, 10, "EUR", "12.3456", 3),
    ("Asia/Tokyo", 2026, 2, "JPY", "5000", 4),
    ("America/Los_Angeles", 2026, 11, "USD", "0.07", 5),
    ("UTC", 2026, 12, "KWD", "17.125", 6),
]


def _random_history(rng: random.Random, partner: Partner, cycle: Cycle) -> None:
    """Activations, moves (some several in one day, some at midnight) and disconnects
    from before the cycle to after it, all through the services."""
    subs = [available_pool(partner.pk).pk] + [
        make_sub_account(partner, f"Random {i}").pk for i in range(3)
    ]
    ends = cycle.day_ends()
    span = int((cycle.end - cycle.start).total_seconds()) + 7 * 86400
    instants = [cycle.start, cycle.end, *rng.sample(ends, 6)]
    instants += [
        cycle.start - dt.timedelta(days=5) + dt.timedelta(seconds=rng.randrange(span))
        for _ in range(45)
    ]
    for _ in range(6):  # busy days: several changes within a few hours
        base = rng.choice(ends) - dt.timedelta(hours=rng.randint(1, 20))
        instants += [base + dt.timedelta(minutes=rng.randint(0, 180)) for _ in range(3)]
    active: dict[int, int] = {}  # line -> sub-account
    for instant in sorted(instants):
        with frozen_at(instant):
            roll = rng.random()
            if len(active) < 3 or roll < 0.15:
                for line in make_lines(partner, rng.randint(1, 2)):
                    active[line.pk] = line.sub_account_id
            elif roll < 0.9:
                line_id = rng.choice(sorted(active))
                target = rng.choice([s for s in subs if s != active[line_id]])
                line_move(principal=SYSTEM, line_id=line_id, sub_account_id=target)
                active[line_id] = target
            else:
                line_id = rng.choice(sorted(active))
                line_disconnect(principal=SYSTEM, line_id=line_id)
                del active[line_id]


def _mark_merges(rng: random.Random, partner: Partner) -> int:
    """Flag about a third of the moves as done by a merge (``via_merge``), as h5's merge
    processing will: merges never prorate, so the engine must bill them as no move."""
    marked = []
    for line in Line.objects.filter(partner=partner):
        periods = list(AssignmentPeriod.objects.filter(line=line).order_by("start", "pk"))
        for before, after in itertools.pairwise(periods):
            if before.end == after.start and rng.random() < 0.35:
                marked.append(after.pk)
    return AssignmentPeriod.objects.filter(pk__in=marked).update(via_merge=True)


@pytest.mark.parametrize(("tz", "year", "month", "currency", "price", "seed"), RANDOM_CASES)
def test_the_sql_engine_agrees_with_the_oracle(db, tz, year, month, currency, price, seed):
    rng = random.Random(seed)
    partner = make_partner(f"Random {seed}", timezone=tz, currency=currency, line_price=price)
    set_partner(partner, prorate_new_lines=bool(seed % 2), credit_disconnects=bool(seed // 2 % 2))
    cycle = Cycle(year, month, tz)
    _random_history(rng, partner, cycle)
    assert _mark_merges(rng, partner) > 5
    price_charged = D(price)

    changes = holder_changes(partner_id=partner.pk, cycle=cycle)
    names = {sa.pk: sa.name for sa in SubAccount.objects.filter(partner=partner)}
    engine = proration_items(
        partner=partner,
        cycle=cycle,
        price=price_charged,
        changes=changes,
        names=lambda pk, _day: names[pk],
    )
    expected = []
    held_at_next: dict[int, int] = {}
    for line in Line.objects.filter(partner=partner).order_by("pk"):
        segments = [
            proration.Segment(p.sub_account_id, p.start, p.end, p.via_merge)
            for p in AssignmentPeriod.objects.filter(line=line).order_by("start", "pk")
        ]
        expected += proration.prorate_line(
            line_id=line.pk,
            segments=segments,
            cycle=cycle,
            price=price_charged,
            currency=currency,
            prorate_new_lines=partner.prorate_new_lines,
            credit_disconnects=partner.credit_disconnects,
        )
        holder = proration.holder_at(segments, cycle.next().start)
        if holder is not None:
            held_at_next[holder] = held_at_next.get(holder, 0) + 1

    def key(kind, sub, other, line, day, days, amount):
        return (line, day, kind, sub, other, days, amount)

    got = sorted(
        key(i.kind, i.sub_account_id, i.other_sub_account_id, i.line_id, i.day, i.days, i.amount)
        for i in engine
    )
    want = sorted(
        key(i.kind, i.sub_account_id, i.other_sub_account_id, i.line_id, i.day, i.days, i.amount)
        for i in expected
    )
    assert len(want) > 10, "the random history should exercise prorations"
    assert got == want
    assert holders.lines_held_at(partner.pk, cycle.next().start) == held_at_next

    # The stored invoice holds exactly those items, and moves net to zero.
    invoice = issue_invoice(partner, cycle.next().year, cycle.next().month)
    stored = InvoiceItem.objects.filter(section__invoice=invoice)
    assert (
        sorted(
            key(
                i.kind,
                i.section.sub_account_id,
                i.other_sub_account_id,
                i.line_id,
                i.day,
                i.days,
                i.amount,
            )
            for i in stored.exclude(kind="recurring").select_related("section")
        )
        == want
    )
    moves = stored.filter(kind__in=["move_credit", "move_charge"])
    assert sum(i.amount for i in moves) == 0
    assert invoice.total == sum(s.total for s in InvoiceSection.objects.filter(invoice=invoice))


def test_a_draft_can_be_computed_without_storing_anything(db):
    partner = make_partner("Preview")
    lines_at(partner, "2026-06-10T12:00:00+00:00", 2)
    with frozen_at(at("2026-07-02T00:00:00+00:00")):
        draft = invoice_draft(partner=partner, cycle=Cycle(2026, 7, "UTC"))
    assert draft.total == D("170.00")  # 2 × 50.00 + 2 × 35.00
    assert not Invoice.objects.exists()
