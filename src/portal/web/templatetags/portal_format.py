"""The page layer's formats, loaded into every template (``TEMPLATES`` builtins).

``{{ instant|partner_time }}``: in the timezone ``portal_view`` activated for the
request (the partner's; UTC on pages with no partner), saying which: "5 Dec 2026,
16:43 EST". ``{{ instant|partner_time:partner.timezone }}`` names the zone itself, for
staff pages about one partner and invoices (their snapshotted zone).
``partner_time_seconds`` adds the seconds (the audit log).

``{{ number|phone }}``: "+1 312 555 2001", an E.164 number grouped as people read it
(``core.phone.display_number``), kept on one line.

``{{ amount|money:currency }}``: "14,800.00 USD", the currency's minor units
(``billing.money.format_money``). ``{{ amount|amount:currency }}`` leaves out the code,
for tables whose heading names the currency.

Each filter calls the one function every other output (PDFs, emails, CSV-free
messages) calls, so a page and its PDF cannot disagree.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django import template
from django.utils import timezone

from portal.billing.money import format_amount, format_money
from portal.core.localtime import format_local
from portal.core.phone import display_number

register = template.Library()


def _zone_name(tz: str | None) -> str:
    return tz or str(timezone.get_current_timezone())


@register.filter
def partner_time(instant: dt.datetime | None, tz: str | None = None) -> str:
    """``instant`` in ``tz`` (default: the request's partner's zone) with the zone's name."""
    if not instant:
        return ""
    return format_local(instant, _zone_name(tz))


@register.filter
def partner_time_seconds(instant: dt.datetime | None, tz: str | None = None) -> str:
    if not instant:
        return ""
    return format_local(instant, _zone_name(tz), seconds=True)


@register.filter
def money(value: Decimal | int | str | None, currency: str) -> str:
    """``value`` with thousands separators, the currency's minor units and its code."""
    if value is None or value == "":
        return ""
    return format_money(Decimal(value), currency)


@register.filter
def amount(value: Decimal | int | str | None, currency: str) -> str:
    """As :func:`money` without the code."""
    if value is None or value == "":
        return ""
    return format_amount(Decimal(value), currency)


@register.filter
def phone(number: str | None) -> str:
    """An E.164 number as people read it, with no line break inside it."""
    if not number:
        return ""
    return display_number(number).replace(" ", "\u00a0")
