from django.contrib import admin

from portal.billing.models import Invoice, InvoiceItem, InvoiceSection
from portal.core.admin_base import ReadOnlyAdmin


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ("number", "partner", "period_month", "status", "total", "currency", "issued_at")
    list_filter = ("status",)
    search_fields = ("partner__name", "partner__slug")
    list_select_related = ("partner",)
    show_full_result_count = False


@admin.register(InvoiceSection)
class InvoiceSectionAdmin(ReadOnlyAdmin):
    list_display = ("name", "invoice", "line_quantity", "recurring", "prorations", "total")
    list_select_related = ("invoice",)
    show_full_result_count = False


@admin.register(InvoiceItem)
class InvoiceItemAdmin(ReadOnlyAdmin):
    list_display = ("description", "kind", "amount", "section")
    list_filter = ("kind",)
    list_select_related = ("section",)
    show_full_result_count = False
