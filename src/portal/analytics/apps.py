from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "portal.analytics"
    label = "analytics"

    def ready(self) -> None:
        # A line's limit changes in the lines app, which cannot import analytics (analytics
        # reads lines): it announces the change, and the days it can re-judge are judged
        # again in the same transaction.
        from portal.analytics.rollups import line_days_rejudge
        from portal.lines.limits import line_limits_changed

        def rejudge(sender, *, partner_id, line_ids, at, **kwargs) -> None:
            line_days_rejudge(partner_id=partner_id, line_ids=line_ids, since=at)

        line_limits_changed.connect(rejudge, weak=False, dispatch_uid="analytics.line_days_rejudge")
