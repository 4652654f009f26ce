"""A partner with one person per role (and a client), another partner's admin, and
helpers that make notifications through the real services."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django_tasks_db.models import DBTaskResult

from portal.accounts.models import User
from portal.accounts.services import user_create
from portal.alerts.evaluation import EVALUATOR, alerts_evaluate
from portal.alerts.services import alert_rule_create
from portal.billing.invoicing import invoice_issue
from portal.billing.models import Invoice
from portal.billing.periods import cycle_containing
from portal.billing.resale import sub_account_resale_price_set
from portal.core import clock
from portal.core.principal import Principal
from portal.lines.services import line_move
from portal.notifications.models import Notification
from portal.notifications.tasks import email_alert_notifications
from portal.partners.models import Partner, SubAccount
from tests.factories import SYSTEM, Tenant, make_lines, make_sub_account, make_tenant, make_user


@dataclass
class People:
    tenant: Tenant
    admin: User
    manager: User
    billing: User
    viewer: User
    client: User
    client_sa: SubAccount
    rival: Tenant
    rival_admin: User

    @property
    def partner(self) -> Partner:
        return self.tenant.partner

    def me(self, user: User) -> Principal:
        return Principal.for_user(user)


def make_people() -> People:
    tenant, rival = make_tenant("Acme Resellers"), make_tenant("Rival Resellers")
    partner = tenant.partner
    client_sa = make_sub_account(partner, "Client – Sales")
    client = user_create(
        principal=SYSTEM.acting_for(partner.pk),
        email="cleo@client.example",
        role="client",
        password="demo-pass-123",
        sub_account_ids=[client_sa.pk],
    )
    return People(
        tenant=tenant,
        admin=make_user(partner, "ada@acme.example", "admin"),
        manager=make_user(partner, "max@acme.example", "manager"),
        billing=make_user(partner, "bea@acme.example", "billing"),
        viewer=make_user(partner, "val@acme.example", "viewer"),
        client=client,
        client_sa=client_sa,
        rival=rival,
        rival_admin=make_user(rival.partner, "olga@rival.example", "admin"),
    )


def inboxes(kind: str | None = None) -> dict[str | None, list[str]]:
    """Every notification's recipient (email; None for a shared inbox) → its titles."""
    rows = Notification.objects.order_by("pk")
    if kind:
        rows = rows.filter(kind=kind)
    found: dict[str | None, list[str]] = {}
    for row in rows.select_related("recipient", "partner"):
        who = row.recipient.email if row.recipient else f"shared:{row.partner.slug}"
        found.setdefault(who, []).append(row.title)
    return found


def fire_available_alert(partner: Partner) -> None:
    """A partner-wide rule "Lines in Available above 0" with a line in Available, evaluated
    by the alerts' own evaluation: one alert fires."""
    make_lines(partner, 1)
    alert_rule_create(
        principal=SYSTEM.acting_for(partner.pk),
        metric="available_lines",
        comparator="above",
        threshold="0",
    )
    report = alerts_evaluate(principal=EVALUATOR.acting_for(partner.pk))
    assert report.fired == 1


def run_alert_emails() -> int:
    """Run the queued alert email tasks as the worker would; how many ran."""
    tasks = DBTaskResult.objects.filter(task_path__endswith="email_alert_notifications")
    for row in tasks.order_by("enqueued_at"):
        email_alert_notifications.call(*row.args_kwargs["args"])
    return tasks.count()


def issue_with_statement(partner: Partner) -> Invoice:
    """A sub-account with a resale price holding a line since the cycle before last; last
    cycle's invoice is issued by the billing service, with one client statement."""
    last = cycle_containing(clock.now(), partner.timezone).previous()
    with clock.frozen_at(last.previous().start + dt.timedelta(days=1)):
        client = make_sub_account(partner, "Eta – Client")
        (line,) = make_lines(partner, 1)
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=client.pk)
        sub_account_resale_price_set(
            principal=SYSTEM.acting_for(partner.pk), sub_account_id=client.pk, price="70.00"
        )
    with clock.frozen_at(last.start):
        return invoice_issue(principal=SYSTEM, partner=partner, cycle=last)
