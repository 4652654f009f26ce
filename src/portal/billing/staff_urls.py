"""Staff pages of one partner's billing, mounted under /staff/partners/<slug>/billing/
by ``portal.staff.urls`` (so they sit in the ``staff`` namespace, not among the
partner pages that ask staff to choose a partner first)."""

from django.urls import path

from portal.billing import staff_views

urlpatterns = [
    path("", staff_views.partner_billing, name="partner_billing"),
    path("settings/", staff_views.settings_update, name="partner_billing_settings"),
    path("discounts/", staff_views.discount_grant, name="partner_billing_discount_grant"),
    path(
        "discounts/<int:discount_id>/remove/",
        staff_views.discount_remove,
        name="partner_billing_discount_remove",
    ),
    path("credits/", staff_views.credit_grant, name="partner_billing_credit_grant"),
    path(
        "sub-account-options/",
        staff_views.sub_account_options,
        name="partner_billing_sub_account_options",
    ),
    path(
        "invoices/<int:invoice_id>/finalize/",
        staff_views.invoice_finalize,
        name="partner_billing_invoice_finalize",
    ),
]
