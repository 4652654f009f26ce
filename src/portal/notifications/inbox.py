"""The inbox writer: notifications written in the transaction of the change they report.

:data:`INBOX` subscribes to the audit log (``portal.core.events``, see
``NotificationsConfig.ready``), as the webhooks' outbox does: every audit writer hands it
what it recorded inside the change's transaction, and it writes one :class:`Notification`
per recipient with one ``bulk_create``. They commit with the change or not at all, so a
rolled-back change notifies nobody.

Recipients (domain §8.4), always active members of the change's partner, never staff:

- alerts: the partner's admins and managers; invoices and statements issued: its admins
  and billing people (``policies.RECIPIENT_ROLES``), plus one row in the partner's shared
  inbox, which its API keys read;
- statements issued: also each of the partner's clients (users; a client key has no
  inbox) whose grant holds the sub-account of one of them, one row about its own
  statements of that invoice (``drafts.client_statements_draft``), found in one query
  over the grants;
- a request approved, rejected or completed, a line order (partly) fulfilled: the person
  who asked, when they are still one of the partner's people; the shared inbox when an
  API key asked (there is no person to tell); nobody when staff or the system did.

Alerts are also emailed to the people they go to (not those a person resolved through
their rule: ``Draft.emailed``): a task per person is queued in the same transaction
(``tasks.email_alert_notifications``), so it exists exactly when the notifications do
and a crash after the commit loses no email.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Q, QuerySet

from portal.accounts.models import Membership
from portal.core import clock
from portal.core.events import Recorded
from portal.core.roles import PARTNER_STAFF_ROLES, Role
from portal.core.tenancy import db_id
from portal.notifications.drafts import BUILDERS, Draft, client_statements_draft, drafts_of
from portal.notifications.models import Kind, Notification
from portal.notifications.policies import RECIPIENT_ROLES

EMAILED_KINDS = frozenset({Kind.ALERT_TRIGGERED, Kind.ALERT_RESOLVED})


def _members(partner_id: int) -> QuerySet[Membership]:
    """The partner's active people (every role but a client)."""
    return Membership.objects.filter(
        partner_id=partner_id, user__is_active=True, role__in=sorted(PARTNER_STAFF_ROLES)
    )


def _people_by_role(partner_id: int, drafts: list[Draft]) -> dict[str, list[int]]:
    """The user ids of the partner's people in each role the drafts need (one query)."""
    roles = {role for d in drafts if d.requester is None for role in RECIPIENT_ROLES[d.kind]}
    found: dict[str, list[int]] = {}
    if roles:
        rows = _members(partner_id).filter(role__in=sorted(roles)).order_by("user_id")
        for user_id, role in rows.values_list("user_id", "role"):
            found.setdefault(role, []).append(user_id)
    return found


def _requesters(partner_id: int, drafts: list[Draft]) -> dict[tuple[str, object], int]:
    """The partner's people who asked, by how the drafts name them (one query)."""
    ids = {d.requester[1] for d in drafts if d.requester and d.requester[0] == "user"}
    emails = {d.requester[1] for d in drafts if d.requester and d.requester[0] == "email"}
    if not ids and not emails:
        return {}
    rows = _members(partner_id).filter(
        Q(user_id__in=sorted(i for i in ids if i is not None))
        | Q(user__email__in=sorted(str(e) for e in emails))
    )
    found: dict[tuple[str, object], int] = {}
    for user_id, email in rows.values_list("user_id", "user__email"):
        found[("user", user_id)] = user_id
        found[("email", email)] = user_id
    return found


