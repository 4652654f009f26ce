"""Rules and alerts in words, as the Alerts page shows them ("Volume limit usage above
80 % over the last 7 days")."""

from __future__ import annotations

from decimal import Decimal

from portal.alerts.models import FRACTION_METRICS, Metric

NBSP = "\u00a0"


def _percent(value: Decimal, places: int | None = None) -> str:
    number = value * 100
    text = f"{number:.{places}f}" if places is not None else format(number.normalize(), "f")
    return f"{text}{NBSP}%"


def threshold_text(metric: str, threshold: Decimal) -> str:
    """A threshold as typed: "80 %", "12.5 %", "3"."""
    if metric in FRACTION_METRICS:
        return _percent(threshold)
    return f"{int(threshold):,}"


def value_text(metric: str, value: Decimal | None) -> str:
    """A figure as the Analytics pages show it: "92.5 %", "14"."""
    if value is None:
        return "—"
    if metric in FRACTION_METRICS:
        return _percent(value, 1)
    return f"{int(value):,}"


def condition_text(metric: str, comparator: str, threshold: Decimal, window_days: int) -> str:
    """ "Volume limit usage above 80 % over the last 7 days"; "Lines in Available below 5"."""
    words = f"{Metric(metric).label} {comparator} {threshold_text(metric, threshold)}"
    if metric == Metric.AVAILABLE_LINES:
        return words
    return f"{words} today" if window_days == 1 else f"{words} over the last {window_days} days"
