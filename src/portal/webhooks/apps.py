from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "portal.webhooks"
    label = "webhooks"

    def ready(self) -> None:
        # Every audited change passes through portal.core.events; the outbox listens
        # there, so no service has to call it (domain §8.3).
        from portal.core import events
        from portal.webhooks.outbox import OUTBOX

        events.subscribe(OUTBOX)