def _clients_of_statements(partner_id: int, drafts: list[Draft]) -> list[tuple[int, Draft]]:
    """For each invoice whose statements the drafts announce: the partner's active clients
    whose grant holds one of those statements' sub-accounts, each with the draft of its
    own statements of that invoice (two queries an invoice: the grants that meet the
    statements' sub-accounts, then those statements). A purged sub-account has left every
    grant (``Principal``'s scope), so it notifies nobody."""
    from portal.billing.models import Statement
    from portal.partners.models import SubAccountStatus

    invoice_ids = sorted(
        {
            key
            for d in drafts
            if d.kind == Kind.STATEMENT_ISSUED
            and d.requester is None
            and d.object_type == "invoice"
            and (key := db_id(d.object_id)) is not None
        }
    )
    grants = Membership.sub_accounts.through.objects
    found: list[tuple[int, Draft]] = []
    for invoice_id in invoice_ids:
        issued = Statement.objects.filter(partner_id=partner_id, invoice_id=invoice_id)
        pairs = list(
            grants.filter(
                membership__partner_id=partner_id,
                membership__role=Role.CLIENT,
                membership__user__is_active=True,
                subaccount_id__in=issued.values("sub_account_id"),
            )
            .exclude(subaccount__status=SubAccountStatus.DELETED)
            .values_list("membership__user_id", "subaccount_id")
        )
        if not pairs:
            continue
        statements = {
            sub_account_id: (pk, name, month)
            for pk, sub_account_id, name, month in issued.filter(
                sub_account_id__in=sorted({sub for _, sub in pairs})
            ).values_list("pk", "sub_account_id", "name", "period_month")
        }
        by_client: dict[int, list[tuple[int, str, dt.date]]] = {}
        for user_id, sub_account_id in pairs:
            by_client.setdefault(user_id, []).append(statements[sub_account_id])
        for user_id in sorted(by_client):
            own = sorted(by_client[user_id], key=lambda s: (s[1], s[0]))
            found.append((user_id, client_statements_draft(invoice_id, own)))
    return found


class Inbox:
    """The audit log's subscriber that writes notifications (see the module)."""

    def wants(self, partner_id: int | None, action: str) -> bool:
        return partner_id is not None and action in BUILDERS

    def receive(self, recorded: Recorded) -> None:
        partner_id = recorded.partner_id
        if partner_id is None:
            return
        drafts = drafts_of(recorded)
        if drafts:
            notifications_write(partner_id=partner_id, drafts=drafts)


INBOX = Inbox()


def _recipients(
    draft: Draft, by_role: dict[str, list[int]], requesters: dict[tuple[str, object], int]
) -> list[int | None]:
    """User ids (None: the partner's shared inbox) that get ``draft``."""
    if draft.requester is None:
        people = sorted({u for role in RECIPIENT_ROLES[draft.kind] for u in by_role.get(role, [])})
        return [*people, None]
    if draft.requester[0] == "api_key":
        return [None]
    person = requesters.get(draft.requester)
    return [person] if person is not None else []


def notifications_write(*, partner_id: int, drafts: list[Draft]) -> list[Notification]:
    """Write ``drafts`` for their recipients in the caller's transaction (one INSERT per
    thousand rows) and queue the alert emails. Returns the rows."""
    by_role = _people_by_role(partner_id, drafts)
    requesters = _requesters(partner_id, drafts)
    addressed = [(user_id, d) for d in drafts for user_id in _recipients(d, by_role, requesters)]
    addressed += _clients_of_statements(partner_id, drafts)
    now = clock.now()
    rows = [
        Notification(
            partner_id=partner_id,
            recipient_id=user_id,
            kind=d.kind,
            title=d.title,
            url=d.url,
            object_type=d.object_type,
            object_id=d.object_id,
            created_at=now,
        )
        for user_id, d in addressed
    ]
    if not rows:
        return []
    Notification.objects.bulk_create(rows, batch_size=1000)
    emailed = sorted(
        {user_id for user_id, d in addressed if user_id and d.emailed and d.kind in EMAILED_KINDS}
    )
    if emailed:
        from portal.notifications.tasks import email_alert_notifications

        for user_id in emailed:
            email_alert_notifications.enqueue(partner_id, user_id, now.isoformat())
    return rows
