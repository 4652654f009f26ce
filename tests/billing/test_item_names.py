"""Invoice items name the other sub-account as it was called on the day of the change.

domain §3: each proration item names "the line, the other sub-account, the date and the
days". A rename or a merge after that day changes what the sub-account is called now,
not what it was called then; the merged source's *section* keeps "(merged into …)".
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from portal.billing.models import Invoice, InvoiceItem
from portal.billing.summary import billing_summary
from portal.core.clock import frozen_at
from portal.core.phone import display_number
from portal.lines.services import line_move
from portal.partners.services import sub_account_update
from portal.workflows.services import merges
from tests.factories import SYSTEM, at, issue_invoice, make_lines, make_partner, make_sub_account

D = Decimal


def merge(sources, target, when: str) -> None:
    staff = SYSTEM.acting_for(target.partner_id)
    with frozen_at(at(when)):
        request = merges.merge_request_create(
            principal=staff, source_ids=[s.pk for s in sources], target_id=target.pk
        )
        merges.merge_request_approve(principal=staff, request_id=request.pk)
        merges.merge_request_run(principal=staff, request_id=request.pk)


def items(invoice: Invoice) -> dict[tuple[str, str], InvoiceItem]:
    """(section name, kind) -> the one item of that kind on that section."""
    found: dict[tuple[str, str], InvoiceItem] = {}
    for item in InvoiceItem.objects.filter(section__invoice=invoice).select_related("section"):
        if item.kind in ("move_credit", "move_charge"):
            key = (item.section.name, item.kind)
            assert key not in found
            found[key] = item
    return found


@pytest.fixture
def world(db):
    partner = make_partner("Names", timezone="UTC")
    home = make_sub_account(partner, "Home")
    src = make_sub_account(partner, "Src")
    tgt = make_sub_account(partner, "Tgt")
    with frozen_at(at("2026-05-10 09:00")):
        (line,) = make_lines(partner, 1)
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=home.pk)
    issue_invoice(partner, 2026, 6)
    issue_invoice(partner, 2026, 7)
    return partner, home, src, tgt, line


def test_a_move_made_before_a_merge_names_the_source_as_it_was(world):
    partner, _home, src, tgt, line = world
    with frozen_at(at("2026-07-05 10:00")):
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=src.pk)
    merge([src], tgt, "2026-07-20 12:00")
    august = issue_invoice(partner, 2026, 8)
    got = items(august)
    shown = display_number(line.number)
    credit = got[("Home", "move_credit")]
    assert credit.other_name == "Src"
    assert credit.description == f"{shown} moved to Src on 2026-07-05: 27 of 31 days"
    assert credit.amount == D("-43.55")
    # The source's own section is named as it is now, per domain §3.
    charge = got[("Src (merged into Tgt)", "move_charge")]
    assert charge.other_name == "Home"
    assert charge.description == f"{shown} moved from Home on 2026-07-05: 27 of 31 days"


def test_a_move_after_a_merge_names_the_source_merged(world):
    """Billed to the source until the cycle ends (merges never prorate): a move out of
    the target after the merge credits the source, which was already merged that day."""
    partner, home, src, tgt, line = world
    with frozen_at(at("2026-06-20 10:00")):
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=src.pk)
    merge([src], tgt, "2026-07-10 12:00")
    sub_account_update(principal=SYSTEM, sub_account=tgt, name="Tgt Renamed")
    with frozen_at(at("2026-07-25 10:00")):
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=home.pk)
    august = issue_invoice(partner, 2026, 8)
    got = items(august)
    charge = got[("Home", "move_charge")]
    # On July 25, Src had been merged into the target, then still called "Tgt".
    assert charge.other_name == "Src (merged into Tgt)"
    assert got[("Src (merged into Tgt Renamed)", "move_credit")].other_name == "Home"


def test_items_name_a_renamed_sub_account_by_its_name_on_the_day(world):
    partner, home, src, _tgt, line = world
    with frozen_at(at("2026-07-05 10:00")):
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=src.pk)
    with frozen_at(at("2026-07-12 10:00")):
        sub_account_update(principal=SYSTEM, sub_account=src, name="Src Two")
    with frozen_at(at("2026-07-15 10:00")):
        sub_account_update(principal=SYSTEM, sub_account=home, name="Home Two")
        sub_account_update(principal=SYSTEM, sub_account=src, contact_name="Not a rename")
    with frozen_at(at("2026-07-18 10:00")):
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=home.pk)
    with frozen_at(at("2026-07-28 10:00")):
        sub_account_update(principal=SYSTEM, sub_account=src, name="Src Three")

    # The billing summary accrues the same items (named through the same history).
    with frozen_at(at("2026-07-30 10:00")):
        summary = billing_summary(principal=SYSTEM.acting_for(partner.pk))
    assert sum((r.accruing_prorations for r in summary.rows), D(0)) == 0
    # Home: −43.55 (27 days from July 5) + 22.58 (14 days from July 18); Src the opposite.
    assert sorted(r.accruing_prorations for r in summary.rows if r.accruing_prorations) == [
        D("-20.97"),
        D("20.97"),
    ]

    august = issue_invoice(partner, 2026, 8)
    descriptions = sorted(
        (i.section.name, i.kind, i.other_name)
        for i in InvoiceItem.objects.filter(section__invoice=august)
        .exclude(kind="recurring")
        .select_related("section")
    )
    # Sections are named as the sub-accounts are called now; each item names the other
    # one as it was called on its day: Src on July 5, Src Two and Home Two on July 18.
    assert descriptions == [
        ("Home Two", "move_charge", "Src Two"),
        ("Home Two", "move_credit", "Src"),
        ("Src Three", "move_charge", "Home"),
        ("Src Three", "move_credit", "Home Two"),
    ]
