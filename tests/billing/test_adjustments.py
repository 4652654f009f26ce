"""Discounts, credits, prices and merges on invoices (domain §3), through the services.

Every scenario sets the clock, builds history through the services and checks the
invoice to the cent: section recurring / prorations / discounts / credits / total.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from unittest import mock

import pytest
from django.db import IntegrityError, transaction

from portal.audit.models import AuditEvent
from portal.billing import invoicing
from portal.billing.drafting import credit_balances, price_for_cycle
from portal.billing.models import (
    CreditEntry,
    CreditEntryKind,
    Discount,
    Invoice,
    InvoiceItem,
    InvoiceSection,
)
from portal.billing.periods import Cycle
from portal.billing.selectors import credit_ledger
from portal.billing.summary import billing_summary
from portal.billing.terms import (
    credit_grant,
    discount_grant,
    discount_remove,
    partner_billing_update,
)
from portal.core.clock import frozen_at
from portal.core.errors import Conflict, Forbidden, Invalid, NotFound
from portal.lines.models import AssignmentPeriod, Line
from portal.lines.services import line_move
from portal.partners.models import Partner, SubAccount, SubAccountStatus
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
STAFF = SYSTEM


def table(invoice: Invoice) -> dict[str, tuple[Decimal, Decimal, Decimal, Decimal, Decimal]]:
    """name -> (recurring, prorations, discounts, credits, total), checking the sums."""
    rows = {}
    for s in InvoiceSection.objects.filter(invoice=invoice).order_by("position"):
        amounts = InvoiceItem.objects.filter(section=s).values_list("amount", flat=True)
        assert s.total == sum(amounts, D(0)) == s.recurring + s.prorations + s.discounts + s.credits
        rows[s.name] = (s.recurring, s.prorations, s.discounts, s.credits, s.total)
    assert invoice.total == sum((r[4] for r in rows.values()), D(0))
    return rows


def move(line: Line, to: SubAccount, when: str) -> None:
    with frozen_at(at(when)):
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=to.pk)


def lines_in(partner: Partner, sub: SubAccount, count: int, when: str) -> list[Line]:
    with frozen_at(at(when)):
        lines = make_lines(partner, count)
        for line in lines:
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=sub.pk)
    return lines


def grant_discount(partner: Partner, when: str, **kwargs: object) -> Discount:
    with frozen_at(at(when)):
        return discount_grant(principal=STAFF.acting_for(partner.pk), **kwargs)


def grant_credit(partner: Partner, when: str, amount: str, **kwargs: object) -> CreditEntry:
    with frozen_at(at(when)):
        return credit_grant(
            principal=STAFF.acting_for(partner.pk), amount=amount, reason="Outage", **kwargs
        )


def balance(partner: Partner, sub: SubAccount | None = None) -> Decimal:
    return credit_balances(partner_id=partner.pk, keep_zero=True).get(sub.pk if sub else None, D(0))


@pytest.fixture
def worked(db):
    """domain §3's worked example: A holds 2 lines on June 1, one moves to B on June 16."""
    partner = make_partner("Worked")
    a = make_sub_account(partner, "A")
    b = make_sub_account(partner, "B")
    _first, second = lines_in(partner, a, 2, "2026-04-10T09:00:00+00:00")
    issue_invoice(partner, 2026, 5)
    issue_invoice(partner, 2026, 6)
    move(second, b, "2026-06-16T12:00:00+00:00")
    return partner, a, b


# --- Discounts ----------------------------------------------------------------------------


def test_a_partner_wide_percentage_discounts_recurring_charges_only(worked):
    partner, _a, _b = worked
    discount = grant_discount(
        partner, "2026-06-20T10:00:00+00:00", kind="percent", value="10", name="Launch", cycles=1
    )
    assert discount.first_month == dt.date(2026, 7, 1)  # June is already issued
    july = issue_invoice(partner, 2026, 7)
    assert table(july) == {
        "A": (D("50.00"), D("-25.00"), D("-5.00"), D(0), D("20.00")),
        "B": (D("50.00"), D("25.00"), D("-5.00"), D(0), D("70.00")),
    }
    item = InvoiceItem.objects.get(section__invoice=july, section__name="A", kind="discount")
    assert item.discount_id == discount.pk
    assert item.description.startswith("Discount “Launch”: 10% off recurring charges")
    august = issue_invoice(partner, 2026, 8)  # one cycle only
    assert not InvoiceItem.objects.filter(section__invoice=august, kind="discount").exists()


