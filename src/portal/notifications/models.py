"""A person's portal inbox (domain §8.4)."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from portal.core.tenancy import TenantQuerySet


class Kind(models.TextChoices):
    ALERT_TRIGGERED = "alert.triggered", "Alert triggered"
    ALERT_RESOLVED = "alert.resolved", "Alert resolved"
    MERGE_APPROVED = "merge_request.approved", "Merge approved"
    MERGE_REJECTED = "merge_request.rejected", "Merge rejected"
    MERGE_COMPLETED = "merge_request.completed", "Merge completed"
    DELETION_APPROVED = "deletion_request.approved", "Deletion approved"
    DELETION_REJECTED = "deletion_request.rejected", "Deletion rejected"
    DELETION_PURGED = "deletion_request.purged", "Deletion completed"
    LINE_ORDER_FULFILLED = "line_order.fulfilled", "Lines delivered"
    INVOICE_ISSUED = "invoice.issued", "Invoice issued"
    STATEMENT_ISSUED = "statement.issued", "Client statements issued"


# A client's row: its own statements issued with one invoice (``object_id``: the invoice).
CLIENT_OBJECT_TYPE = "client_statements"


class Notification(models.Model):
    """One item of one inbox: a person's, or the partner's shared inbox that its API keys
    read (``recipient`` None).

    Invariants:
    - written only by ``notifications.inbox`` in the transaction of the audited change it
      reports (a rolled-back change notifies nobody), one row per recipient;
    - a person's row belongs to a member of ``partner`` (never another partner's user,
      never staff); the shared row is the partner's partner-wide view. A partner's client
      gets only ``statement.issued`` rows of ``CLIENT_OBJECT_TYPE`` (its own statements
      of one invoice, ``object_id`` the invoice), and reads only those
      (``selectors.inbox``);
    - ``read_at`` moves from None to a time once (services), and nothing else changes
      but ``emailed_at`` (the alert email's task, once sent).
    """

    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="+",
        null=True,
        blank=True,
        db_index=False,
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    title = models.CharField(max_length=300)
    url = models.CharField(max_length=300, blank=True)
    object_type = models.CharField(max_length=32)
    object_id = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()
    # A partner's client (narrowed below the partner) reads the rows addressed to it.
    tenant_person_field: ClassVar[str] = "recipient_id"

    class Meta:
        indexes = [
            # An inbox, newest first (the page and the API).
            models.Index(
                fields=["partner", "recipient", "-created_at", "-id"], name="notification_inbox"
            ),
            # "My unread" (the bell's count): only unread rows are in it.
            models.Index(
                fields=["partner", "recipient", "-created_at"],
                condition=Q(read_at__isnull=True),
                name="notification_unread",
            ),
        ]

    def __str__(self) -> str:
        return self.title
