"""Cleaning free text that people type into names and details.

Every name, label, contact field, reason and note goes through :func:`clean_text`
before it is stored, so the rules below hold for all stored free text:

* it is trimmed and in Unicode NFC, so "Café" typed with a combining accent and
  "Café" typed precomposed are one name (and clash as duplicates);
* it holds no control character (only multi-line fields keep tab and line breaks);
* it holds no invisible character that makes text look like something else: bidi
  embeddings, overrides, isolates and marks (U+202A–202E, U+2066–2069, U+200E/F,
  U+061C), zero-width spaces and joiners (U+200B–200D, U+2060), the BOM, tag
  characters (all "format" characters, Cf), line and paragraph separators
  (U+2028/9), and letters that draw nothing (Hangul fillers, the blank braille
  pattern), the usual ways to make a name look blank, reversed or like another;
* it holds no surrogate (a lone "\\ud800" from JSON cannot even be stored as UTF-8),
  private-use character or noncharacter, and no U+FFFD, the mark left by text that
  was not valid UTF-8;
* no letter carries more than :data:`MAX_STACKED_MARKS` combining marks ("Zalgo"
  text spills over the lines around it).
"""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from portal.core.errors import Invalid

# Bidi overrides and isolates can make a name display differently from what it is.
# (They are format characters, Cf, too; the set stays explicit because it matters most.)
_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}
# Characters of ordinary categories that draw nothing: Hangul fillers, the combining
# grapheme joiner and the blank braille pattern.
_INVISIBLE = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u034f", "\u2800"}
_MULTILINE_CONTROLS = "\n\r\t"
# What trimming may silently remove from the ends of a value: spaces (Zs) and these.
# str.strip() also removes separators (U+001C–001F, NEL, U+2028/9); those are refused at
# the ends like anywhere else, not trimmed away.
_TRIMMABLE = "\t\n\x0b\x0c\r"
REPLACEMENT_CHARACTER = "\ufffd"
# Real scripts stack at most three or four marks on a letter (Tibetan, Hebrew with
# cantillation); "Zalgo" text stacks dozens.
MAX_STACKED_MARKS = 8
# No stored text that a filter compares against is longer (notes, the longest, hold
# 5,000). Longer search terms match nothing, and must not reach the database: SQLite
# refuses LIKE patterns over 50,000 bytes.
MAX_STORED_TEXT = 10_000


def _is_noncharacter(code: int) -> bool:
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def refused_character(text: str, *, multiline: bool = False) -> str | None:
    """The first character of ``text`` that no stored free text may hold, or None."""
    for ch in text:
        if multiline and ch in _MULTILINE_CONTROLS:
            continue
        if (
            ch in _BIDI_CONTROLS
            or ch in _INVISIBLE
            or ch == REPLACEMENT_CHARACTER
            or unicodedata.category(ch) in _REFUSED_CATEGORIES
            or _is_noncharacter(ord(ch))
        ):
            return ch
    return None


def _longest_mark_run(text: str) -> int:
    longest = run = 0
    for ch in text:
        run = run + 1 if unicodedata.category(ch) in {"Mn", "Me"} else 0
        longest = max(longest, run)
    return longest


def clean_text(
    value: str | None,
    *,
    field: str,
    label: str,
    max_length: int,
    required: bool = False,
    multiline: bool = False,
) -> str:
    """Trim ``value``, normalise it to NFC and check its length and characters.

    Raises :class:`Invalid` naming ``field``; see the module docstring for the rules.
    """
    raw = value or ""
    text = raw.strip()
    # Measure before normalising: NFC of a huge value is work we need not do.
    if len(text) > max_length:
        raise Invalid(
            f"{label} is {len(text)} characters long; the most is {max_length}.", field=field
        )
    trimmed = raw[: len(raw) - len(raw.lstrip())] + raw[len(raw.rstrip()) :]
    bad = refused_character(text, multiline=multiline) or next(
        (ch for ch in trimmed if ch not in _TRIMMABLE and unicodedata.category(ch) != "Zs"), None
    )
    if bad == REPLACEMENT_CHARACTER:
        raise Invalid(
            f"{label} contains U+FFFD (\ufffd), which stands for text that was not valid "
            "UTF-8; type it again.",
            field=field,
        )
    if bad is not None:
        raise Invalid(
            f"{label} contains an invisible or control character (U+{ord(bad):04X}); remove it.",
            field=field,
        )
    text = unicodedata.normalize("NFC", text)
    if required and not text:
        raise Invalid(f"{label} is required.", field=field)
    if len(text) > max_length:  # NFC can, rarely, lengthen text
        raise Invalid(
            f"{label} is {len(text)} characters long; the most is {max_length}.", field=field
        )
    if _longest_mark_run(text) > MAX_STACKED_MARKS:
        raise Invalid(
            f"{label} stacks more than {MAX_STACKED_MARKS} accents or marks on one letter.",
            field=field,
        )
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
    """False for text that no stored text equals or contains: one holding a NUL, or
    longer than :data:`MAX_STORED_TEXT`.

    PostgreSQL refuses NUL in any text parameter, and SQLite refuses very long LIKE
    patterns, so a filter on such a value must answer "nothing matches" without
    reaching the database.
    """
    return "\x00" not in text and len(text) <= MAX_STORED_TEXT


# Characters people type for a dash: every dash punctuation (hyphen-minus, hyphen,
# non-breaking hyphen, figure, en and em dashes, horizontal bar, …) and the minus signs.
_MINUS_SIGNS = {"\u2212", "\u207b", "\u208b", "\ufe63", "\uff0d"}
_SOFT_HYPHEN = "\u00ad"


def comparable_name(value: str | None) -> str:
    """``value`` as a typed confirmation is compared with a name: NFKC, every dash-like
    character one hyphen with no space around it, white space runs one space, trimmed,
    casefolded. "client abc-sales campaign" and "Client ABC – Sales Campaign" compare equal.
    """
    text = unicodedata.normalize("NFKC", (value or "").replace(_SOFT_HYPHEN, ""))
    text = "".join(
        "-" if ch in _MINUS_SIGNS or unicodedata.category(ch) == "Pd" else ch for ch in text
    )
    text = " ".join(text.split())
    return text.replace(" -", "-").replace("- ", "-").casefold()


def names_match(typed: str | None, name: str) -> bool:
    """True when ``typed`` is ``name`` but for dashes, spacing and case."""
    return comparable_name(typed) == comparable_name(name)


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> str:
    """A cell a spreadsheet will not run: text starting like a formula gets a ``'``."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text
