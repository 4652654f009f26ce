"""AuditEvent."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from portal.core.tenancy import TenantQuerySet


class AuditEvent(models.Model):
    """Who did what to which object, when, from where.

    Written by :func:`portal.audit.services.audit_record` in the same transaction
    as the change it describes. Never updated or deleted by the application.
    ``sub_account_id`` and ``other_sub_account_id`` let the log be filtered by the
    sub-accounts an event touched (e.g. both ends of a move).
    """

    partner = models.ForeignKey(
        "partners.Partner", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    at = models.DateTimeField()
    actor_type = models.CharField(max_length=16)  # user, api_key, system
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_label = models.CharField(max_length=200)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=32)
    object_id = models.CharField(max_length=64)
    sub_account_id = models.BigIntegerField(null=True, blank=True)
    other_sub_account_id = models.BigIntegerField(null=True, blank=True)
    line_id = models.BigIntegerField(null=True, blank=True)
    data = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    request_id = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["partner", "-at", "-id"], name="audit_partner_at"),
            models.Index(fields=["partner", "sub_account_id", "-id"], name="audit_partner_sub"),
            models.Index(
                fields=["partner", "other_sub_account_id", "-id"], name="audit_partner_sub2"
            ),
            models.Index(fields=["partner", "line_id", "-id"], name="audit_partner_line"),
            models.Index(fields=["partner", "action", "-id"], name="audit_partner_action"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.object_id}"
