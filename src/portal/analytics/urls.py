from django.urls import path

from portal.analytics import views

app_name = "analytics"
urlpatterns = [
    path("analytics/", views.analytics_overview, name="overview"),
    path("analytics/sub-accounts.csv", views.comparison_csv, name="comparison_csv"),
    path(
        "analytics/capacity/<int:sub_account_id>/move/",
        views.capacity_move,
        name="capacity_move",
    ),
    path(
        "analytics/sub-accounts/<int:sub_account_id>/",
        views.sub_account_analytics,
        name="sub_account",
    ),
    path(
        "analytics/sub-accounts/<int:sub_account_id>/lines.csv",
        views.line_usage_csv,
        name="line_usage_csv",
    ),
]
