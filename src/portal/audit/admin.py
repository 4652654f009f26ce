from django.contrib import admin

from portal.audit.models import AuditEvent
from portal.core.admin_base import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "partner", "actor_label", "action", "object_type", "object_id")
    list_filter = ("action", "object_type")
    search_fields = ("actor_label", "object_id", "request_id")
    date_hierarchy = "at"
    show_full_result_count = False
