from django.urls import path

from portal.billing import margin_views, resale_views, statement_views, views

app_name = "billing"
urlpatterns = [
    path("billing/", views.billing_summary, name="summary"),
    path("billing/resale/", resale_views.resale_prices, name="resale_prices"),
    path(
        "billing/resale/<int:sub_account_id>/",
        resale_views.resale_price_row,
        name="resale_price_row",
    ),
    path("billing/margins/", margin_views.margins_page, name="margins"),
    path("billing/margins/csv", margin_views.margins_csv, name="margins_csv"),
    path("invoices/", views.invoice_list, name="invoice_list"),
    path("invoices/<int:invoice_id>/", views.invoice_detail, name="invoice_detail"),
    path(
        "invoices/<int:invoice_id>/sections/<int:sub_account_id>/",
        views.invoice_section,
        name="invoice_section",
    ),
    path("invoices/<int:invoice_id>/csv", views.invoice_csv, name="invoice_csv"),
    path("invoices/<int:invoice_id>/pdf", views.invoice_pdf, name="invoice_pdf"),
    path("billing/statements/", statement_views.statement_list_page, name="statement_list"),
    path(
        "billing/statements/<int:statement_id>/",
        statement_views.statement_detail,
        name="statement_detail",
    ),
    path(
        "billing/statements/<int:statement_id>/csv",
        statement_views.statement_csv,
        name="statement_csv",
    ),
    path(
        "billing/statements/<int:statement_id>/pdf",
        statement_views.statement_pdf,
        name="statement_pdf",
    ),
]
