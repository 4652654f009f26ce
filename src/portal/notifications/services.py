"""Marking notifications read (domain §8.4).

Reading is a change of the inbox's state, and every state change records one audit event
(domain §2): ``notification.read`` for one, ``notification.read_all`` for a whole inbox
(one event for the call, naming how many it marked). Marking what is already read
changes nothing and records nothing. The shared inbox of a partner's API keys is read
for all of them: one key marking an item read marks it for the others.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from portal.audit.services import audit_record
from portal.core import clock
from portal.core.principal import Principal
from portal.core.retry import retry_on_lost_race
from portal.notifications import selectors
from portal.notifications.models import Notification
from portal.partners.selectors import partner_for


@retry_on_lost_race
@transaction.atomic
def notification_read(*, principal: Principal, notification_id: Any) -> Notification:
    """Mark one notification of the principal's inbox read (404 for another's)."""
    row = selectors.notification_get(principal=principal, notification_id=notification_id)
    if row.read_at is not None:
        return row
    at = clock.now()
    if Notification.objects.filter(pk=row.pk, read_at__isnull=True).update(read_at=at):
        row.read_at = at
        audit_record(
            principal=principal,
            partner_id=row.partner_id,
            action="notification.read",
            object_type="notification",
            object_id=row.pk,
            at=at,
            data={
                "kind": row.kind,
                "before": {"read_at": None},
                "after": {"read_at": at.isoformat()},
            },
        )
    else:
        row.refresh_from_db(fields=["read_at"])
    return row


@retry_on_lost_race
@transaction.atomic
def notifications_read_all(*, principal: Principal) -> int:
    """Mark every unread notification of the principal's inbox read; how many it marked
    (one UPDATE; one audit event when any was unread). Staff name the partner whose
    shared inbox they mark (400 otherwise)."""
    unread = selectors.notification_list(principal=principal, unread=True)
    partner = partner_for(principal)
    at = clock.now()
    marked = Notification.objects.filter(pk__in=unread.values("pk")).update(read_at=at)
    if marked:
        audit_record(
            principal=principal,
            partner_id=partner.pk,
            action="notification.read_all",
            object_type="notification",
            object_id="all",
            at=at,
            data={"marked": marked},
        )
    return marked
