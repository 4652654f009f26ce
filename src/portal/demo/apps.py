from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo: its data (seed.py) and ``portal demo``, on the top floor: it may use every
    app, and none uses it."""

    name = "portal.demo"
    label = "demo"
