"""How prices read in the words of invoice items: with their currency's decimals (phone
numbers read through :mod:`portal.core.phone`'s ``display_number``)."""

from __future__ import annotations

from portal.billing.money import plain_amount

price_text = plain_amount  # an item's words show a price as a plain amount
