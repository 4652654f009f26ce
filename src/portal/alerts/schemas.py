"""API shapes for alert rules and alerts (domain §8.4).

Thresholds and values are fractions for the rates and usage (0.8 = 80 %) and counts
otherwise. In, a threshold is a JSON number or a decimal string ("0.8"); out, a number.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from ninja import Schema
from pydantic import ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr

MetricName = Literal[
    "volume_limit_usage", "response_rate", "over_pressured_line_days", "available_lines"
]
ComparatorName = Literal["above", "below"]
# Strict: lax parsing would read ``true`` as 1 and "7" as a window.
NumberIn = StrictStr | StrictInt | StrictFloat


class AlertRuleIn(Schema):
    """``metric`` ``comparator`` ``threshold`` over the last ``window_days`` days (1 to
    90, default 7, today included; unused by ``available_lines``, which counts the lines
    in Available now), for ``sub_account_id`` or, when left out, each active
    sub-account separately (``available_lines`` is partner-wide: never one)."""

    model_config = ConfigDict(extra="forbid")

    metric: MetricName
    comparator: ComparatorName
    threshold: NumberIn
    window_days: StrictInt = 7
    sub_account_id: StrictInt | None = None
    enabled: StrictBool = True


class AlertRulePatchIn(Schema):
    """Any of the rule's fields; the rule that results is checked whole. A new condition
    (or ``enabled: false``) resolves the rule's firing alerts."""

    model_config = ConfigDict(extra="forbid")

    metric: MetricName | None = None
    comparator: ComparatorName | None = None
    threshold: NumberIn | None = None
    window_days: StrictInt | None = None
    sub_account_id: StrictInt | None = None
    enabled: StrictBool | None = None


class AlertRuleOut(Schema):
    id: int
    metric: str
    comparator: str
    threshold: int | float
    window_days: int
    sub_account_id: int | None
    enabled: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class AlertRuleListOut(Schema):
    items: list[AlertRuleOut]
    count: int


class AlertOut(Schema):
    """One alert: ``value`` is the figure that made it fire; ``resolved_value`` the one
    that resolved it (null while firing, or when a change to its rule or sub-account
    resolved it: ``resolved_because`` says which)."""

    id: int
    rule_id: int
    sub_account_id: int | None
    metric: str
    comparator: str
    value: int | float
    threshold: int | float
    window_days: int
    status: str
    fired_at: dt.datetime
    resolved_at: dt.datetime | None
    resolved_value: int | float | None
    resolved_because: str


class AlertListOut(Schema):
    items: list[AlertOut]
    count: int
