"""Line, AssignmentPeriod, InventoryNumber and LineOrder."""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.db.models import Q

from portal.core.tenancy import TenantQuerySet
from portal.partners.models import DeferredJoinQuerySet


class LineStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DISCONNECTED = "disconnected", "Disconnected"


class Line(models.Model):
    """A phone line of a partner.

    Invariants:
    - ``number`` is E.164 and unique across the platform among active lines;
    - an active line has a ``sub_account`` (the Available pool included) and exactly
      one open :class:`AssignmentPeriod` naming it;
    - a disconnected line has no sub-account, no open period, and never returns.
    """

    # No index of its own: every index of the table leads with the partner.
    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    number = models.CharField(max_length=16)
    status = models.CharField(max_length=16, choices=LineStatus.choices, default=LineStatus.ACTIVE)
    sub_account = models.ForeignKey(
        "partners.SubAccount", null=True, blank=True, on_delete=models.PROTECT, related_name="lines"
    )
    label = models.CharField(max_length=120, blank=True)
    user_name = models.CharField(max_length=120, blank=True)
    user_email = models.EmailField(max_length=254, blank=True)
    notes = models.TextField(blank=True)
    daily_limit = models.PositiveIntegerField()
    order = models.ForeignKey(
        "LineOrder", null=True, blank=True, on_delete=models.PROTECT, related_name="lines"
    )
    activated_at = models.DateTimeField()
    disconnected_at = models.DateTimeField(null=True, blank=True)

    objects = DeferredJoinQuerySet.as_manager()
    # A client sees the lines now in its sub-accounts (core.tenancy).
    tenant_sub_account_field: ClassVar[str] = "sub_account_id"

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["number"],
                condition=Q(status=LineStatus.ACTIVE),
                name="line_number_unique_among_active",
            ),
            models.CheckConstraint(
                condition=(
                    Q(status=LineStatus.ACTIVE, sub_account__isnull=False)
                    | Q(status=LineStatus.DISCONNECTED, sub_account__isnull=True)
                ),
                name="line_active_iff_in_sub_account",
            ),
            models.CheckConstraint(condition=Q(daily_limit__gte=1), name="line_limit_positive"),
        ]
        # Lists order by (number, id): with the id in the index a page is read in order
        # and counted from the index alone (an active line is exactly one with a
        # sub-account, so a sub-account's list needs no status from the table).
        indexes = [
            models.Index(
                fields=["partner", "sub_account", "number", "id"], name="line_partner_sub_num_id"
            ),
            models.Index(
                fields=["partner", "status", "number", "id"], name="line_partner_status_num_id"
            ),
            models.Index(fields=["partner", "number"], name="line_partner_number"),
            # Late message events for disconnected or reissued numbers look lines up by number.
            models.Index(fields=["number"], name="line_number"),
        ]

    def __str__(self) -> str:
        return self.number


class AssignmentPeriod(models.Model):
    """A half-open interval ``[start, end)`` during which a line was in a sub-account.

    A line's periods tile its active life without gaps or overlap; the open one
    (``end`` null) names its current sub-account. Rows are appended and closed,
    never rewritten. Billing and analytics attribution read these.
    """

    # Neither has an index of its own: the partner leads the partner indexes and the
    # line leads period_line_start (each index is work on every move).
    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    line = models.ForeignKey(Line, on_delete=models.PROTECT, related_name="periods", db_index=False)
    sub_account = models.ForeignKey(
        "partners.SubAccount", on_delete=models.PROTECT, related_name="+"
    )
    start = models.DateTimeField()
    end = models.DateTimeField(null=True, blank=True)
    # True when this period began because a merge moved the line here. Billing does
    # not prorate such a change: the line stays billed to the source until the cycle
    # ends (domain §3, "merges never prorate").
    via_merge = models.BooleanField(default=False)

    objects = TenantQuerySet.as_manager()
    # A client sees its sub-accounts' periods (core.tenancy).
    tenant_sub_account_field: ClassVar[str] = "sub_account_id"

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["line"], condition=Q(end__isnull=True), name="one_open_period_per_line"
            ),
            models.CheckConstraint(
                condition=Q(end__isnull=True) | Q(end__gte=models.F("start")),
                name="period_end_after_start",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "sub_account", "start"], name="period_partner_sub"),
            models.Index(fields=["line", "start"], name="period_line_start"),
            # Billing finds the periods that start or end inside a cycle.
            models.Index(fields=["partner", "start"], name="period_partner_start"),
            models.Index(fields=["partner", "end"], name="period_partner_end"),
        ]


