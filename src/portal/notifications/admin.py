from django.contrib import admin

from portal.core.admin_base import ReadOnlyAdmin
from portal.notifications.models import Notification


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("id", "partner", "recipient", "kind", "title", "created_at", "read_at")
    list_filter = ("kind",)
    list_select_related = ("partner", "recipient")
    show_full_result_count = False
