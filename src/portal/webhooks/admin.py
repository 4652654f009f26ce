from django.contrib import admin

from portal.core.admin_base import ReadOnlyAdmin
from portal.webhooks.models import WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    list_display = ("url", "partner", "enabled", "failing_since", "created_at")
    list_filter = ("enabled",)
    search_fields = ("url", "description")
    list_select_related = ("partner",)
    exclude = ("secret", "previous_secret")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("pk", "partner", "endpoint", "event_type", "status", "attempts", "created_at")
    list_filter = ("status",)
    list_select_related = ("partner", "endpoint")
    show_full_result_count = False
    exclude = ("event",)
