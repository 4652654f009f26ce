"""Partner (the tenant) and SubAccount."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower

from portal.core.tenancy import TenantQuerySet


class Partner(models.Model):
    """A reseller: the tenant every other row belongs to.

    Invariants: slug unique; exactly one sub-account of kind ``available``,
    created with the partner (see ``partner_create``). Name, slug, timezone, currency
    and price are the provider's; the partner's admins change ``display_name``,
    ``self_service_requests``, ``default_daily_limit`` and ``deletion_retention_days``
    (``partner_settings_update``).
    """

    name = models.CharField(max_length=120)
    # The name the reseller shows its own clients (client portal and statements,
    # domain §8.1–8.2); blank means ``name``. Set by the partner's admins in Settings.
    display_name = models.CharField(max_length=120, blank=True, default="")
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

    @property
    def client_facing_name(self) -> str:
        """What the partner's clients see: its display name, or its name when blank."""
        return self.display_name or self.name


class SubAccountKind(models.TextChoices):
    AVAILABLE = "available", "Available pool"
    STANDARD = "standard", "Standard"


class SubAccountStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    MERGED = "merged", "Merged"
    PENDING_DELETION = "pending_deletion", "Pending deletion"
    DELETED = "deleted", "Deleted"


class DeferredJoinQuerySet(TenantQuerySet):
    """Deep pages read their ids from the index first, then only those rows.

    ``qs[offset:offset + limit]`` with a large offset makes the database fetch every
    skipped row from the table only to throw it away. From ``DEFERRED_JOIN_OFFSET``
    on, the slice becomes ``qs.filter(pk__in=qs.values("pk")[offset:offset + limit])``
    (same filters, same order, same rows): the inner query is answered from an index
    that holds the filter and sort columns (an index-only scan on PostgreSQL), and
    only the page's rows are read from the table.
    """

    DEFERRED_JOIN_OFFSET = 500

    def __getitem__(self, k: int | slice) -> Any:
        if (
            isinstance(k, slice)
            and (k.start or 0) >= self.DEFERRED_JOIN_OFFSET
            and k.stop is not None
            and k.step is None
            and self._result_cache is None
            and not self.query.is_sliced
            and not self.query.combinator
            and not self.query.distinct
            and self.query.order_by
        ):
            ids = models.QuerySet.__getitem__(self.values("pk"), k)
            return self.filter(pk__in=ids)
        return super().__getitem__(k)


def _pool_first() -> models.Case:
    """0 for the Available pool, 1 for the others: the lists' first sort key."""
    return models.Case(models.When(kind=SubAccountKind.AVAILABLE, then=0), default=1)


# The columns the lists filter on, after the sort keys of their indexes.
_LISTED = ("id", "status", "kind", "name")


class SubAccountQuerySet(DeferredJoinQuerySet):
    def listed_order(self) -> SubAccountQuerySet:
        """Available first, then by name (the order of index ``subaccount_partner_listed``,
        so a page of a partner's ten thousand sub-accounts is read in order, not sorted)."""
        return self.order_by(_pool_first(), Lower("name"), "id")


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

    # No index of its own: every index of the table leads with the partner.
    partner = models.ForeignKey(
        Partner, on_delete=models.PROTECT, related_name="sub_accounts", db_index=False
    )
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
    # A client of the partner sees the sub-accounts granted to it (core.tenancy).
    tenant_sub_account_field: ClassVar[str] = "pk"

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
        # Every list reads a page in index order, whatever the partner's size: the API's
        # and pickers' order (listed_order), and the Sub-accounts page's sorts by name
        # and by line count (either way; ties by name). The trailing columns (after the
        # sort keys, so they change no order) let a deep page's ids come from the index
        # alone (DeferredJoinQuerySet).
        indexes = [
            models.Index(
                "partner",
                _pool_first(),
                Lower("name"),
                *_LISTED,
                name="subaccount_partner_listed",
            ),
            models.Index("partner", Lower("name"), *_LISTED, name="subaccount_partner_lname_id"),
            models.Index(
                "partner",
                "line_count",
                Lower("name"),
                *_LISTED,
                name="subaccount_partner_lines_asc",
            ),
            models.Index(
                "partner",
                F("line_count").desc(),
                Lower("name"),
                *_LISTED,
                name="subaccount_partner_lines_desc",
            ),
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
