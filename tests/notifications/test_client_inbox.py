"""A partner's client has an inbox too (domain §8.4): when an invoice issues statements of
sub-accounts in its grant it gets one item about its own statements, linking to the one
statement or to the period's statements, with names and a month, never an amount, the
invoice or another sub-account. It reads, opens and marks read its own items only;
another person's, the shared inbox and anything it got before it was a client answer 404;
a client key has no inbox (403); a client changes nothing else."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal.accounts.models import User
from portal.accounts.services import api_key_create, user_create
from portal.audit.models import AuditEvent
from portal.billing.invoicing import invoice_issue
from portal.billing.models import Invoice, Statement
from portal.billing.periods import Cycle, cycle_containing
from portal.billing.resale import sub_account_resale_price_set
from portal.core import clock
from portal.lines.services import line_move
from portal.notifications.models import CLIENT_OBJECT_TYPE, Kind, Notification
from portal.partners.models import Partner, SubAccount
from tests.conftest import Api
from tests.factories import SYSTEM, db_snapshot, make_lines, make_sub_account
from tests.notifications.support import People, inboxes, make_people

pytestmark = pytest.mark.django_db

BELL = re.compile(r'<span id="bell-count" class="bell-count">(\d+)<')


def billed(partner: Partner, *names: str) -> tuple[list[SubAccount], Cycle]:
    """Sub-accounts each holding a line with a resale price since the cycle before last:
    last cycle's invoice will issue a statement for each."""
    last = cycle_containing(clock.now(), partner.timezone).previous()
    with clock.frozen_at(last.previous().start + dt.timedelta(days=1)):
        subs = [make_sub_account(partner, name) for name in names]
        for sub, line in zip(subs, make_lines(partner, len(subs)), strict=True):
            line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=sub.pk)
            sub_account_resale_price_set(
                principal=SYSTEM.acting_for(partner.pk), sub_account_id=sub.pk, price="70.00"
            )
    return subs, last


def issue(partner: Partner, cycle: Cycle) -> Invoice:
    with clock.frozen_at(cycle.start):
        return invoice_issue(principal=SYSTEM, partner=partner, cycle=cycle)


def client_of(partner: Partner, email: str, *subs: SubAccount) -> User:
    return user_create(
        principal=SYSTEM.acting_for(partner.pk),
        email=email,
        role="client",
        password="demo-pass-123",
        sub_account_ids=[s.pk for s in subs],
    )


