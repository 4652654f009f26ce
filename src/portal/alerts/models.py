"""Alert rules, the alerts they raise, and when each partner's rules were last evaluated.

A rule watches one analytics figure (domain §8.4) over the last ``window_days``
partner-local days up to today, for one sub-account or for each active sub-account
separately (``available_lines`` is partner-wide: the lines in Available now). The worker
evaluates a partner's rules after each ingestion batch and every ten minutes
(``alerts.evaluation``): an :class:`Alert` fires when its rule's condition turns true
for a sub-account and resolves when it turns false, so while the condition holds there
is exactly one firing alert for the pair, which the database enforces.

Every index leads with the partner, so the schema stays distributable by partner.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from portal.core.tenancy import TenantQuerySet


class Metric(models.TextChoices):
    VOLUME_LIMIT_USAGE = "volume_limit_usage", "Volume limit usage"
    RESPONSE_RATE = "response_rate", "Response rate"
    OVER_PRESSURED_LINE_DAYS = "over_pressured_line_days", "Over-pressured line-days"
    AVAILABLE_LINES = "available_lines", "Lines in Available"


# Metrics whose threshold and value are fractions (0.5 = 50 %); the others are counts.
FRACTION_METRICS = frozenset({Metric.VOLUME_LIMIT_USAGE, Metric.RESPONSE_RATE})
# Metrics of the whole partner, never of one sub-account.
PARTNER_METRICS = frozenset({Metric.AVAILABLE_LINES})


class Comparator(models.TextChoices):
    ABOVE = "above", "above"
    BELOW = "below", "below"


class AlertRule(models.Model):
    """A condition on one figure that raises alerts: ``metric`` ``comparator``
    ``threshold`` over the last ``window_days`` days.

    Invariants:
    - ``threshold`` is a fraction with at most 4 decimals for ``FRACTION_METRICS``
      (0 to 1 for the response rate, 0 to 10 for usage) and a whole count otherwise;
    - ``sub_account`` (null: each active sub-account separately) belongs to ``partner``,
      was active and not Available when it was chosen, and is null for
      ``PARTNER_METRICS``;
    - a rule is never deleted, only marked ``deleted_at`` (its alerts keep naming it);
      a deleted or disabled rule has no firing alert and is not evaluated;
    - written only by ``alerts.services`` (one audit event per change).
    """

    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    metric = models.CharField(max_length=32, choices=Metric.choices)
    comparator = models.CharField(max_length=8, choices=Comparator.choices)
    threshold = models.DecimalField(max_digits=14, decimal_places=4)
    window_days = models.PositiveSmallIntegerField()
    sub_account = models.ForeignKey(
        "partners.SubAccount",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        null=True,
        blank=True,
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(metric__in=Metric.values), name="alert_rule_metric_known"
            ),
            models.CheckConstraint(
                condition=Q(comparator__in=Comparator.values), name="alert_rule_comparator_known"
            ),
            models.CheckConstraint(
                condition=Q(window_days__gte=1, window_days__lte=90),
                name="alert_rule_window_range",
            ),
            models.CheckConstraint(
                condition=Q(threshold__gte=0), name="alert_rule_threshold_not_negative"
            ),
            models.CheckConstraint(
                condition=~Q(metric__in=sorted(PARTNER_METRICS)) | Q(sub_account__isnull=True),
                name="alert_rule_partner_metric_has_no_sub_account",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "id"], name="alert_rule_partner"),
        ]

    def __str__(self) -> str:
        return f"{self.metric} {self.comparator} {self.threshold}"


class AlertStatus(models.TextChoices):
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


class ResolvedBecause(models.TextChoices):
    CONDITION = "condition", "the condition no longer holds"
    RULE_CHANGED = "rule_changed", "its rule was changed"
    RULE_DISABLED = "rule_disabled", "its rule was paused"
    RULE_DELETED = "rule_deleted", "its rule was deleted"
    SUB_ACCOUNT_GONE = "sub_account_gone", "the sub-account is no longer active"


class Alert(models.Model):
    """One stretch of time during which a rule's condition held for one sub-account (or
    the partner, for partner-wide metrics).

    Invariants:
    - at most one ``firing`` alert per (rule, sub-account), and per rule for partner-wide
      ones (partial unique constraints): an alert fires once when the condition turns
      true and is never repeated while it stays true;
    - ``metric``, ``comparator``, ``threshold`` and ``window_days`` are the rule's when
      it fired, and ``value`` the figure that made it fire (``resolved_value``, the one
      that resolved it; null when it was resolved by a change of its rule or sub-account);
    - ``resolved_at`` is set exactly when ``status`` is ``resolved``, and is never
      before ``fired_at``; a resolved alert never changes again;
    - written only by ``alerts.evaluation`` and the rule services, each firing and each
      resolution with its one audit event (``alert.trigger``, ``alert.resolve``).
    """

    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    rule = models.ForeignKey(
        AlertRule, on_delete=models.PROTECT, related_name="alerts", db_index=False
    )
    sub_account = models.ForeignKey(
        "partners.SubAccount",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        null=True,
        blank=True,
    )
    metric = models.CharField(max_length=32, choices=Metric.choices)
    comparator = models.CharField(max_length=8, choices=Comparator.choices)
    threshold = models.DecimalField(max_digits=14, decimal_places=4)
    window_days = models.PositiveSmallIntegerField()
    value = models.DecimalField(max_digits=18, decimal_places=4)
    status = models.CharField(max_length=8, choices=AlertStatus.choices)
    fired_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_value = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    resolved_because = models.CharField(
        max_length=16, choices=ResolvedBecause.choices, blank=True, default=""
    )

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "rule", "sub_account"],
                condition=Q(status="firing", sub_account__isnull=False),
                name="one_firing_alert_per_rule_and_sub_account",
            ),
            models.UniqueConstraint(
                fields=["partner", "rule"],
                condition=Q(status="firing", sub_account__isnull=True),
                name="one_firing_partner_alert_per_rule",
            ),
            models.CheckConstraint(
                condition=Q(status="firing", resolved_at__isnull=True)
                | Q(status="resolved", resolved_at__isnull=False),
                name="alert_resolved_iff_resolved_at",
            ),
        ]
        indexes = [
            # The list, newest first, whole or by status.
            models.Index(fields=["partner", "-fired_at", "-id"], name="alert_partner_fired"),
            models.Index(
                fields=["partner", "status", "-fired_at", "-id"], name="alert_partner_status"
            ),
            # A rule's alerts (its firing ones are found by the unique constraints' indexes).
            models.Index(fields=["partner", "rule", "-fired_at"], name="alert_partner_rule"),
        ]

    def __str__(self) -> str:
        return f"{self.metric} {self.comparator} {self.threshold}: {self.status}"


class AlertEvaluation(models.Model):
    """How far a partner's rules have been evaluated (one row per partner with rules).

    Invariants:
    - ``requests`` counts the requests for an evaluation that queued a task (a committed
      ingestion batch or rule change while none was pending);
    - ``started_for`` is ``requests`` as it stood when the last evaluation began, written
      and committed before that evaluation reads any figure: an evaluation is pending
      while ``requests > started_for``, and then a new request queues nothing (the
      pending one has not read anything yet, so it will see the request's data), and a
      queued task finding none pending does nothing;
    - ``started_at`` / ``finished_at``: when the last evaluation began and committed.
    """

    partner = models.OneToOneField(
        "partners.Partner", on_delete=models.PROTECT, related_name="+", primary_key=True
    )
    requests = models.BigIntegerField(default=0)
    started_for = models.BigIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        return f"alert evaluation of partner {self.partner_id}"
