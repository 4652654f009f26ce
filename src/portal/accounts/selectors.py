"""Scoped reads of a partner's users and API keys."""

from __future__ import annotations

from django.db.models import QuerySet

from portal.accounts.models import ApiKey, Membership
from portal.core.principal import Principal


def membership_list(*, principal: Principal) -> QuerySet[Membership]:
    """The users of the principal's partner with their roles, by email."""
    return (
        Membership.objects.visible_to(principal)
        .select_related("user")
        .order_by("user__email", "pk")
    )


def api_key_list(*, principal: Principal) -> QuerySet[ApiKey]:
    """The partner's API keys, newest first (staff keys are never listed here)."""
    return (
        ApiKey.objects.visible_to(principal)
        .filter(is_staff=False)
        .defer("key_hash")
        .order_by("-created_at", "-pk")
    )


def api_key_get(*, principal: Principal, key_id: int) -> ApiKey:
    return api_key_list(principal=principal).get_visible(principal, key_id, what="API key")
