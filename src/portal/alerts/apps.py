from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "portal.alerts"
    label = "alerts"

    def ready(self) -> None:
        # Ingestion lives in analytics, which cannot import alerts (alerts reads
        # analytics): it announces each batch, and the partners it touched have their
        # rules evaluated by the worker once the batch has committed.
        from django.db import transaction

        from portal.alerts.evaluation import alert_evaluations_request
        from portal.analytics.ingestion import message_events_ingested

        def evaluate_after(sender, *, partner_ids, **kwargs) -> None:
            ids = list(partner_ids)
            transaction.on_commit(lambda: alert_evaluations_request(ids), robust=True)

        message_events_ingested.connect(
            evaluate_after, weak=False, dispatch_uid="alerts.evaluate_after_ingestion"
        )
