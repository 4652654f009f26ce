"""What Settings → Partner and ``GET /api/v1/partner`` show: the acting partner's own
settings (domain §2), beside what its provider sets (name, slug, timezone, currency and
the price per line).

The price comes from billing's selectors (the price charged for the current cycle, and
the next cycle's when a change is pending), so a page-level module like ``list_page``
rather than ``selectors``: partners' selectors stay below billing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from portal.accounts.policies import require_partner_area
from portal.billing.drafting import charged_price, price_for_cycle
from portal.billing.periods import cycle_containing
from portal.billing.policies import can_read_billing_summary
from portal.core import clock
from portal.core.principal import Principal
from portal.partners.models import Partner
from portal.partners.selectors import partner_for


@dataclass(frozen=True, slots=True)
class PartnerSettings:
    """The partner and its price. The prices are None for a role that sees no billing
    (viewers, billing policies); ``next_line_price`` is None unless it differs."""

    partner: Partner
    line_price: Decimal | None
    next_line_price: Decimal | None
    next_price_month: dt.date | None


def partner_settings(*, principal: Principal, now: dt.datetime | None = None) -> PartnerSettings:
    """The acting partner (staff: the one they act for) and, for roles that see billing,
    the price per line charged this cycle and the next cycle's when it changes. A
    partner's client has no settings (403)."""
    require_partner_area(principal)
    partner = partner_for(principal)
    if not can_read_billing_summary(principal):
        return PartnerSettings(partner, None, None, None)
    cycle = cycle_containing(now or clock.now(), partner.timezone)
    current = charged_price(partner, cycle)
    upcoming = price_for_cycle(partner, cycle.next())
    if upcoming == current:
        return PartnerSettings(partner, current, None, None)
    return PartnerSettings(partner, current, upcoming, cycle.next().first_day)
