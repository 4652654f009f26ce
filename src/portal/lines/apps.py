from django.apps import AppConfig


class LinesConfig(AppConfig):
    name = "portal.lines"
    label = "lines"
