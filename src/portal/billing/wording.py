"""How prices read in the words of invoice items: with their currency's decimals (phone
numbers read through :mod:`portal.core.phone`'s ``display_number``)."""

from __future__ import annotations

from decimal import Decimal

from portal.billing.money import quantize


def price_text(amount: Decimal, currency: str) -> str:
    return f"{quantize(amount, currency):f}"
