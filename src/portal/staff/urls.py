from django.urls import include, path

from portal.staff import views

app_name = "staff"
urlpatterns = [
    path("", views.staff_home, name="home"),
    path("partners/", views.partner_list, name="partner_list"),
    path("partners/new/", views.partner_create, name="partner_create"),
    # One partner's billing (price, discounts, credits, finalising): billing's pages.
    path("partners/<slug:slug>/billing/", include("portal.billing.staff_urls")),
    path("act-for/", views.act_for, name="act_for"),
    path("act-for/stop/", views.stop_acting, name="stop_acting"),
    path("line-orders/", views.line_orders, name="line_orders"),
    path("inventory/", views.inventory_import, name="inventory_import"),
    path("approvals/", views.approvals, name="approvals"),
    path("approvals/merge/<int:request_id>/", views.merge_approval, name="merge_approval"),
]
