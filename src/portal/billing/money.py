"""Money arithmetic: Decimal amounts rounded half-up to the currency's minor unit.

Pure functions: no database, no clock. Totals are sums of already-rounded items.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

# ISO 4217 currencies whose minor unit is not 2 digits; every other code uses 2.
_MINOR_UNITS = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    "CLF": 4,
    "UYW": 4,
}


def minor_units(currency: str) -> int:
    """Digits after the decimal point for ``currency`` (JPY 0, USD 2, KWD 3)."""
    return _MINOR_UNITS.get(currency.upper(), 2)


def quantum(currency: str) -> Decimal:
    """The smallest amount of ``currency``: ``Decimal("0.01")`` for USD, ``1`` for JPY."""
    return Decimal(1).scaleb(-minor_units(currency))


def quantize(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded half-up (away from zero on .5) to the currency's minor unit.

    A result of zero is always ``+0``: ``-0.001`` USD gives ``0.00``, never the
    ``-0.00`` that Decimal would otherwise print on an invoice or in a CSV.
    """
    return _unsigned_zero(amount.quantize(quantum(currency), rounding=ROUND_HALF_UP))


def plain_amount(amount: Decimal, currency: str) -> str:
    """``amount`` in the currency's decimals as a plain number: ``-25.00``, no separators
    and no symbol (the API's money strings, CSV cells, a form's value, an item's words).
    A CSV writes it as is: it is a number the portal computed, and ``csv_safe`` would
    quote its minus."""
    return f"{quantize(amount, currency):f}"


def _unsigned_zero(amount: Decimal) -> Decimal:
    # Decimal keeps the sign of zero (-0.00 == 0, but str() shows the minus).
    return amount.copy_abs() if amount.is_zero() else amount


MINUS = "\u2212"


@lru_cache(maxsize=4096)  # an invoice repeats a few amounts on thousands of items
def format_amount(amount: Decimal, currency: str) -> str:
    """``amount`` for reading: rounded to the currency's minor units, with thousands
    separators and a real minus sign: ``1,234.50`` (USD), ``1,235`` (JPY), ``−25.00``.
    The one money format of pages, PDFs and emails (CSV and the API keep plain numbers)."""
    rounded = quantize(amount, currency)
    text = f"{rounded:,.{minor_units(currency)}f}"  # quantize never gives −0
    return MINUS + text[1:] if text.startswith("-") else text


def format_money(amount: Decimal, currency: str) -> str:
    """:func:`format_amount` with the currency's code: ``14,800.00 USD``, ``1,235 JPY``."""
    return f"{format_amount(amount, currency)} {currency.upper()}"


def split_largest_remainder(total: Decimal, weights: list[Decimal], currency: str) -> list[Decimal]:
    """Split ``total`` (already rounded) in proportion to ``weights`` so the parts add
    up to ``total`` exactly: each part is rounded down to the minor unit, then the
    units left over go one each to the parts with the largest remainders (ties to
    the earlier part). Zero or empty weights give all-zero parts.

    ``total`` must already be a whole number of minor units and the weights must
    not be negative: either mistake would make the parts silently miss the total,
    so both raise ``ValueError``.
    """
    q = quantum(currency)
    if any(w < 0 for w in weights):
        raise ValueError("split_largest_remainder needs non-negative weights")
    if total != total.quantize(q, rounding=ROUND_HALF_UP):
        raise ValueError(f"{total} is not a whole number of {currency} minor units")
    weight_sum = sum(weights, Decimal(0))
    if not weights:
        return []
    if weight_sum == 0:
        return [Decimal(0).quantize(q) for _ in weights]
    sign = -1 if total < 0 else 1
    units = int(abs(total) / q)
    exact = [Decimal(units) * w / weight_sum for w in weights]
    floors = [int(x) for x in exact]  # weights are non-negative: int() floors
    left = units - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return [_unsigned_zero((sign * Decimal(f) * q).quantize(q)) for f in floors]
