from django.urls import path

from portal.alerts import views

app_name = "alerts"
urlpatterns = [
    path("analytics/alerts/", views.alert_list, name="alert_list"),
    path("analytics/alerts/rules/new/", views.rule_create, name="rule_create"),
    path("analytics/alerts/rules/<int:rule_id>/edit/", views.rule_edit, name="rule_edit"),
    path("analytics/alerts/rules/<int:rule_id>/delete/", views.rule_delete, name="rule_delete"),
]
