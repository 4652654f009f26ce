"""Merge and deletion requests: high-impact changes that pass through approval (domain §5)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from portal.core.tenancy import TenantQuerySet


class MergeStatus(models.TextChoices):
    PENDING_APPROVAL = "pending_approval", "Pending approval"
    APPROVED = "approved", "Approved"
    PROCESSING = "processing", "Processing"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


class DeletionStatus(models.TextChoices):
    PENDING_APPROVAL = "pending_approval", "Pending approval"
    SCHEDULED = "scheduled", "Scheduled"
    PURGED = "purged", "Purged"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"
    RESTORED = "restored", "Restored"


class LineDisposition(models.TextChoices):
    MOVE = "move", "Move all lines to another sub-account"
    DISCONNECT = "disconnect", "Disconnect all lines"


# While a merge is in one of these states its sub-accounts stay locked (domain §5); a
# failed merge keeps them locked too, because some lines may already have moved.
MERGE_LOCKING_STATUSES = (
    MergeStatus.PENDING_APPROVAL,
    MergeStatus.APPROVED,
    MergeStatus.PROCESSING,
    MergeStatus.FAILED,
)


class RequestBase(models.Model):
    """What both kinds of request record: who asked, why, and who decided.

    ``requested_by_type``/``requested_by_id`` identify the requesting principal so a
    partner admin cannot approve their own request; ``requester_email`` is where the
    notifications go (empty for a key nobody created).
    """

    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="+")
    reason = models.TextField(blank=True)
    requested_by_type = models.CharField(max_length=16)
    requested_by_id = models.BigIntegerField(null=True, blank=True)
    requested_by_label = models.CharField(max_length=200)
    requester_email = models.EmailField(max_length=254, blank=True)
    created_at = models.DateTimeField()
    decided_by_label = models.CharField(max_length=200, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True


class MergeRequest(RequestBase):
    """Merge sources (via :class:`MergeRequestSource`) into ``target``.

    Invariants:
    - the target is not among the sources; all belong to ``partner``;
    - while the status is in ``MERGE_LOCKING_STATUSES`` every source and the target
      carry this request's lock (``SubAccount.lock_reason``), so nothing else moves
      lines in or out, merges or deletes them;
    - ``0 <= lines_moved <= lines_total``; ``lines_moved`` grows in the same
      transaction as the batch of lines it counts, so a crash never loses or doubles
      a line: the lines still to move are exactly those still in a source;
    - completed: no active line is in a source; the sources are ``merged`` with
      ``merged_into`` = target.
    """

    target = models.ForeignKey("partners.SubAccount", on_delete=models.PROTECT, related_name="+")
    status = models.CharField(
        max_length=20, choices=MergeStatus.choices, default=MergeStatus.PENDING_APPROVAL
    )
    lines_total = models.IntegerField(default=0)
    lines_moved = models.IntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    failure = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(lines_moved__gte=0) & Q(lines_moved__lte=models.F("lines_total")),
                name="merge_progress_in_range",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "-created_at", "-id"], name="merge_partner_created"),
            models.Index(fields=["status", "created_at"], name="merge_status_created"),
        ]

    def __str__(self) -> str:
        return f"Merge request #{self.pk}"

    @property
    def kind(self) -> str:
        return "merge"

    @property
    def lock_text(self) -> str:
        return f"merge request #{self.pk} is open"

    @property
    def progress_percent(self) -> int:
        if self.lines_total <= 0:
            return 100 if self.status == MergeStatus.COMPLETED else 0
        return min(100, (100 * self.lines_moved) // self.lines_total)


class MergeRequestSource(models.Model):
    """One source of a merge request, with its line count when the request was made."""

    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="+")
    merge_request = models.ForeignKey(
        MergeRequest, on_delete=models.CASCADE, related_name="sources"
    )
    sub_account = models.ForeignKey(
        "partners.SubAccount", on_delete=models.PROTECT, related_name="+"
    )
    line_count = models.IntegerField(default=0)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merge_request", "sub_account"], name="merge_source_once"
            ),
        ]
        indexes = [models.Index(fields=["partner", "sub_account"], name="merge_source_partner_sub")]


class DeletionRequest(RequestBase):
    """Delete ``sub_account`` after a retention period, disposing of its lines first.

    Invariants:
    - at most one pending request per sub-account (a partial unique index), and a
      pending request holds the sub-account's lock;
    - scheduled: the sub-account is ``pending_deletion``, empty, and
      ``purge_after`` = approval + the partner's retention days; restorable until then;
    - purged: the sub-account is ``deleted`` with its contact details erased; its name
      stays (invoices and audit events keep it).
    """

    sub_account = models.ForeignKey(
        "partners.SubAccount", on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(
        max_length=20, choices=DeletionStatus.choices, default=DeletionStatus.PENDING_APPROVAL
    )
    line_disposition = models.CharField(max_length=16, choices=LineDisposition.choices, blank=True)
    move_to = models.ForeignKey(
        "partners.SubAccount", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    lines_disposed = models.IntegerField(default=0)
    purge_after = models.DateTimeField(null=True, blank=True)
    purged_at = models.DateTimeField(null=True, blank=True)
    restored_at = models.DateTimeField(null=True, blank=True)
    restored_by_label = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sub_account"],
                condition=Q(status="pending_approval") | Q(status="scheduled"),
                name="one_open_deletion_per_sub_account",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "-created_at", "-id"], name="deletion_partner_created"),
            models.Index(fields=["status", "purge_after"], name="deletion_status_purge"),
        ]

    def __str__(self) -> str:
        return f"Deletion request #{self.pk}"

    @property
    def kind(self) -> str:
        return "deletion"

    @property
    def lock_text(self) -> str:
        return f"deletion request #{self.pk} is open"