@pytest.mark.parametrize(
    ("recurring_lines", "amount", "parts"),
    [
        pytest.param([1, 1, 1], "10.00", ["-3.34", "-3.33", "-3.33"], id="equal thirds"),
        pytest.param([1, 2, 3], "10.00", ["-1.67", "-3.33", "-5.00"], id="weighted"),
        pytest.param([1, 1], "500.00", ["-50.00", "-50.00"], id="capped at recurring"),
        pytest.param([2, 1], "0.01", ["-0.01", "0.00"], id="one cent"),
    ],
)
def test_a_fixed_partner_wide_discount_is_spread_by_largest_remainder(
    db, recurring_lines, amount, parts
):
    partner = make_partner("Spread")
    subs = [make_sub_account(partner, f"S{i}") for i in range(len(recurring_lines))]
    for sub, count in zip(subs, recurring_lines, strict=True):
        lines_in(partner, sub, count, "2026-04-10T09:00:00+00:00")
    issue_invoice(partner, 2026, 5)
    grant_discount(partner, "2026-05-20T00:00:00+00:00", kind="amount", value=amount)
    june = issue_invoice(partner, 2026, 6)
    got = table(june)
    assert [got[f"S{i}"][2] for i in range(len(subs))] == [D(p) for p in parts]
    total = sum((got[f"S{i}"][2] for i in range(len(subs))), D(0))
    assert -total == min(D(amount), D(50) * sum(recurring_lines))


def test_sub_account_discounts_come_first_then_partner_wide_on_what_is_left(db):
    partner = make_partner("Stacked")
    a = make_sub_account(partner, "A")
    b = make_sub_account(partner, "B")
    lines_in(partner, a, 2, "2026-04-10T09:00:00+00:00")
    lines_in(partner, b, 2, "2026-04-10T09:00:00+00:00")
    issue_invoice(partner, 2026, 5)
    when = "2026-05-20T00:00:00+00:00"
    grant_discount(partner, when, kind="percent", value="10")  # partner-wide, granted first
    grant_discount(partner, when, kind="amount", value="150.00", sub_account_id=a.pk)
    june = issue_invoice(partner, 2026, 6)
    # A: 100 − min(150, 100) = 0 left; B: 10 % of what is left overall (100) = 10 → B.
    assert table(june) == {
        "A": (D("100.00"), D(0), D("-100.00"), D(0), D("0.00")),
        "B": (D("100.00"), D(0), D("-10.00"), D(0), D("90.00")),
    }


def test_a_partner_wide_discount_is_spread_by_recurring_before_sub_account_discounts(db):
    """Issue 15's figures: price 33.33; X holds 1 line, Y 2 (12.5 % off), Z 4; 10.00
    off the whole invoice is shared 33.33 : 66.66 : 133.32, not by what Y's own
    discount left (58.33), and each item says so."""
    partner = make_partner("Basis", line_price="33.33")
    x, y, z = (make_sub_account(partner, name) for name in ("X", "Y", "Z"))
    for sub, count in ((x, 1), (y, 2), (z, 4)):
        lines_in(partner, sub, count, "2026-04-10T09:00:00+00:00")
    issue_invoice(partner, 2026, 5)
    when = "2026-05-20T00:00:00+00:00"
    grant_discount(partner, when, kind="amount", value="10.00", name="Loyalty")
    grant_discount(partner, when, kind="percent", value="12.5", sub_account_id=y.pk)
    june = issue_invoice(partner, 2026, 6)
    got = table(june)
    assert got["X"] == (D("33.33"), D(0), D("-1.43"), D(0), D("31.90"))
    assert got["Y"] == (D("66.66"), D(0), D("-11.19"), D(0), D("55.47"))  # 8.33 + 2.86
    assert got["Z"] == (D("133.32"), D(0), D("-5.71"), D(0), D("127.61"))
    shares = dict(
        InvoiceItem.objects.filter(section__invoice=june, discount__name="Loyalty").values_list(
            "section__name", "amount"
        )
    )
    assert shares == {"X": D("-1.43"), "Y": D("-2.86"), "Z": D("-5.71")}
    y_share = InvoiceItem.objects.get(
        section__invoice=june, section__name="Y", discount__name="Loyalty"
    )
    assert y_share.description == (
        "Discount “Loyalty”: 10.00 USD off recurring charges, whole invoice, spread in "
        "proportion to recurring charges before sub-account discounts: this section's "
        "66.66 of 233.31 USD"
    )


