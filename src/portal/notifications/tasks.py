"""The alert emails (domain §8.4): queued by the inbox in the alert's own transaction, one
task per person, sent by the worker after the commit.

Thin: it takes ids, re-reads the person's unsent alert notifications of that evaluation
and marks them sent, so a rerun after the worker died mid-way sends what is left and a
second run sends nothing (a crash between the send and the mark sends one email twice:
at least once, never lost).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.tasks import task
from django.template.loader import render_to_string

from portal.accounts.models import User
from portal.core import clock
from portal.notifications.models import Kind, Notification
from portal.partners.models import Partner

logger = logging.getLogger("portal.notifications")

LISTED = 50  # alerts listed in one email; the rest are counted


@task()
def email_alert_notifications(partner_id: int, user_id: int, created_at: str) -> dict[str, Any]:
    """Email one person the alert notifications one evaluation gave them."""
    at = dt.datetime.fromisoformat(created_at)
    with transaction.atomic():
        rows = list(
            Notification.objects.select_for_update()
            .filter(
                partner_id=partner_id,
                recipient_id=user_id,
                created_at=at,
                kind__in=[Kind.ALERT_TRIGGERED, Kind.ALERT_RESOLVED],
                emailed_at__isnull=True,
            )
            .order_by("pk")
        )
        user = User.objects.filter(pk=user_id, is_active=True).first()
        if not rows or user is None:
            return {"sent": 0}
        partner = Partner.objects.get(pk=partner_id)
        context = {
            "partner": partner,
            "notifications": rows[:LISTED],
            "more": max(0, len(rows) - LISTED),
            "base_url": settings.PORTAL_BASE_URL.rstrip("/"),
        }
        if len(rows) == 1:
            subject = rows[0].title
        else:
            subject = f"{len(rows)} alert notifications for {partner.name}"
        body = render_to_string("notifications/email/alerts.txt", context)
        send_mail(subject[:200], body, None, [user.email])
        Notification.objects.filter(pk__in=[r.pk for r in rows]).update(emailed_at=clock.now())
    return {"sent": len(rows)}
