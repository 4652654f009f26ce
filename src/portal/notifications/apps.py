from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "portal.notifications"
    label = "notifications"

    def ready(self) -> None:
        # Every audited change passes through portal.core.events; the inbox listens there,
        # as the webhooks' outbox does, so no service has to call it (domain §8.4).
        from portal.core import events
        from portal.notifications.inbox import INBOX

        events.subscribe(INBOX)