def test_a_discount_never_touches_prorations(worked):
    partner, _a, _b = worked
    grant_discount(partner, "2026-06-20T00:00:00+00:00", kind="percent", value="100")
    july = issue_invoice(partner, 2026, 7)
    assert table(july) == {
        "A": (D("50.00"), D("-25.00"), D("-50.00"), D(0), D("-25.00")),
        "B": (D("50.00"), D("25.00"), D("-50.00"), D(0), D("25.00")),
    }


def test_discount_for_n_cycles_and_until_removed(db):
    partner = make_partner("Cycles")
    a = make_sub_account(partner, "A")
    lines_in(partner, a, 1, "2026-04-10T09:00:00+00:00")
    issue_invoice(partner, 2026, 5)
    two = grant_discount(
        partner, "2026-05-20T00:00:00+00:00", kind="amount", value="5", cycles=2, name="Two"
    )
    ever = grant_discount(
        partner, "2026-05-20T00:00:00+00:00", kind="amount", value="1", sub_account_id=a.pk
    )
    assert (two.first_month, two.last_month) == (dt.date(2026, 6, 1), dt.date(2026, 7, 1))
    assert ever.last_month is None and ever.name == "1.00 USD discount"
    discounts = {}
    for month in (6, 7, 8):
        discounts[month] = table(issue_invoice(partner, 2026, month))["A"][2]
        if month == 7:
            with frozen_at(at("2026-07-15T00:00:00+00:00")):
                removed = discount_remove(principal=STAFF, discount_id=ever.pk)
            assert removed.removed_at is not None
    assert discounts == {6: D("-6.00"), 7: D("-6.00"), 8: D(0)}
    with pytest.raises(Conflict):
        discount_remove(principal=STAFF, discount_id=ever.pk)
    assert AuditEvent.objects.filter(action="discount.remove", object_id=str(ever.pk)).count() == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "percent", "value": "0"}, "value"),
        ({"kind": "percent", "value": "100.01"}, "value"),
        ({"kind": "percent", "value": "12.345"}, "value"),
        ({"kind": "amount", "value": "-1"}, "value"),
        ({"kind": "amount", "value": "1.001"}, "value"),
        ({"kind": "amount", "value": "NaN"}, "value"),
        ({"kind": "amount", "value": "ten"}, "value"),
        ({"kind": "bogus", "value": "1"}, "kind"),
        ({"kind": "amount", "value": "1", "cycles": 0}, "cycles"),
        ({"kind": "amount", "value": "1", "first_month": dt.date(2026, 5, 1)}, "first_month"),
        ({"kind": "amount", "value": "1", "first_month": dt.date(2026, 7, 2)}, "first_month"),
        ({"kind": "amount", "value": "1", "name": "x" * 121}, "name"),
    ],
)
def test_bad_discounts_are_refused_and_change_nothing(db, kwargs, field):
    partner = make_partner("Bad")
    issue_invoice(partner, 2026, 6)
    with pytest.raises(Invalid) as refused:
        grant_discount(partner, "2026-06-10T00:00:00+00:00", **kwargs)
    assert refused.value.field == field
    assert not Discount.objects.exists()


def test_only_staff_grant_and_another_partners_sub_account_is_missing(db, tenant):
    partner = tenant.partner
    other = make_sub_account(make_partner("Other"), "Theirs")
    with pytest.raises(Forbidden):
        discount_grant(principal=tenant.principal("admin"), kind="amount", value=1)
    with pytest.raises(Forbidden):
        credit_grant(principal=tenant.principal("admin"), amount=1, reason="x")
    staff = STAFF.acting_for(partner.pk)
    with pytest.raises(NotFound):
        discount_grant(principal=staff, kind="amount", value=1, sub_account_id=other.pk)
    with pytest.raises(NotFound):
        credit_grant(principal=staff, amount=1, reason="x", sub_account_id=other.pk)
    assert not Discount.objects.exists() and not CreditEntry.objects.exists()


