from django.contrib import admin

from portal.alerts.models import Alert, AlertRule
from portal.core.admin_base import ReadOnlyAdmin


@admin.register(AlertRule)
class AlertRuleAdmin(ReadOnlyAdmin):
    list_display = ("id", "partner", "metric", "comparator", "threshold", "window_days", "enabled")
    list_filter = ("metric", "enabled")
    list_select_related = ("partner",)


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("id", "partner", "rule", "sub_account", "metric", "value", "status", "fired_at")
    list_filter = ("status", "metric")
    list_select_related = ("partner", "sub_account")
    show_full_result_count = False
