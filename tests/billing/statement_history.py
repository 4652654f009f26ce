"""Client statements laid down through the engine, for the API, page, file and browser
tests: the worked example of domain §8.1 (A 80.00, B 65.00; one of A's two lines moves
to B on 16 June), resale prices set with the services and invoices issued at their
cycles' starts, never rows written by hand."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from portal.billing.models import Invoice, Statement
from portal.billing.resale import resale_default_set, sub_account_resale_price_set
from portal.core.clock import frozen_at
from portal.lines.models import Line
from portal.lines.services import line_move
from portal.partners.models import Partner, SubAccount
from tests.factories import SYSTEM, issue_invoice, make_lines, make_sub_account


@dataclass
class StatementHistory:
    a: SubAccount
    b: SubAccount
    moved: Line
    june: Invoice
    july: Invoice

    def statement(self, sub_account: SubAccount, invoice: Invoice) -> Statement:
        return Statement.objects.get(sub_account=sub_account, invoice=invoice)


def statement_history(
    partner: Partner, a_name: str = "Client A – Sales", b_name: str = "Client B – Support"
) -> StatementHistory:
    """Two lines in A from April 10; resale prices set on May 10 (so from June); the
    June invoice (A's statement 1: 2 × 80.00); the move on June 16; the July invoice
    (A's statement 2: 80.00 − 40.00, B's statement 1: 65.00 + 32.50)."""
    a = make_sub_account(
        partner,
        a_name,
        contact_name="Priya Shah",
        contact_email="priya@client-a.example",
        contact_phone="+14155550123",
        internal_reference="CL-1001",
    )
    b = make_sub_account(partner, b_name)
    with frozen_at(dt.datetime(2026, 4, 10, 9, tzinfo=dt.UTC)):
        lines = make_lines(partner, 2)
        for line in lines:
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=a.pk)
    staff = SYSTEM.acting_for(partner.pk)
    with frozen_at(dt.datetime(2026, 5, 10, tzinfo=dt.UTC)):
        sub_account_resale_price_set(principal=staff, sub_account_id=a.pk, price="80.00")
        sub_account_resale_price_set(principal=staff, sub_account_id=b.pk, price="65.00")
    issue_invoice(partner, 2026, 5)
    june = issue_invoice(partner, 2026, 6)
    with frozen_at(dt.datetime(2026, 6, 16, 12, tzinfo=dt.UTC)):
        line_move(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=b.pk)
    july = issue_invoice(partner, 2026, 7)
    return StatementHistory(a=a, b=b, moved=lines[1], june=june, july=july)


def many_statements(partner: Partner, count: int = 10) -> Invoice:
    """After :func:`statement_history`: ``count`` more sub-accounts holding a line each
    from June 20, a partner default of 60.00 set then (so from July), and the August
    invoice: ``count`` + 2 statements in August against June's one."""
    subs = [make_sub_account(partner, f"Client {i:02d} – Many") for i in range(count)]
    with frozen_at(dt.datetime(2026, 6, 20, 9, tzinfo=dt.UTC)):
        for sub, line in zip(subs, make_lines(partner, count), strict=True):
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=sub.pk)
        resale_default_set(principal=SYSTEM.acting_for(partner.pk), price="60.00")
    return issue_invoice(partner, 2026, 8)