# --- Credits ------------------------------------------------------------------------------


def test_a_partner_credit_is_applied_after_discounts_and_the_rest_carries(worked):
    partner, _a, _b = worked
    grant_discount(partner, "2026-06-20T00:00:00+00:00", kind="percent", value="10", cycles=1)
    entry = grant_credit(partner, "2026-06-21T00:00:00+00:00", "100.00")
    july = issue_invoice(partner, 2026, 7)
    # Totals after discounts: A 20, B 70 (invoice 90): the credit covers both exactly.
    assert table(july) == {
        "A": (D("50.00"), D("-25.00"), D("-5.00"), D("-20.00"), D("0.00")),
        "B": (D("50.00"), D("25.00"), D("-5.00"), D("-70.00"), D("0.00")),
    }
    assert balance(partner) == D("10.00")
    august = issue_invoice(partner, 2026, 8)
    assert table(august) == {
        "A": (D("50.00"), D(0), D(0), D("-5.00"), D("45.00")),
        "B": (D("50.00"), D(0), D(0), D("-5.00"), D("45.00")),
    }
    assert balance(partner) == D(0)
    ledger = list(
        credit_ledger(principal=STAFF.acting_for(partner.pk)).values_list(
            "kind", "amount", "balance", "invoice_id"
        )
    )
    assert ledger == [
        (CreditEntryKind.APPLY, D("-10.00"), D("0.00"), august.pk),
        (CreditEntryKind.APPLY, D("-90.00"), D("10.00"), july.pk),
        (CreditEntryKind.GRANT, D("100.00"), D("100.00"), None),
    ]
    items = InvoiceItem.objects.filter(kind="credit", section__invoice=july)
    assert {i.credit_entry.invoice_id for i in items} == {july.pk}
    assert entry.reason == "Outage"


def test_a_sub_account_credit_stays_with_it_and_never_goes_negative(worked):
    partner, a, _b = worked
    grant_credit(partner, "2026-06-21T00:00:00+00:00", "40.00", sub_account_id=a.pk)
    july = issue_invoice(partner, 2026, 7)
    assert table(july)["A"] == (D("50.00"), D("-25.00"), D(0), D("-25.00"), D("0.00"))
    assert table(july)["B"][3] == D(0)
    assert balance(partner, a) == D("15.00")
    august = issue_invoice(partner, 2026, 8)
    assert table(august)["A"] == (D("50.00"), D(0), D(0), D("-15.00"), D("35.00"))
    assert balance(partner, a) == D(0)


def test_no_credit_makes_the_invoice_total_negative(db):
    """B holds nothing at July 1 but is credited a move: the invoice nets to 0 + 50 − 50."""
    partner = make_partner("Negative")
    a = make_sub_account(partner, "A")
    b = make_sub_account(partner, "B")
    (line,) = lines_in(partner, b, 1, "2026-04-10T09:00:00+00:00")
    issue_invoice(partner, 2026, 5)
    issue_invoice(partner, 2026, 6)
    move(line, a, "2026-06-01T10:00:00+00:00")  # day 1: the whole month moves to A
    grant_credit(partner, "2026-06-02T00:00:00+00:00", "30.00", sub_account_id=a.pk)
    grant_credit(partner, "2026-06-02T00:00:00+00:00", "30.00")
    july = issue_invoice(partner, 2026, 7)
    rows = table(july)
    assert rows["B"] == (D(0), D("-50.00"), D(0), D(0), D("-50.00"))
    # A: 50 + 50 = 100, but the invoice is only 50: A's own 30, then 20 of the
    # partner's 30, and the invoice stops at zero; 10 carries.
    assert rows["A"][3] == D("-50.00") and july.total == D("0.00")
    assert balance(partner, a) == D(0) and balance(partner) == D("10.00")


