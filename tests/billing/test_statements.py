"""Client statements (domain §8.1): resale prices priced through the invoice's own engine."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from portal.audit.models import AuditEvent
from portal.billing.models import InvoiceItem, ResalePriceChange, Statement, StatementItem
from portal.billing.resale import (
    resale_default_set,
    resale_prices_in_force,
    resale_settings,
    sub_account_resale_price_set,
)
from portal.core.clock import frozen_at
from portal.core.errors import Conflict, Invalid, NotFound
from portal.core.phone import display_number
from portal.partners.selectors import available_pool
from tests.billing.test_invoices import lines_at, move
from tests.factories import SYSTEM, make_partner, make_sub_account
from tests.factories import issue_invoice as issue

D = Decimal


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def set_resale(partner, when: str, *, default=None, **by_sub) -> None:
    staff = SYSTEM.acting_for(partner.pk)
    with frozen_at(at(when)):
        if default is not None:
            resale_default_set(principal=staff, price=default)
        for sub, price in by_sub.values():
            sub_account_resale_price_set(principal=staff, sub_account_id=sub.pk, price=price)


def statements(invoice) -> dict[str, tuple[int, Decimal, Decimal, Decimal]]:
    return {
        s.name: (s.line_quantity, s.recurring, s.prorations, s.total)
        for s in Statement.objects.filter(invoice=invoice).order_by("name")
    }


def test_the_worked_example(db):
    partner = make_partner("Worked Example")
    a = make_sub_account(partner, "A")
    b = make_sub_account(partner, "B")
    first, second = lines_at(partner, "2026-04-10T09:00:00+00:00", 2)
    move(first, a, "2026-04-10T09:05:00+00:00")
    move(second, a, "2026-04-10T09:05:00+00:00")
    set_resale(partner, "2026-05-10T00:00:00+00:00", a=(a, "80.00"), b=(b, "65.00"))
    issue(partner, 2026, 5)
    june = issue(partner, 2026, 6)
    assert statements(june) == {"A": (2, D("160.00"), D(0), D("160.00"))}

    move(second, b, "2026-06-16T12:00:00+00:00")
    july = issue(partner, 2026, 7)

    assert statements(july) == {
        "A": (1, D("80.00"), D("-40.00"), D("40.00")),
        "B": (1, D("65.00"), D("32.50"), D("97.50")),
    }
    shown = display_number(second.number)
    credit = StatementItem.objects.get(statement__invoice=july, kind="move_credit")
    charge = StatementItem.objects.get(statement__invoice=july, kind="move_charge")
    assert charge.description == f"{shown} moved in on 16 June 2026: 15 of 30 days × 65.00"
    assert credit.description == f"{shown} moved out on 16 June 2026: 15 of 30 days × 80.00"
    assert (credit.day, credit.days, credit.line_id) == (16, 15, second.pk)
    # Numbered per sub-account: A's second, B's first.
    numbers = dict(Statement.objects.filter(invoice=july).values_list("name", "number"))
    assert numbers == {"A": 2, "B": 1}
    # Margins of the worked example: cost is the invoice section's total.
    cost = dict(july.sections.values_list("name", "total"))
    assert cost["A"] == D("25.00") and cost["B"] == D("75.00")
    event = AuditEvent.objects.get(action="invoice.issue", object_id=str(july.pk))
    assert event.data["statements"] == 2


def test_every_statement_item_mirrors_one_invoice_item(db):
    partner = make_partner("Mirror")
    a = make_sub_account(partner, "A")
    b = make_sub_account(partner, "B")
    lines = lines_at(partner, "2026-05-02T09:00:00+00:00", 4)
    for line in lines:
        move(line, a, "2026-05-02T09:05:00+00:00")
    set_resale(partner, "2026-05-03T00:00:00+00:00", default="70.00", b=(b, "90.00"))
    issue(partner, 2026, 6)
    move(lines[0], b, "2026-06-10T10:00:00+00:00")
    move(lines[1], b, "2026-06-20T10:00:00+00:00")
    move(lines[1], a, "2026-06-20T11:00:00+00:00")  # same day back: nothing
    july = issue(partner, 2026, 7)
    invoice_items = {
        (i.line_id, i.days, i.kind, i.section.sub_account_id)
        for i in InvoiceItem.objects.filter(section__invoice=july).select_related("section")
        if i.kind not in ("discount", "credit")
    }
    mirrored = {
        (i.line_id, i.days, i.kind, i.statement.sub_account_id)
        for i in StatementItem.objects.filter(statement__invoice=july).select_related("statement")
    }
    assert mirrored == invoice_items
    assert statements(july)["A"][1] == D("210.00")  # 3 lines × the default 70.00


def test_a_price_changed_during_a_cycle_applies_from_the_next(db):
    partner = make_partner("Later")
    a = make_sub_account(partner, "A")
    (line,) = lines_at(partner, "2026-05-02T09:00:00+00:00", 1)
    move(line, a, "2026-05-02T09:05:00+00:00")
    set_resale(partner, "2026-06-05T00:00:00+00:00", default="70.00")
    june = issue(partner, 2026, 6)
    assert not Statement.objects.filter(invoice=june).exists()
    assert resale_prices_in_force(partner.pk, dt.date(2026, 6, 1)).default is None
    assert resale_prices_in_force(partner.pk, dt.date(2026, 7, 1)).default == D("70.00")
    july = issue(partner, 2026, 7)
    assert statements(july) == {"A": (1, D("70.00"), D(0), D("70.00"))}


def test_issuing_twice_gives_one_statement(db):
    partner = make_partner("Twice")
    a = make_sub_account(partner, "A")
    (line,) = lines_at(partner, "2026-05-02T09:00:00+00:00", 1)
    move(line, a, "2026-05-02T09:05:00+00:00")
    set_resale(partner, "2026-05-03T00:00:00+00:00", default="70.00")
    first = issue(partner, 2026, 6)
    again = issue(partner, 2026, 6)
    assert first.pk == again.pk
    assert Statement.objects.filter(sub_account=a).count() == 1


def test_yen_statements_have_no_minor_unit(db):
    partner = make_partner("Tokyo Lines", currency="JPY", line_price="5000", timezone="Asia/Tokyo")
    a = make_sub_account(partner, "A")
    b = make_sub_account(partner, "B")
    line, other = lines_at(partner, "2026-06-03T03:00:00+00:00", 2)
    move(line, a, "2026-06-03T03:01:00+00:00")
    move(other, a, "2026-06-03T03:01:00+00:00")
    set_resale(partner, "2026-06-04T00:00:00+00:00", a=(a, "8000"), b=(b, "6500"))
    issue(partner, 2026, 7)
    move(line, b, "2026-07-11T03:00:00+00:00")  # noon on July 11 in Tokyo: 21 of 31 days
    august = issue(partner, 2026, 8)
    # 8000 × 21/31 = 5419.35… → 5419; 6500 × 21/31 = 4403.22… → 4403
    assert statements(august) == {
        "A": (1, D("8000"), D("-5419"), D("2581")),
        "B": (1, D("6500"), D("4403"), D("10903")),
    }


def test_bad_resale_prices_change_nothing(db):
    partner = make_partner("Bad", currency="JPY")
    other = make_partner("Other")
    theirs = make_sub_account(other, "Theirs")
    mine = make_sub_account(partner, "Mine")
    staff = SYSTEM.acting_for(partner.pk)
    for bad in ("-1", "12.5", "abc", "1e400", True):
        with pytest.raises(Invalid):
            resale_default_set(principal=staff, price=bad)
    with pytest.raises(Invalid):
        sub_account_resale_price_set(
            principal=staff, sub_account_id=available_pool(partner).pk, price="10"
        )
    with pytest.raises(NotFound):
        sub_account_resale_price_set(principal=staff, sub_account_id=theirs.pk, price="10")
    mine.status = "merged"
    mine.save(update_fields=["status"])
    with pytest.raises(Conflict):
        sub_account_resale_price_set(principal=staff, sub_account_id=mine.pk, price="10")
    assert not ResalePriceChange.objects.exists()
    assert not AuditEvent.objects.filter(action="resale_price.set").exists()


def test_clearing_an_override_returns_to_the_default(db):
    partner = make_partner("Clear")
    a = make_sub_account(partner, "A")
    staff = SYSTEM.acting_for(partner.pk)
    resale_default_set(principal=staff, price="60.00")
    sub_account_resale_price_set(principal=staff, sub_account_id=a.pk, price="75.00")
    assert resale_settings(partner.pk).price_of(a.pk) == D("75.00")
    sub_account_resale_price_set(principal=staff, sub_account_id=a.pk, price=None)
    assert resale_settings(partner.pk).price_of(a.pk) == D("60.00")
    # Setting the same price again is no change: no row, no event.
    before = ResalePriceChange.objects.count()
    assert resale_default_set(principal=staff, price="60") is None
    assert ResalePriceChange.objects.count() == before
    assert AuditEvent.objects.filter(action="resale_price.set").count() == before
