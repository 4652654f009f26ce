from django.urls import path

from portal.partners import views

app_name = "partners"
urlpatterns = [
    path("sub-accounts/", views.sub_account_list, name="sub_account_list"),
    path("sub-accounts/new/", views.sub_account_create, name="sub_account_create"),
    path("sub-accounts/options/", views.sub_account_options, name="sub_account_options"),
    path("sub-accounts/check-name/", views.sub_account_name_check, name="sub_account_name_check"),
    path("sub-accounts/<int:sub_account_id>/", views.sub_account_detail, name="sub_account_detail"),
    path(
        "sub-accounts/<int:sub_account_id>/edit/", views.sub_account_edit, name="sub_account_edit"
    ),
]
