"""Phone numbers: parse anything plausible, store and compare E.164."""

from __future__ import annotations

import phonenumbers

from portal.core.errors import Invalid


def normalize_e164(raw: str, *, field: str = "number") -> str:
    """Return the E.164 form of ``raw`` or raise :class:`Invalid`.

    Numbers must carry their country code (``+1 415 555 0100``); a bare national
    number is ambiguous for a provider that sells lines in several countries.
    """
    text = (raw or "").strip()
    if not text:
        raise Invalid(f"{field}: a phone number is required.", field=field)
    if len(text) > 32:
        raise Invalid(f"{field}: {text[:32]!r}… is too long to be a phone number.", field=field)
    candidate = text
    if not text.startswith("+"):
        candidate = "+" + text.lstrip("0") if text.isdigit() and len(text) > 10 else text
    # Messages quote the trimmed value (at most 32 characters), never ``raw`` itself,
    # which may carry a megabyte of spaces around it.
    try:
        parsed = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException:
        raise Invalid(
            f"{field}: {text!r} is not a phone number in E.164 form (e.g. +14155550100).",
            field=field,
        ) from None
    if not phonenumbers.is_valid_number(parsed):
        raise Invalid(f"{field}: {text!r} is not a valid phone number.", field=field)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def area_code_of(e164: str) -> str:
    """The area code of a North American number (``+1NPA…``); empty elsewhere."""
    parsed = phonenumbers.parse(e164, None)
    if parsed.country_code == 1:
        return str(parsed.national_number)[:3]
    return ""
