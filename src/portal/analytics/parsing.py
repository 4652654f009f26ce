"""Checking one platform message event: its fields one by one (id, line number,
direction, contact, instant), each refusal with the reason the batch report gives, and
the contact normalised and hashed (contacts are stored only as a keyed hash).

No database: :mod:`~portal.analytics.ingestion` parses a batch with one :class:`Parser`
and resolves the lines itself.
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import re
from typing import Any, NamedTuple

import phonenumbers
from django.conf import settings

from portal.analytics.models import Direction
from portal.core.errors import Invalid
from portal.core.phone import normalize_e164
from portal.core.text import refused_character

# Clocks disagree a little; an event further ahead than this is refused, so a line's
# past (and with it every stored event's attribution) never changes afterwards.
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
MAX_EVENT_ID_LENGTH = 128
MAX_CONTACT_LENGTH = 254


_REQUIRED = ("id", "line", "direction", "contact", "occurred_at")
_E164_SHAPE = re.compile(r"\+[0-9]{1,20}")
# In ASCII, refused_character refuses exactly these: the fast path for ordinary ids.
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_DIRECTIONS = frozenset(Direction.values)


# --- Contacts -----------------------------------------------------------------------


def normalise_contact(raw: str) -> str:
    """One spelling per contact: E.164 for phone numbers, else trimmed and case-folded.

    "+1 (415) 555-0100" and "+14155550100" are the same contact. Anything that is
    not a valid international number (a short code, a platform handle) is kept as
    text without spaces, so the hash is still stable.
    """
    text = raw.strip()
    if _E164_SHAPE.fullmatch(text):
        # "+" and digits only: already its own normal form whether or not it is a valid
        # number (a valid one formats to itself, an invalid one is kept as text).
        return text
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is not None and phonenumbers.is_valid_number(parsed):
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return "".join(text.split()).casefold()


def contact_hash(raw: str, *, key: bytes | None = None) -> str:
    """HMAC-SHA256 (hex) of the normalised contact under ``settings.CONTACT_HASH_KEY``
    (``key``: that key, already encoded, when hashing many)."""
    key = key if key is not None else settings.CONTACT_HASH_KEY.encode()
    # The one-shot form: a batch hashes thousands of contacts.
    return hmac.digest(key, normalise_contact(raw).encode(), "sha256").hex()


# --- Validating one event -------------------------------------------------------------


class Rejected(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _line_number(value: str) -> tuple[str, str | None]:
    """``(E.164 number, None)`` or ``("", why it is refused)``.

    A partner's few thousand lines send every batch, and parsing a number costs more
    than everything else an event needs: short texts (any number's length) are
    remembered for the life of the process (a pure function of the text).
    """
    return _short_line_number(value) if len(value) <= 40 else _parse_line_number(value)


def _parse_line_number(value: str) -> tuple[str, str | None]:
    try:
        return normalize_e164(value, field="line"), None
    except Invalid as exc:
        return "", str(exc.detail)


_short_line_number = functools.lru_cache(maxsize=65_536)(_parse_line_number)


class Incoming(NamedTuple):
    index: int
    event_id: str
    number: str
    direction: str
    contact_hash: str
    occurred_at: dt.datetime


class Parser:
    """Checks one event at a time; a batch repeats contacts, so their hashes are cached."""

    def __init__(self, now: dt.datetime) -> None:
        self.latest = now + FUTURE_TOLERANCE
        self._contacts: dict[str, str] = {}
        self._key = settings.CONTACT_HASH_KEY.encode()

    def parse(self, index: int, raw: Any) -> Incoming:
        if not isinstance(raw, dict):
            raise Rejected("Each event must be a JSON object.")
        missing = [name for name in _REQUIRED if raw.get(name) in (None, "")]
        if missing:
            raise Rejected(f"Missing field(s): {', '.join(missing)}.")
        return Incoming(
            index,
            self._event_id(raw["id"]),
            self._number(raw["line"]),
            self._direction(raw["direction"]),
            self._contact(raw["contact"]),
            self._occurred_at(raw["occurred_at"]),
        )

    @staticmethod
    def _event_id(value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise Rejected("id must be a string (or an integer).")
        text = value.strip()
        if not text or len(text) > MAX_EVENT_ID_LENGTH:
            raise Rejected(f"id must be 1 to {MAX_EVENT_ID_LENGTH} characters long.")
        if text.isascii():
            bad = match.group() if (match := _CONTROL.search(text)) else None
        else:  # surrogates, bidi controls, zero-width and other invisible characters
            bad = refused_character(text)
        if bad is not None:
            raise Rejected(f"id contains U+{ord(bad):04X}, a control or invisible character.")
        return text

    def _number(self, value: Any) -> str:
        if not isinstance(value, str):
            raise Rejected("line must be a phone number in E.164 form (e.g. +14155550100).")
        number, problem = _line_number(value)
        if problem is not None:
            raise Rejected(problem)
        return number

    @staticmethod
    def _direction(value: Any) -> str:
        if not isinstance(value, str) or value not in _DIRECTIONS:
            raise Rejected(f"direction must be 'outbound' or 'inbound', not {value!r:.40}.")
        return value

    def _contact(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise Rejected("contact must be a non-empty string.")
        if len(value) > MAX_CONTACT_LENGTH:
            raise Rejected(f"contact is longer than {MAX_CONTACT_LENGTH} characters.")
        if "\x00" in value:
            raise Rejected("contact contains a NUL character.")
        hashed = self._contacts.get(value)
        if hashed is None:
            # A lone surrogate (a JSON "\ud800" escape) cannot be encoded for hashing.
            if not value.isascii() and _SURROGATE.search(value):
                raise Rejected("contact contains a lone surrogate (not valid Unicode).")
            hashed = self._contacts[value] = contact_hash(value, key=self._key)
        return hashed

    def _occurred_at(self, value: Any) -> dt.datetime:
        if not isinstance(value, str):
            raise Rejected("occurred_at must be an ISO 8601 timestamp string.")
        try:
            at = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise Rejected(
                f"occurred_at {value!r:.60} is not an ISO 8601 timestamp "
                "(e.g. 2025-03-01T14:30:00Z)."
            ) from None
        if at.tzinfo is None or at.utcoffset() is None:
            raise Rejected("occurred_at must carry a timezone offset (e.g. 2025-03-01T14:30:00Z).")
        try:
            at = at.astimezone(dt.UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
            raise Rejected(f"occurred_at {value!r:.60} is out of range.") from None
        if at > self.latest:
            raise Rejected("occurred_at is in the future.")
        return at
