from django.contrib import admin

from portal.analytics.models import Conversation, DailyLineRollup, MessageEvent
from portal.core.admin_base import ReadOnlyAdmin


@admin.register(MessageEvent)
class MessageEventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "partner", "line", "sub_account", "direction", "occurred_at")
    list_filter = ("direction",)
    search_fields = ("event_id",)
    list_select_related = ("partner", "line", "sub_account")
    show_full_result_count = False


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = ("line", "sub_account", "kind", "started_at", "local_day", "responded")
    list_filter = ("kind", "responded")
    list_select_related = ("line", "sub_account")
    show_full_result_count = False


@admin.register(DailyLineRollup)
class DailyLineRollupAdmin(ReadOnlyAdmin):
    list_display = (
        "day",
        "line",
        "sub_account",
        "messages_sent",
        "messages_received",
        "new_conversations",
        "responded_conversations",
        "inbound_conversations",
    )
    list_select_related = ("line", "sub_account")
    show_full_result_count = False
