from django.contrib import admin

from portal.core.admin_base import ReadOnlyAdmin
from portal.lines.models import AssignmentPeriod, InventoryNumber, Line, LineOrder


@admin.register(Line)
class LineAdmin(ReadOnlyAdmin):
    list_display = ("number", "partner", "sub_account", "status", "label", "activated_at")
    list_filter = ("status",)
    search_fields = ("number", "label", "user_name", "user_email")
    list_select_related = ("partner", "sub_account")
    show_full_result_count = False


@admin.register(AssignmentPeriod)
class AssignmentPeriodAdmin(ReadOnlyAdmin):
    list_display = ("line", "sub_account", "start", "end")
    list_select_related = ("line", "sub_account")
    show_full_result_count = False


@admin.register(InventoryNumber)
class InventoryNumberAdmin(ReadOnlyAdmin):
    list_display = ("number", "area_code", "status", "partner", "imported_at", "allocated_at")
    list_filter = ("status",)
    search_fields = ("number", "area_code")


@admin.register(LineOrder)
class LineOrderAdmin(ReadOnlyAdmin):
    list_display = (
        "pk",
        "partner",
        "quantity",
        "area_code",
        "status",
        "fulfilled_count",
        "created_at",
    )
    list_filter = ("status",)
