from django.contrib import admin

from portal.core.admin_base import ReadOnlyAdmin
from portal.partners.models import Partner, SubAccount


@admin.register(Partner)
class PartnerAdmin(ReadOnlyAdmin):
    list_display = (
        "name",
        "slug",
        "display_name",
        "currency",
        "timezone",
        "line_price",
        "self_service_requests",
        "created_at",
    )
    search_fields = ("name", "slug")


@admin.register(SubAccount)
class SubAccountAdmin(ReadOnlyAdmin):
    list_display = ("name", "partner", "kind", "status", "line_count", "created_at")
    list_filter = ("kind", "status")
    search_fields = ("name", "partner__name", "internal_reference")
    list_select_related = ("partner",)
