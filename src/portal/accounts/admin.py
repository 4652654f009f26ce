from django.contrib import admin

from portal.accounts.models import ApiKey, Membership, SecurityEvent, User
from portal.core.admin_base import ReadOnlyAdmin


@admin.register(User)
class UserAdmin(ReadOnlyAdmin):
    list_display = ("email", "full_name", "is_staff", "is_active", "last_login")
    search_fields = ("email", "full_name")
    exclude = ("password",)


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ("user", "partner", "role")
    list_filter = ("role",)


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = (
        "name",
        "prefix",
        "partner",
        "role",
        "is_staff",
        "created_at",
        "last_used_at",  # before a key rotation: may still be hashed under the old key
        "revoked_at",
    )
    exclude = ("key_hash",)


@admin.register(SecurityEvent)
class SecurityEventAdmin(ReadOnlyAdmin):
    """Refused requests (401, 403, CSRF): who, where, why."""

    list_display = ("at", "action", "status", "actor_label", "method", "path", "reason", "ip")
    list_filter = ("action", "status")
    search_fields = ("actor_label", "path", "request_id", "ip")
    date_hierarchy = "at"