def test_rerunning_billing_never_applies_a_credit_twice(worked):
    partner, _a, _b = worked
    grant_credit(partner, "2026-06-21T00:00:00+00:00", "30.00")
    first = issue_invoice(partner, 2026, 7)
    again = issue_invoice(partner, 2026, 7)
    assert first.pk == again.pk
    assert CreditEntry.objects.filter(kind=CreditEntryKind.APPLY).count() == 1
    assert balance(partner) == D(0)
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditEntry.objects.create(
            partner=partner,
            kind=CreditEntryKind.APPLY,
            amount=D("-1"),
            invoice=first,
            created_at=first.issued_at,
            created_by="x",
        )


def test_a_grant_never_changes_an_invoice_already_issued(worked):
    partner, _a, _b = worked
    july = issue_invoice(partner, 2026, 7)
    before = table(july)
    grant_credit(partner, "2026-07-02T00:00:00+00:00", "10.00")
    grant_discount(partner, "2026-07-02T00:00:00+00:00", kind="percent", value="50")
    july.refresh_from_db()
    assert table(july) == before
    august = issue_invoice(partner, 2026, 8)
    assert table(august)["A"][2:4] == (D("-25.00"), D("-5.00"))


def test_the_summary_shows_discounts_and_credits_of_the_current_invoice(worked):
    partner, _a, b = worked
    grant_discount(partner, "2026-06-20T00:00:00+00:00", kind="amount", value="10")
    grant_credit(partner, "2026-06-21T00:00:00+00:00", "6.00", sub_account_id=b.pk)
    staff = STAFF.acting_for(partner.pk)
    with frozen_at(at("2026-07-01T00:00:00+00:00")):
        preview = billing_summary(principal=staff)  # not issued yet: computed
    issue_invoice(partner, 2026, 7)
    with frozen_at(at("2026-07-05T00:00:00+00:00")):
        summary = billing_summary(principal=staff)
    for s in (preview, summary):
        rows = {r.name: (r.discounts, r.credits, r.total) for r in s.rows}
        assert rows == {
            "A": (D("-5.00"), D(0), D("20.00")),
            "B": (D("-5.00"), D("-6.00"), D("64.00")),
        }


# --- Price and policies -------------------------------------------------------------------


def test_a_price_change_applies_from_the_next_cycle(worked):
    partner, _a, _b = worked
    with frozen_at(at("2026-06-20T00:00:00+00:00")):
        partner_billing_update(principal=STAFF.acting_for(partner.pk), line_price="60.00")
        partner_billing_update(principal=STAFF.acting_for(partner.pk), line_price="70.00")
    partner.refresh_from_db()
    assert price_for_cycle(partner, Cycle(2026, 6, "UTC")) == D("50.00")
    assert price_for_cycle(partner, Cycle(2026, 7, "UTC")) == D("70.00")
    july = issue_invoice(partner, 2026, 7)
    # Recurring at the new price; June's prorations at June's price.
    assert table(july) == {
        "A": (D("70.00"), D("-25.00"), D(0), D(0), D("45.00")),
        "B": (D("70.00"), D("25.00"), D(0), D(0), D("95.00")),
    }
    assert AuditEvent.objects.filter(action="partner.billing_update").count() == 2


def test_a_price_changed_before_the_cycle_is_invoiced_still_waits_for_the_next(db):
    partner = make_partner("Late billing")
    a = make_sub_account(partner, "A")
    (line,) = lines_in(partner, a, 1, "2026-04-10T09:00:00+00:00")
    issue_invoice(partner, 2026, 5)
    with frozen_at(at("2026-06-01T00:00:01+00:00")):  # June's invoice is not out yet
        partner_billing_update(principal=STAFF.acting_for(partner.pk), line_price="80")
    assert table(issue_invoice(partner, 2026, 6))["A"][0] == D("50.00")
    move(line, make_sub_account(partner, "B"), "2026-06-16T00:00:00+00:00")
    july = issue_invoice(partner, 2026, 7)
    assert table(july)["A"] == (D(0), D("-25.00"), D(0), D(0), D("-25.00"))
    assert table(july)["B"][0] == D("80.00")