class InventoryStatus(models.TextChoices):
    IN_STOCK = "in_stock", "In stock"
    ALLOCATED = "allocated", "Allocated"


class InventoryNumber(models.Model):
    """A number the provider holds and can hand to a partner's order.

    Imported by staff; ``allocated`` once it became a line (the partner and order
    are then recorded). A number is in stock at most once.
    """

    number = models.CharField(max_length=16)
    area_code = models.CharField(max_length=8, blank=True)
    status = models.CharField(
        max_length=16, choices=InventoryStatus.choices, default=InventoryStatus.IN_STOCK
    )
    imported_at = models.DateTimeField()
    partner = models.ForeignKey(
        "partners.Partner", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    order = models.ForeignKey(
        "LineOrder", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    allocated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["number"],
                condition=Q(status=InventoryStatus.IN_STOCK),
                name="inventory_number_in_stock_once",
            )
        ]
        indexes = [models.Index(fields=["status", "area_code", "id"], name="inventory_pick")]

    def __str__(self) -> str:
        return self.number


class LineOrderStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PARTIALLY_FULFILLED = "partially_fulfilled", "Partially fulfilled"
    FULFILLED = "fulfilled", "Fulfilled"
    CANCELLED = "cancelled", "Cancelled"


OPEN_ORDER_STATUSES = (LineOrderStatus.PENDING, LineOrderStatus.PARTIALLY_FULFILLED)


class LineOrder(models.Model):
    """A partner's request for new lines, fulfilled from inventory oldest-first.

    Invariants: ``0 <= fulfilled_count <= quantity``; status follows the count
    (pending at 0, partially fulfilled below quantity, fulfilled at quantity)
    unless cancelled; only an order with nothing fulfilled can be cancelled by the
    partner; one submission of the page's form (``submission_key``, non-empty) makes at
    most one order of the partner, however often it is posted.
    """

    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    area_code = models.CharField(max_length=8, blank=True)
    status = models.CharField(
        max_length=24, choices=LineOrderStatus.choices, default=LineOrderStatus.PENDING
    )
    fulfilled_count = models.PositiveIntegerField(default=0)
    requested_by = models.CharField(max_length=200, blank=True)
    # The one-time key of the form that asked for it (empty through the API, whose
    # clients send an Idempotency-Key instead).
    submission_key = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gte=1, quantity__lte=1000), name="order_quantity_range"
            ),
            models.CheckConstraint(
                condition=Q(fulfilled_count__lte=models.F("quantity")),
                name="order_fulfilled_le_quantity",
            ),
            models.UniqueConstraint(
                fields=["partner", "submission_key"],
                condition=~Q(submission_key=""),
                name="order_one_per_submission",
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at", "id"], name="order_queue")]

    def __str__(self) -> str:
        return f"Order {self.pk} ({self.quantity})"


class LineLimitChange(models.Model):
    """A change of a line's daily volume limit: ``old_limit`` until ``at``, ``new_limit``
    from then on (domain §4: a day is judged by the limit the line had at the end of it).

    The limit in force at an instant is the ``old_limit`` of the line's first change
    after it, or ``Line.daily_limit`` when there is none: a line that never changed (and
    every line before the history began) needs no row. Appended by
    :mod:`portal.lines.limits` in the transaction of the change, never rewritten.

    Invariants: ``old_limit != new_limit``, both >= 1; a line's changes, ordered by
    ``(at, id)``, chain (each ``new_limit`` is the next ``old_limit``, the last one's the
    line's ``daily_limit``).
    """

    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    line = models.ForeignKey(Line, on_delete=models.PROTECT, related_name="+", db_index=False)
    at = models.DateTimeField()
    old_limit = models.PositiveIntegerField()
    new_limit = models.PositiveIntegerField()

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(old_limit__gte=1, new_limit__gte=1)
                & ~Q(old_limit=models.F("new_limit")),
                name="limit_change_changes",
            ),
        ]
        indexes = [
            # The limit of a line at a day's end: its first change after it.
            models.Index(fields=["partner", "line", "at"], name="limit_change_partner_line_at"),
        ]

    def __str__(self) -> str:
        return f"{self.line_id}: {self.old_limit} -> {self.new_limit} at {self.at:%Y-%m-%d %H:%M}"