def browser(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def bell(page: str) -> int | None:
    found = BELL.search(page)
    return int(found[1]) if found else None


@pytest.fixture
def people() -> People:
    return make_people()


def test_a_client_gets_its_own_statements_and_nothing_of_other_sub_accounts(people):
    partner = people.partner
    (a, _b, c), cycle = billed(partner, "Alpha – Client", "Beta – Client", "Gamma – Client")
    solo = client_of(partner, "solo@client.example", a)
    duo = client_of(partner, "duo@client.example", a, c)
    gone = client_of(partner, "gone@client.example", a)
    gone.is_active = False
    gone.save(update_fields=["is_active"])
    # Granted nothing billed: the people's client (its sub-account holds no line).
    rival_sub = make_sub_account(people.rival.partner, "Alpha – Rival")
    rival_client = client_of(people.rival.partner, "rival@client.example", rival_sub)

    with CaptureQueriesContext(connection) as queries:
        invoice = issue(partner, cycle)
    grants = [q for q in queries if "accounts_membership_sub_accounts" in q["sql"]]
    assert len(grants) == 1  # the clients whose grant meets the statements, at once

    period = f"{invoice.period_month:%B %Y}"
    got = inboxes(Kind.STATEMENT_ISSUED)
    assert got["solo@client.example"] == [f"Your statement for {period} is issued: Alpha – Client"]
    assert got["duo@client.example"] == [f"Your 2 statements for {period} are issued"]
    for nobody in (people.client, gone, rival_client):
        assert nobody.email not in got
    # The reseller's people keep their one item about all the statements.
    assert got["ada@acme.example"] == [f"3 client statements issued for {period}"]

    mine = Notification.objects.get(recipient=solo)
    statement = Statement.objects.get(invoice=invoice, sub_account=a)
    assert mine.url == f"/billing/statements/{statement.pk}/"
    assert (mine.object_type, mine.object_id) == (CLIENT_OBJECT_TYPE, str(invoice.pk))
    theirs = Notification.objects.get(recipient=duo)
    assert theirs.url == f"/billing/statements/?period={invoice.period_month:%Y-%m}"
    # Names and a month: no amount, no invoice, no other sub-account.
    for row in (mine, theirs):
        assert "70" not in row.title and "nvoice" not in row.title and "Beta" not in row.title
    # No client gets an alert, an invoice, a request or an order.
    clients = Notification.objects.filter(recipient__membership__role="client")
    assert set(clients.values_list("kind", flat=True)) == {Kind.STATEMENT_ISSUED}


def test_a_client_reads_opens_and_marks_read_its_item(people):
    partner = people.partner
    (a, _b), cycle = billed(partner, "Alpha – Client", "Beta – Client")
    user = client_of(partner, "solo@client.example", a)
    issue(partner, cycle)
    row = Notification.objects.get(recipient=user)
    client = browser(user)

    assert bell(client.get("/sub-accounts/").content.decode()) == 1
    page = client.get("/notifications/").content.decode()
    assert row.title in page and f'href="{row.url}"' in page and bell(page) == 1
    assert "Beta – Client" not in page
    opened = client.get(row.url)
    assert opened.status_code == 200 and "Alpha – Client" in opened.content.decode()

    done = client.post(f"/notifications/{row.pk}/read/", HTTP_HX_REQUEST="true")
    assert done.status_code == 200 and 'hx-swap-oob="true">0<' in done.content.decode()
    row.refresh_from_db()
    assert row.read_at is not None
    event = AuditEvent.objects.get(action="notification.read")
    assert (event.actor_type, event.actor_id, event.partner_id) == ("user", user.pk, partner.pk)
    assert bell(client.get("/notifications/").content.decode()) == 0

    Notification.objects.filter(pk=row.pk).update(read_at=None)
    assert client.post("/notifications/read-all/").status_code == 302
    row.refresh_from_db()
    assert row.read_at is not None
    assert AuditEvent.objects.filter(action="notification.read_all").count() == 1
    # The reseller's people's items are theirs to mark.
    assert Notification.objects.filter(recipient=people.admin, read_at__isnull=True).exists()


def test_a_client_never_reads_anothers_item_the_shared_inbox_or_its_old_ones(people):
    partner = people.partner
    (a,), cycle = billed(partner, "Alpha – Client")
    user = client_of(partner, "solo@client.example", a)
    issue(partner, cycle)
    # An item it got before it was a client (an admin demoted): not a client's to read.
    old = Notification.objects.create(
        partner=partner,
        recipient=user,
        kind=Kind.INVOICE_ISSUED,
        title="Invoice 9 issued for May 2026",
        url="/invoices/9/",
        object_type="invoice",
        object_id="9",
        created_at=clock.now(),
    )
    others = [
        Notification.objects.filter(recipient=people.admin).first(),
        Notification.objects.filter(partner=partner, recipient__isnull=True).first(),
        old,
    ]
    client = browser(user)
    before = db_snapshot()
    for row in others:
        assert client.post(f"/notifications/{row.pk}/read/").status_code == 404, row.title
    assert client.post("/notifications/987654321/read/").status_code == 404
    page = client.get("/notifications/").content.decode()
    assert "Invoice" not in page and "3 client statements" not in page and bell(page) == 1
    assert db_snapshot() == before
    client.post("/notifications/read-all/")
    for row in others:
        row.refresh_from_db()
        assert row.read_at is None


def test_a_client_key_has_no_inbox(people):
    (a,), cycle = billed(people.partner, "Alpha – Client")
    issue(people.partner, cycle)
    key = api_key_create(
        principal=SYSTEM.acting_for(people.partner.pk),
        name="Client",
        role="client",
        sub_account_ids=[a.pk],
    ).raw
    api = Api(key)
    shared = Notification.objects.filter(recipient__isnull=True).first()
    assert api.get("/notifications").status_code == 403
    assert api.post(f"/notifications/{shared.pk}/read").status_code == 403
    assert api.post("/notifications/read-all").status_code == 403
    shared.refresh_from_db()
    assert shared.read_at is None


def test_a_client_posts_nothing_but_marking_read(people):
    client = browser(people.client)
    before = db_snapshot()
    for path in ("/sub-accounts/", "/notifications/", "/billing/statements/", "/lines/"):
        assert client.post(path, {}).status_code == 403, path
    for method in ("put", "delete", "patch"):
        assert getattr(client, method)("/notifications/read-all/").status_code == 403, method
    assert db_snapshot() == before
