from django.urls import path

from portal.audit import views

app_name = "audit"
urlpatterns = [
    path("audit/", views.audit_log, name="audit_log"),
    path("audit/sub-account-options/", views.sub_account_options, name="sub_account_options"),
]