def test_policies_are_updated_and_audited(tenant):
    partner = tenant.partner
    updated = partner_billing_update(
        principal=STAFF.acting_for(partner.pk), prorate_new_lines=False, credit_disconnects=True
    )
    assert (updated.prorate_new_lines, updated.credit_disconnects) == (False, True)
    event = AuditEvent.objects.get(action="partner.billing_update")
    assert event.data["after"] == {"prorate_new_lines": False, "credit_disconnects": True}
    for bad in ("-1", "abc", "1.00001", "1e9"):
        with pytest.raises(Invalid):
            partner_billing_update(principal=STAFF.acting_for(partner.pk), line_price=bad)
    with pytest.raises(Forbidden):
        partner_billing_update(principal=tenant.principal("admin"), line_price=1)
    assert AuditEvent.objects.filter(action="partner.billing_update").count() == 1


# --- Merges never prorate -----------------------------------------------------------------


def merge_move(line: Line, to: SubAccount, when: str) -> None:
    """What h5's merge does to one line's history: a move whose new period is via_merge."""
    move(line, to, when)
    AssignmentPeriod.objects.filter(line=line, end__isnull=True).update(via_merge=True)


def test_a_merge_never_prorates_and_the_target_pays_from_the_next_cycle(db):
    partner = make_partner("Merge")
    source = make_sub_account(partner, "Source")
    target = make_sub_account(partner, "Target")
    other = make_sub_account(partner, "Other")
    lines = lines_in(partner, source, 3, "2026-04-10T09:00:00+00:00")
    issue_invoice(partner, 2026, 5)
    issue_invoice(partner, 2026, 6)
    for line in lines:
        merge_move(line, target, "2026-06-10T08:00:00+00:00")
    force_state(source, status=SubAccountStatus.MERGED, merged_into=target)
    move(lines[0], other, "2026-06-20T00:00:00+00:00")  # later move: credits the source
    july = issue_invoice(partner, 2026, 7)
    assert table(july) == {
        "Other": (D("50.00"), D("18.33"), D(0), D(0), D("68.33")),
        "Source (merged into Target)": (D(0), D("-18.33"), D(0), D(0), D("-18.33")),
        "Target": (D("100.00"), D(0), D(0), D(0), D("100.00")),
    }
    credit = InvoiceItem.objects.get(section__invoice=july, kind="move_credit")
    assert credit.other_name == "Other" and credit.day == 20


def test_a_merge_at_the_cycle_start_is_an_ordinary_holder(db):
    partner = make_partner("Merge at S")
    source = make_sub_account(partner, "Source")
    target = make_sub_account(partner, "Target")
    (line,) = lines_in(partner, source, 1, "2026-04-10T09:00:00+00:00")
    issue_invoice(partner, 2026, 5)
    merge_move(line, target, "2026-06-01T00:00:00+00:00")
    assert table(issue_invoice(partner, 2026, 6)) == {
        "Target": (D("50.00"), D(0), D(0), D(0), D("50.00")),
    }
    assert table(issue_invoice(partner, 2026, 7)) == {
        "Target": (D("50.00"), D(0), D(0), D(0), D("50.00")),
    }


def test_a_lost_issuing_race_rolls_its_credit_back(db):
    """Two runs both miss the invoice and compute it; the unique key refuses the second
    one's INSERT, and its ledger entries go with its transaction."""
    partner = make_partner("Race credit")
    a = make_sub_account(partner, "A")
    lines_in(partner, a, 1, "2026-04-10T09:00:00+00:00")
    issue_invoice(partner, 2026, 5)
    grant_credit(partner, "2026-05-20T00:00:00+00:00", "20.00")
    june = issue_invoice(partner, 2026, 6)
    grant_credit(partner, "2026-06-02T00:00:00+00:00", "7.00")
    real = invoicing.invoice_for_cycle
    answers = [None, None]
    with mock.patch.object(
        invoicing,
        "invoice_for_cycle",
        side_effect=lambda p, c: answers.pop() if answers else real(p, c),
    ):
        again = issue_invoice(partner, 2026, 6)
    assert again.pk == june.pk
    applied = CreditEntry.objects.filter(kind=CreditEntryKind.APPLY)
    assert list(applied.values_list("invoice_id", "amount")) == [(june.pk, D("-20.00"))]
    assert balance(partner) == D("7.00")
