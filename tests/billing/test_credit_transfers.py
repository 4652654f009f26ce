"""A sub-account's credit balance follows it (domain §3): at a merge it moves to the
target, at a deletion to the partner's balance — as ledger entries, audited in the
merge's or deletion's one event, and named on the next invoice's credit items."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from portal.accounts.services import staff_create
from portal.audit.models import AuditEvent
from portal.billing.drafting import credit_balances
from portal.billing.invoicing import invoices_issue_due
from portal.billing.models import CreditEntry, CreditEntryKind, Invoice, InvoiceItem
from portal.billing.terms import credit_grant
from portal.core.clock import frozen_at
from portal.lines.services import line_move
from portal.workflows.services import deletions, merges
from tests.factories import SYSTEM, at, issue_invoice, make_lines, make_partner, make_sub_account

D = Decimal


def balances(partner) -> dict[int | None, Decimal]:
    return credit_balances(partner_id=partner.pk, keep_zero=True)


def grant(partner, amount: str, sub=None, when: str = "2026-06-10 09:00") -> None:
    with frozen_at(at(when)):
        credit_grant(
            principal=SYSTEM.acting_for(partner.pk),
            amount=amount,
            reason="Goodwill",
            sub_account_id=sub.pk if sub else None,
        )


def credit_items(invoice: Invoice) -> dict[str, tuple[Decimal, str]]:
    return {
        i.section.name: (i.amount, i.description)
        for i in InvoiceItem.objects.filter(section__invoice=invoice, kind="credit").select_related(
            "section"
        )
    }


@pytest.fixture
def _plain_static_storage(settings) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def world(db, _plain_static_storage):
    partner = make_partner("Credit Follows", timezone="UTC")
    src = make_sub_account(partner, "Src")
    tgt = make_sub_account(partner, "Tgt")
    with frozen_at(at("2026-05-10 09:00")):
        lines = make_lines(partner, 2)
        line_move(principal=SYSTEM, line_id=lines[0].pk, sub_account_id=src.pk)
        line_move(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=tgt.pk)
    issue_invoice(partner, 2026, 6)
    issue_invoice(partner, 2026, 7)
    return partner, src, tgt


def test_a_merge_moves_the_sources_balance_to_the_target(world):
    partner, src, tgt = world
    grant(partner, "80.00", src)
    grant(partner, "5.00", tgt)
    staff = SYSTEM.acting_for(partner.pk)
    with frozen_at(at("2026-07-20 12:00")):
        request = merges.merge_request_create(
            principal=staff, source_ids=[src.pk], target_id=tgt.pk
        )
        merges.merge_request_approve(principal=staff, request_id=request.pk)
        before = AuditEvent.objects.count()
        merges.merge_request_run(principal=staff, request_id=request.pk)

    assert balances(partner) == {src.pk: D(0), tgt.pk: D("85.00")}
    out, into = CreditEntry.objects.filter(kind=CreditEntryKind.TRANSFER).order_by("pk")
    assert (out.sub_account_id, out.amount, out.counterpart_id) == (src.pk, D("-80"), tgt.pk)
    assert (into.sub_account_id, into.amount, into.counterpart_id) == (tgt.pk, D("80"), src.pk)
    happened = f"Src, merged into Tgt on 2026-07-20 (merge request {request.pk})"
    assert out.reason == f"Moved to the credit balance of Tgt: {happened}"
    assert into.reason == f"Balance of {happened}"
    # One state change, one event: the transfer is in the completion's event.
    new = list(AuditEvent.objects.order_by("pk")[before:])
    assert [e.action for e in new] == [
        "merge_request.start",
        "line.merge",
        "merge_request.complete",
    ]
    assert new[2].data["credit_moved"] == [
        {"sub_account_id": src.pk, "name": "Src", "amount": "80.00"}
    ]

    # August: Tgt holds both lines (100.00) and takes its whole balance, naming where 80 of
    # it came from; Src's section has no credit left to take (nor any charge).
    august = issue_invoice(partner, 2026, 8)
    amount, description = credit_items(august)["Tgt"]
    assert amount == D("-85.00")
    assert description == (
        "Credit from the credit balance of Tgt, which received 80.00 USD from the balance "
        f"of {happened}"
    )
    assert "Src (merged into Tgt)" not in credit_items(august)
    # Shown once: the next invoice drawing on Tgt's balance no longer repeats it.
    grant(partner, "1.00", tgt, when="2026-08-10 09:00")
    september = issue_invoice(partner, 2026, 9)
    assert credit_items(september)["Tgt"] == (D("-1.00"), "Credit from the credit balance of Tgt")


def test_a_deletion_moves_the_balance_to_the_partners_and_a_restore_leaves_it_there(world):
    partner, src, tgt = world
    grant(partner, "30.00", src)
    staff = SYSTEM.acting_for(partner.pk)
    with frozen_at(at("2026-07-20 12:00")):
        request = deletions.deletion_request_create(
            principal=staff, sub_account_id=src.pk, line_disposition="move", move_to_id=tgt.pk
        )
        before = AuditEvent.objects.count()
        deletions.deletion_request_approve(principal=staff, request_id=request.pk)
    assert balances(partner) == {src.pk: D(0), None: D("30.00")}
    out, into = CreditEntry.objects.filter(kind=CreditEntryKind.TRANSFER).order_by("pk")
    assert (out.sub_account_id, out.amount, out.counterpart_id) == (src.pk, D("-30"), None)
    assert (into.sub_account_id, into.amount, into.counterpart_id) == (None, D("30"), src.pk)
    happened = f"Src, deleted on 2026-07-20 (deletion request {request.pk})"
    assert out.reason == f"Moved to the partner's credit balance: {happened}"
    approve = AuditEvent.objects.get(action="deletion_request.approve")
    assert approve.data["credit_moved"] == [
        {"sub_account_id": src.pk, "name": "Src", "amount": "30.00"}
    ]
    # The line moved (one event) and the request was approved (one event): nothing else.
    assert AuditEvent.objects.count() == before + 2

    with frozen_at(at("2026-07-22 12:00")):
        deletions.deletion_request_restore(principal=staff, request_id=request.pk)
    assert balances(partner) == {src.pk: D(0), None: D("30.00")}

    # Staff see both entries in the ledger, each saying what moved it.
    client = Client()
    client.force_login(staff_create(principal=SYSTEM, email="ops@provider.example"))
    page = client.get(f"/staff/partners/{partner.slug}/billing/").content.decode()
    assert f"Moved to the partner&#x27;s credit balance: {happened}" in page
    assert f"Balance of {happened}" in page

    # August: Tgt holds both lines; the partner's balance pays 30.00 of it, saying whence.
    august = issue_invoice(partner, 2026, 8)
    amount, description = credit_items(august)["Tgt"]
    assert amount == D("-30.00")
    assert description == (
        "Credit from the partner's credit balance (shared by section totals), which "
        f"received 30.00 USD from the balance of {happened}"
    )


def test_nothing_moves_without_a_balance(world):
    partner, src, tgt = world
    grant(partner, "10.00")  # the partner's own: not the source's
    staff = SYSTEM.acting_for(partner.pk)
    with frozen_at(at("2026-07-20 12:00")):
        request = merges.merge_request_create(
            principal=staff, source_ids=[src.pk], target_id=tgt.pk
        )
        merges.merge_request_approve(principal=staff, request_id=request.pk)
        merges.merge_request_run(principal=staff, request_id=request.pk)
    assert not CreditEntry.objects.filter(kind=CreditEntryKind.TRANSFER).exists()
    assert "credit_moved" not in AuditEvent.objects.get(action="merge_request.complete").data
    august = issue_invoice(partner, 2026, 8)
    assert credit_items(august)["Tgt"] == (
        D("-10.00"),
        "Credit from the partner's credit balance (shared by section totals)",
    )


def test_a_spent_balance_moves_only_what_is_left(world):
    partner, src, tgt = world
    grant(partner, "70.00", src)
    issue_invoice(partner, 2026, 8)  # Src's 50.00 line takes 50.00 of it
    staff = SYSTEM.acting_for(partner.pk)
    with frozen_at(at("2026-08-20 12:00")):
        request = merges.merge_request_create(
            principal=staff, source_ids=[src.pk], target_id=tgt.pk
        )
        merges.merge_request_approve(principal=staff, request_id=request.pk)
        merges.merge_request_run(principal=staff, request_id=request.pk)
    assert balances(partner) == {src.pk: D(0), tgt.pk: D("20.00")}


def test_a_balance_moved_during_an_outage_is_applied_once(world):
    """Billing stopped after July; Src's balance moved to Tgt at its merge in August.
    The late run reads August and September as of their starts, but a transfer as it
    happened: the balance moved whole, before the late run applied any of it, so
    reading Src's balance before the move would apply the same credit twice."""
    partner, src, tgt = world
    grant(partner, "80.00", src, when="2026-07-10 09:00")
    staff = SYSTEM.acting_for(partner.pk)
    with frozen_at(at("2026-08-20 12:00")):
        request = merges.merge_request_create(
            principal=staff, source_ids=[src.pk], target_id=tgt.pk
        )
        merges.merge_request_approve(principal=staff, request_id=request.pk)
        merges.merge_request_run(principal=staff, request_id=request.pk)

    october = at("2026-10-01 00:10")
    with frozen_at(october):
        issued = invoices_issue_due(principal=SYSTEM, now=october)
    august, september, _ = issued
    # August as it stood on August 1: Src not merged yet, but its balance already in Tgt.
    assert {s.name for s in august.sections.all()} == {"Src", "Tgt"}
    assert credit_items(august) == {
        "Tgt": (D("-50.00"), credit_items(august)["Tgt"][1]),
    }
    assert credit_items(september)["Tgt"][0] == D("-30.00")
    applied = CreditEntry.objects.filter(partner=partner, kind=CreditEntryKind.APPLY)
    assert sum(e.amount for e in applied) == D("-80.00")
    assert balances(partner) == {src.pk: D(0), tgt.pk: D(0)}
