"""How numbers and prices read in the words of invoice items: a phone number grouped as
people read it (:func:`display_number`, and :func:`display_number_fast` for the 100,000
moves of a large invoice), and a price with its currency's decimals.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

import phonenumbers

from portal.billing.money import quantize


def display_number(e164: str) -> str:
    """``+14155550100`` as ``+1 415 555 0100`` for descriptions people read."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    formatted = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return formatted.replace("-", " ")


@lru_cache(maxsize=4096)
def _number_template(block: str, length: int) -> str:
    """How the numbers of one block (the same characters but the last four, and the same
    length) are displayed: :func:`display_number`'s answer for one of them as a format
    string with one ``{}`` per digit; "" when the formatter did more than group digits.

    Numbering plans choose a grouping by the leading digits and the length, never by
    the last four digits, so one formatting serves the whole block (``phonenumbers``
    takes ~30 µs a number: three seconds for the 100,000 moves of a large invoice).
    """
    sample = block + "0" * (length - len(block))
    shown = display_number(sample)
    if [c for c in shown if c.isdigit()] != [c for c in sample if c.isdigit()]:
        return ""
    return "".join("{}" if c.isdigit() else c.replace("{", "{{").replace("}", "}}") for c in shown)


def display_number_fast(e164: str) -> str:
    """:func:`display_number`, exactly, through the template of the number's block."""
    digits = e164[1:]
    if len(e164) > 6 and e164[0] == "+" and digits.isascii() and digits.isdigit():
        # The template has one {} per digit of a number of this length (see above).
        template = _number_template(e164[:-4], len(e164))
        if template:
            return template.format(*digits)
    return display_number(e164)


def price_text(amount: Decimal, currency: str) -> str:
    return f"{quantize(amount, currency):f}"
