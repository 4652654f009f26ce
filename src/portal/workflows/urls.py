from django.urls import path

from portal.workflows import views

app_name = "workflows"
urlpatterns = [
    path("requests/", views.request_list, name="request_list"),
    path(
        "requests/sub-account-options/",
        views.sub_account_options,
        name="sub_account_options",
    ),
    path("requests/merge/<int:request_id>/", views.merge_detail, name="merge_detail"),
    path(
        "requests/merge/<int:request_id>/<str:action>/",
        views.merge_action,
        name="merge_action",
    ),
    path("requests/deletion/<int:request_id>/", views.deletion_detail, name="deletion_detail"),
    path(
        "requests/deletion/<int:request_id>/<str:action>/",
        views.deletion_action,
        name="deletion_action",
    ),
    path("sub-accounts/<int:sub_account_id>/request-merge/", views.merge_new, name="merge_new"),
    path(
        "sub-accounts/<int:sub_account_id>/request-deletion/",
        views.deletion_new,
        name="deletion_new",
    ),
]
