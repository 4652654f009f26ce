"""Cleaning free text that people type into names and details."""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from portal.core.errors import Invalid

# Bidi overrides and isolates can make a name display differently from what it is.
_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def clean_text(
    value: str | None,
    *,
    field: str,
    label: str,
    max_length: int,
    required: bool = False,
    multiline: bool = False,
) -> str:
    """Trim ``value`` and check its length and characters; raise :class:`Invalid`."""
    text = (value or "").strip()
    if required and not text:
        raise Invalid(f"{label} is required.", field=field)
    if len(text) > max_length:
        raise Invalid(
            f"{label} is {len(text)} characters long; the most is {max_length}.", field=field
        )
    for ch in text:
        if multiline and ch in "\n\r\t":
            continue
        if ch in _BIDI_CONTROLS or unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co"}:
            raise Invalid(f"{label} contains a control character (U+{ord(ch):04X}).", field=field)
    return text


def clean_email(value: str | None, *, field: str, label: str, required: bool = False) -> str:
    text = clean_text(value, field=field, label=label, max_length=254, required=required)
    if not text:
        return ""
    try:
        validate_email(text)
    except ValidationError:
        raise Invalid(f"{label}: {text!r} is not an email address.", field=field) from None
    return text.lower()


def can_be_stored(text: str) -> bool:
    """False when ``text`` holds a NUL, which no stored text contains.

    PostgreSQL refuses NUL in any text parameter, so a filter on such a value must
    answer "nothing matches" without reaching the database.
    """
    return "\x00" not in text
