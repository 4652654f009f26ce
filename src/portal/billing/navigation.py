"""Billing's sub-navigation: the pages under Billing a person may open, in one place, so
each of those pages shows the same tabs and a page a role may not open is not offered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.urls import reverse

from portal.billing.policies import (
    can_read_billing_summary,
    can_read_margins,
    can_read_resale_prices,
    can_read_statements,
)
from portal.core.principal import Principal

# (key, label, URL name, who may open it)
TABS: tuple[tuple[str, str, str, Callable[[Principal], bool]], ...] = (
    ("summary", "Current cycle", "billing:summary", can_read_billing_summary),
    ("resale", "Resale prices", "billing:resale_prices", can_read_resale_prices),
    ("statements", "Statements", "billing:statement_list", can_read_statements),
    ("margins", "Margins", "billing:margins", can_read_margins),
)


def billing_tabs(principal: Principal, current: str) -> list[dict[str, Any]]:
    """The tabs ``principal`` may open, ``current`` marked; empty when only one is left
    (a manager sees the summary alone, without a navigation of one)."""
    tabs = [
        {"label": label, "url": reverse(url_name), "current": key == current}
        for key, label, url_name, allowed in TABS
        if allowed(principal)
    ]
    return tabs if len(tabs) > 1 else []
