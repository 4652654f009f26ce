"""The alert rule form: a person types a percentage where the API takes a fraction."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms

from portal.alerts.models import FRACTION_METRICS, AlertRule, Comparator, Metric
from portal.alerts.services import (
    DEFAULT_WINDOW_DAYS,
    MAX_THRESHOLD,
    MAX_WINDOW_DAYS,
    MIN_WINDOW_DAYS,
)
from portal.partners.choices import SubAccountChoiceMixin

EACH = "Each sub-account"


def as_percent(value: Decimal) -> str:
    """0.8 → "80", 0.125 → "12.5": a fraction as the form shows it."""
    return format((value * 100).normalize(), "f")


def _bare(typed: str) -> str:
    """ "80 %", "1,000" → "80", "1000"."""
    return typed.strip().rstrip("%").strip().replace(",", "")


class RuleForm(SubAccountChoiceMixin):
    metric = forms.ChoiceField(label="Metric", choices=Metric.choices)
    comparator = forms.ChoiceField(
        label="Condition", choices=[(c.value, c.value.capitalize()) for c in Comparator]
    )
    threshold = forms.CharField(
        label="Threshold",
        max_length=20,
        help_text=(
            "A percentage for volume limit usage and response rate (80 means 80 %); "
            "a number of line-days or lines for the others."
        ),
    )
    window_days = forms.IntegerField(
        label="Window (days)",
        min_value=MIN_WINDOW_DAYS,
        max_value=MAX_WINDOW_DAYS,
        initial=DEFAULT_WINDOW_DAYS,
        help_text="The last so many days, today included (not used for lines in Available).",
    )
    sub_account = forms.CharField(label="Sub-account", required=False)
    enabled = forms.BooleanField(label="Check this rule", required=False, initial=True)

    field_order = ["metric", "comparator", "threshold", "window_days", "sub_account", "enabled"]

    def setup_choices(self, choices: list[tuple[str, str]] | None) -> None:
        if choices is not None:
            self.fields["sub_account"] = forms.ChoiceField(
                label="Sub-account", choices=[("", EACH), *choices[1:]], required=False
            )
        else:
            super().setup_choices(None)
            self.fields["sub_account"].required = False
            self.fields["sub_account"].help_text += f" Leave it empty for {EACH.lower()}."

    @classmethod
    def initial_of(cls, rule: AlertRule) -> dict[str, Any]:
        threshold = rule.threshold
        if rule.metric in FRACTION_METRICS:
            shown = as_percent(threshold)
        else:
            shown = format(threshold.normalize(), "f")
        return {
            "metric": rule.metric,
            "comparator": rule.comparator,
            "threshold": shown,
            "window_days": rule.window_days,
            "sub_account": "" if rule.sub_account_id is None else str(rule.sub_account_id),
            "enabled": rule.enabled,
        }

    def clean(self) -> dict[str, Any]:
        """A percentage checked in a person's words (the service checks the fraction)."""
        data = super().clean()
        metric, typed = data.get("metric"), data.get("threshold")
        if metric in FRACTION_METRICS and typed is not None:
            most = MAX_THRESHOLD[Metric(metric)] * 100
            try:
                percent = Decimal(_bare(typed))
            except (InvalidOperation, ValueError):
                self.add_error("threshold", "Enter a percentage such as 80.")
                return data
            if not percent.is_finite() or not 0 <= percent <= most:
                self.add_error("threshold", f"Enter a percentage from 0 to {most:,f}.")
            elif percent != percent.quantize(Decimal("0.01")):
                self.add_error("threshold", "Enter a percentage with at most 2 decimals.")
        return data

    def threshold_value(self) -> str:
        """The threshold as the service takes it: a fraction for the rates (the percentage
        typed ÷ 100), the number typed otherwise. Left as text when it is not a number,
        for the service to refuse in its own words."""
        text = _bare(self.cleaned_data["threshold"])
        if self.cleaned_data["metric"] not in FRACTION_METRICS:
            return text
        try:
            return format((Decimal(text) / 100).normalize(), "f")
        except (InvalidOperation, ValueError):
            return text
