from django.urls import path

from portal.partners import views, workspace

app_name = "partners"
urlpatterns = [
    path("sub-accounts/", views.sub_account_list, name="sub_account_list"),
    path("sub-accounts/new/", views.sub_account_create, name="sub_account_create"),
    path("sub-accounts/options/", views.sub_account_options, name="sub_account_options"),
    path("sub-accounts/check-name/", views.sub_account_name_check, name="sub_account_name_check"),
    # The workspace: Lines (the default), Billing, Analytics, Requests, Audit log.
    path(
        "sub-accounts/<int:sub_account_id>/",
        workspace.sub_account_detail,
        name="sub_account_detail",
    ),
    path(
        "sub-accounts/<int:sub_account_id>/billing/",
        workspace.sub_account_billing,
        name="sub_account_billing",
    ),
    path(
        "sub-accounts/<int:sub_account_id>/analytics/",
        workspace.sub_account_analytics,
        name="sub_account_analytics",
    ),
    path(
        "sub-accounts/<int:sub_account_id>/requests/",
        workspace.sub_account_requests,
        name="sub_account_requests",
    ),
    path(
        "sub-accounts/<int:sub_account_id>/audit/",
        workspace.sub_account_audit,
        name="sub_account_audit",
    ),
    path(
        "sub-accounts/<int:sub_account_id>/edit/", views.sub_account_edit, name="sub_account_edit"
    ),
]
