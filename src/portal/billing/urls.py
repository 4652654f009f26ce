from django.urls import path

from portal.billing import views

app_name = "billing"
urlpatterns = [
    path("billing/", views.billing_summary, name="summary"),
    path("invoices/", views.invoice_list, name="invoice_list"),
    path("invoices/<int:invoice_id>/", views.invoice_detail, name="invoice_detail"),
    path(
        "invoices/<int:invoice_id>/sections/<int:sub_account_id>/",
        views.invoice_section,
        name="invoice_section",
    ),
    path("invoices/<int:invoice_id>/csv", views.invoice_csv, name="invoice_csv"),
    path("invoices/<int:invoice_id>/pdf", views.invoice_pdf, name="invoice_pdf"),
]
