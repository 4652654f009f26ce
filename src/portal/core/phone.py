"""Phone numbers: parse anything plausible, store and compare E.164."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

from portal.core.errors import Invalid

# What people put between a number's digits: spaces (the no-break ones too), dashes,
# dots, slashes and parentheses.
_SEPARATORS = " \u00a0\u202f-\u2010\u2011\u2012\u2013./()"


def normalize_e164(raw: str, *, field: str = "number", label: str | None = None) -> str:
    """Return the E.164 form of ``raw`` or raise :class:`Invalid` naming ``label``.

    Numbers are written as people write them (``+1 415 555 0100``, ``+1 (415) 555-0100``,
    ``+44 20.7946.0958``, ``0044 20 7946 0958``) but must carry their country code: a bare
    national number is ambiguous for a provider that sells lines in several countries.
    """
    name = label or field.replace("_", " ").capitalize()
    text = (raw or "").strip()
    if not text:
        raise Invalid(f"{name}: a phone number is required.", field=field)
    if len(text) > 32:
        raise Invalid(f"{name}: {text[:32]!r}… is too long to be a phone number.", field=field)
    digits = "".join(ch for ch in text if ch not in _SEPARATORS)
    candidate = text
    if digits.startswith("00") and digits[2:].isdigit():
        candidate = "+" + digits[2:]  # the international call prefix for "+"
    elif not text.startswith("+") and digits.isdigit() and len(digits) > 10:
        candidate = "+" + digits.lstrip("0")
    # Messages quote the trimmed value (at most 32 characters), never ``raw`` itself,
    # which may carry a megabyte of spaces around it.
    example = "with its country code, e.g. +1 415 555 0100"
    try:
        parsed = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException:
        raise Invalid(f"{name}: {text!r} is not a phone number {example}.", field=field) from None
    if parsed.extension:
        raise Invalid(f"{name}: {text!r} has an extension; give the number alone.", field=field)
    if not phonenumbers.is_valid_number(parsed):
        raise Invalid(f"{name}: {text!r} is not a valid phone number {example}.", field=field)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def area_code_of(e164: str) -> str:
    """The area code of a North American number (``+1NPA…``); empty elsewhere."""
    parsed = phonenumbers.parse(e164, None)
    if parsed.country_code == 1:
        return str(parsed.national_number)[:3]
    return ""


# --- how a number reads -----------------------------------------------------------------


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
