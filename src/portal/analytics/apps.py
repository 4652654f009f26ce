from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "portal.analytics"
    label = "analytics"
