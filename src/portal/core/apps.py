from django.apps import AppConfig
from django.db.backends.signals import connection_created


class CoreConfig(AppConfig):
    name = "portal.core"
    label = "core"

    def ready(self) -> None:
        from portal.core.sqlite import install_unicode_lower

        connection_created.connect(install_unicode_lower, dispatch_uid="portal_unicode_lower")
