"""Partner (the tenant) and SubAccount."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from portal.core.tenancy import TenantQuerySet


class Partner(models.Model):
    """A reseller: the tenant every other row belongs to.

    Invariants: slug unique; exactly one sub-account of kind ``available``,
    created with the partner (see ``partner_create``).
    """

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=64, unique=True)
    timezone = models.CharField(max_length=64, default="UTC")
    currency = models.CharField(max_length=3, default="USD")
    line_price = models.DecimalField(max_digits=12, decimal_places=4, default=Decimal("50.00"))
    default_daily_limit = models.PositiveIntegerField(default=50)
    deletion_retention_days = models.PositiveIntegerField(default=30)
    self_service_requests = models.BooleanField(default=False)
    prorate_new_lines = models.BooleanField(default=True)
    credit_disconnects = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(line_price__gte=0), name="partner_price_nonneg"),
            models.CheckConstraint(
                condition=Q(default_daily_limit__gte=1), name="partner_daily_limit_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class SubAccountKind(models.TextChoices):
    AVAILABLE = "available", "Available pool"
    STANDARD = "standard", "Standard"


class SubAccountStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    MERGED = "merged", "Merged"
    PENDING_DELETION = "pending_deletion", "Pending deletion"
    DELETED = "deleted", "Deleted"


class SubAccountQuerySet(TenantQuerySet):
    def listed_order(self) -> SubAccountQuerySet:
        """Available first, then by name."""
        return self.order_by(
            models.Case(models.When(kind=SubAccountKind.AVAILABLE, then=0), default=1),
            Lower("name"),
            "id",
        )


class SubAccount(models.Model):
    """A folder of lines inside a partner: one per client, team, location or campaign.

    Invariants:
    - names are unique per partner ignoring case among sub-accounts not ``deleted``;
    - each partner has exactly one ``available`` sub-account, always active;
    - ``line_count`` equals the number of active lines whose ``sub_account`` is this
      one; services keep it in the same transaction as every move, so list pages
      never count lines;
    - ``lock_reason`` is non-empty while a pending merge or deletion request holds
      the sub-account: no line moves in or out.
    """

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="sub_accounts")
    name = models.CharField(max_length=120)
    kind = models.CharField(
        max_length=16, choices=SubAccountKind.choices, default=SubAccountKind.STANDARD
    )
    status = models.CharField(
        max_length=20, choices=SubAccountStatus.choices, default=SubAccountStatus.ACTIVE
    )
    contact_name = models.CharField(max_length=120, blank=True)
    contact_email = models.EmailField(max_length=254, blank=True)
    contact_phone = models.CharField(max_length=32, blank=True)
    internal_reference = models.CharField(max_length=120, blank=True)
    notes = models.TextField(blank=True)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_sources"
    )
    lock_reason = models.CharField(max_length=200, blank=True)
    purge_after = models.DateTimeField(null=True, blank=True)
    line_count = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SubAccountQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                "partner",
                Lower("name"),
                condition=~Q(status=SubAccountStatus.DELETED),
                name="subaccount_name_ci_unique_per_partner",
            ),
            models.UniqueConstraint(
                fields=["partner"],
                condition=Q(kind=SubAccountKind.AVAILABLE),
                name="one_available_pool_per_partner",
            ),
            models.CheckConstraint(condition=Q(line_count__gte=0), name="subaccount_count_nonneg"),
        ]
        indexes = [
            models.Index("partner", Lower("name"), name="subaccount_partner_lname"),
            models.Index(fields=["partner", "status"], name="subaccount_partner_status"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_available_pool(self) -> bool:
        return self.kind == SubAccountKind.AVAILABLE

    @property
    def display_name(self) -> str:
        return "Available" if self.is_available_pool else self.name
