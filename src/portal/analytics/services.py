"""Writes for analytics: ingesting message events and keeping the derived rows current.

``message_events_ingest`` validates a batch event by event, stores what it accepts
in one transaction, and in the same transaction recomputes the conversations of
every (line, contact) pair the batch touched from the pair's stored events
(recomputing, instead of adding to counters, is what makes late, out-of-order and
repeated deliveries come out exactly as an in-order delivery would). The rollups then
change by exactly the new events and the conversations removed and added; those
differences are added to the line, sub-account and partner rows, set-based: a batch
of ten thousand events is about a dozen statements whatever the number of lines.

Ingestion is machine data, not a change a person makes to a partner's objects,
so it records no audit event (one per batch would drown the audit log and tell
nobody anything); each request is logged instead with its counts and key.

Concurrency: the batch's lines are locked in id order (``FOR NO KEY UPDATE`` on
PostgreSQL; SQLite's IMMEDIATE transaction serialises writers), so two batches
touching a line recompute its pairs and days one after the other, and what a batch
reads of its pairs before storing its events stays true until it writes.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import hmac
import logging
import re
import zoneinfo
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import phonenumbers
from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL

from portal.accounts.policies import require
from portal.accounts.principal import Principal
from portal.analytics.conversations import ConversationSpan, PairEvent, conversations_for
from portal.analytics.models import (
    Conversation,
    ConversationKind,
    DailyLineRollup,
    DailyPartnerRollup,
    DailySubAccountRollup,
    Direction,
    Grain,
    MessageEvent,
    PartnerAnalyticsState,
    SubAccountRollupBucket,
)
from portal.analytics.policies import can_ingest_message_events
from portal.analytics.pressure import Span, judge, limit_at_day_end, merge_heads
from portal.analytics.selectors import ROLLUP_SUMS, line_days, local_midnight
from portal.core import clock
from portal.core.bulk import copy_binary
from portal.core.errors import Invalid
from portal.core.phone import normalize_e164
from portal.core.retry import retry_on_lost_race
from portal.core.text import refused_character
from portal.lines.models import AssignmentPeriod, Line, LineLimitChange, LineStatus
from portal.partners.models import Partner

logger = logging.getLogger("portal.analytics")

MAX_BATCH = 10_000
# Clocks disagree a little; an event further ahead than this is refused, so a line's
# past (and with it every stored event's attribution) never changes afterwards.
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
MAX_EVENT_ID_LENGTH = 128
MAX_CONTACT_LENGTH = 254
_CHUNK = 2_000  # values per IN (...): well under SQLite's bound-parameter limit
_REQUIRED = ("id", "line", "direction", "contact", "occurred_at")
_E164_SHAPE = re.compile(r"\+[0-9]{1,20}")
# In ASCII, refused_character refuses exactly these: the fast path for ordinary ids.
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_DIRECTIONS = frozenset(Direction.values)


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


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


class _Rejected(Exception):
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


class _Incoming(NamedTuple):
    index: int
    event_id: str
    number: str
    direction: str
    contact_hash: str
    occurred_at: dt.datetime


class _Parser:
    """Checks one event at a time; a batch repeats contacts, so their hashes are cached."""

    def __init__(self, now: dt.datetime) -> None:
        self.latest = now + FUTURE_TOLERANCE
        self._contacts: dict[str, str] = {}
        self._key = settings.CONTACT_HASH_KEY.encode()

    def parse(self, index: int, raw: Any) -> _Incoming:
        if not isinstance(raw, dict):
            raise _Rejected("Each event must be a JSON object.")
        missing = [name for name in _REQUIRED if raw.get(name) in (None, "")]
        if missing:
            raise _Rejected(f"Missing field(s): {', '.join(missing)}.")
        return _Incoming(
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
            raise _Rejected("id must be a string (or an integer).")
        text = value.strip()
        if not text or len(text) > MAX_EVENT_ID_LENGTH:
            raise _Rejected(f"id must be 1 to {MAX_EVENT_ID_LENGTH} characters long.")
        if text.isascii():
            bad = match.group() if (match := _CONTROL.search(text)) else None
        else:  # surrogates, bidi controls, zero-width and other invisible characters
            bad = refused_character(text)
        if bad is not None:
            raise _Rejected(f"id contains U+{ord(bad):04X}, a control or invisible character.")
        return text

    def _number(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _Rejected("line must be a phone number in E.164 form (e.g. +14155550100).")
        number, problem = _line_number(value)
        if problem is not None:
            raise _Rejected(problem)
        return number

    @staticmethod
    def _direction(value: Any) -> str:
        if not isinstance(value, str) or value not in _DIRECTIONS:
            raise _Rejected(f"direction must be 'outbound' or 'inbound', not {value!r:.40}.")
        return value

    def _contact(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise _Rejected("contact must be a non-empty string.")
        if len(value) > MAX_CONTACT_LENGTH:
            raise _Rejected(f"contact is longer than {MAX_CONTACT_LENGTH} characters.")
        if "\x00" in value:
            raise _Rejected("contact contains a NUL character.")
        hashed = self._contacts.get(value)
        if hashed is None:
            # A lone surrogate (a JSON "\ud800" escape) cannot be encoded for hashing.
            if not value.isascii() and _SURROGATE.search(value):
                raise _Rejected("contact contains a lone surrogate (not valid Unicode).")
            hashed = self._contacts[value] = contact_hash(value, key=self._key)
        return hashed

    def _occurred_at(self, value: Any) -> dt.datetime:
        if not isinstance(value, str):
            raise _Rejected("occurred_at must be an ISO 8601 timestamp string.")
        try:
            at = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Rejected(
                f"occurred_at {value!r:.60} is not an ISO 8601 timestamp "
                "(e.g. 2025-03-01T14:30:00Z)."
            ) from None
        if at.tzinfo is None or at.utcoffset() is None:
            raise _Rejected("occurred_at must carry a timezone offset (e.g. 2025-03-01T14:30:00Z).")
        try:
            at = at.astimezone(dt.UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
            raise _Rejected(f"occurred_at {value!r:.60} is out of range.") from None
        if at > self.latest:
            raise _Rejected("occurred_at is in the future.")
        return at


# --- Queries and writes with many values ------------------------------------------------


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _value_chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    """``values`` whole on PostgreSQL (they go as one array parameter), in chunks on SQLite."""
    if not values:
        return []
    return [values] if _postgres() else _chunks(values)


def _any_of(model: type[models.Model], field: str, values: Sequence[Any]) -> Q | RawSQL:
    """A filter: ``field`` equals one of ``values``.

    On PostgreSQL ``= ANY(array)`` with the array as one parameter: ten thousand
    placeholders cost more to build, send and parse than the index lookups themselves.
    """
    if _postgres():
        column = f"{model._meta.db_table}.{connection.ops.quote_name(field)}"
        array, param = _pg_array(_sql_type(model, field), values)
        # The column and type come from model metadata; the values are one parameter.
        return RawSQL(f"{column} = ANY({array})", (param,), output_field=BooleanField())  # noqa: S611
    return Q(**{f"{field}__in": values})


def _sql_type(model: type[models.Model], name: str) -> str:
    return model._meta.get_field(name).cast_db_type(connection)


# Array elements travel as one text parameter split in the database: psycopg quotes a
# string in C, where a list parameter is dumped element by element in Python (a tenth
# of a second for a batch's ten thousand ids). The unit separator is refused in event
# ids and cannot occur in the other values (numbers, hashes, ids, dates).
_SEPARATOR, _NULL = "\x1f", "\x1e"


def _pg_array(sql_type: str, values: Sequence[Any]) -> tuple[str, str]:
    """SQL for a PostgreSQL array of ``sql_type`` and its one parameter."""

    def text(value: Any) -> str:
        if value is None:
            return _NULL
        if isinstance(value, bool):
            return "t" if value else "f"
        if isinstance(value, dt.date):  # datetimes too: ISO 8601 with the offset
            return value.isoformat()
        return str(value)

    # A column's values are nearly always all text or all integers (ids, counts): those
    # are joined without a call per value.
    kinds = set(map(type, values))
    if kinds == {str}:
        joined = _SEPARATOR.join(values)
    elif kinds == {int}:
        joined = _SEPARATOR.join(map(str, values))
    else:
        joined = _SEPARATOR.join(map(text, values))
    # (A lone empty string would split into no element: no value here is ever empty.)
    return f"string_to_array(%s, chr(31), chr(30))::{sql_type}[]", joined


# --- Which line and sub-account an event belongs to ----------------------------------------


@dataclass(frozen=True, slots=True)
class _Holding:
    """One assignment period of a line carrying a number: who held it in ``[start, end)``."""

    start: dt.datetime
    end: dt.datetime | None
    line_id: int
    partner_id: int
    sub_account_id: int
    via_merge: bool


class _LockedLine(NamedTuple):
    number: str
    daily_limit: int


def _lock_lines(principal: Principal, events: Sequence[_Incoming]) -> dict[int, _LockedLine]:
    """The lines that can have carried the events' numbers, locked in id order, by id.

    The active line with the number answers almost every event, and the unique index
    on active numbers finds it. Disconnected lines are looked up only for numbers
    whose events predate the active line (or that no active line carries): late
    events of a disconnected or reissued number. They are locked after the active
    ones (each set in id order); a line is never both, so two batches cannot wait for
    each other.
    """
    lines = Line.objects.visible_to(principal).select_for_update(no_key=True).order_by("pk")
    locked: dict[int, _LockedLine] = {}
    activated: dict[str, dt.datetime] = {}
    for chunk in _value_chunks(sorted({e.number for e in events})):
        rows = (
            lines.filter(_any_of(Line, "number", chunk), status=LineStatus.ACTIVE)
            .values_list("pk", "number", "daily_limit", "activated_at")
            .order_by("pk")
        )
        for pk, number, limit, activated_at in rows:
            locked[pk] = _LockedLine(number, limit)
            activated[number] = activated_at
    older = sorted(
        {
            e.number
            for e in events
            if e.number not in activated or e.occurred_at < activated[e.number]
        }
    )
    for chunk in _value_chunks(older):
        rows = (
            lines.filter(_any_of(Line, "number", chunk), status=LineStatus.DISCONNECTED)
            .values_list("pk", "number", "daily_limit")
            .order_by("pk")
        )
        for pk, number, limit in rows:
            locked[pk] = _LockedLine(number, limit)
    return locked


class _Holdings(NamedTuple):
    """A number's assignment periods, oldest first, and their starts (for bisecting)."""

    starts: list[dt.datetime]
    periods: list[_Holding]


def _holdings_by_number(lines: dict[int, _LockedLine]) -> dict[str, _Holdings]:
    """Every assignment period of the lines, by number, oldest first.

    A number's lines never overlap in time (unique among active lines), and a
    line's periods tile its active life, so at most one period covers an instant.
    """
    by_number: dict[str, list[_Holding]] = defaultdict(list)
    for chunk in _value_chunks(sorted(lines)):
        rows = AssignmentPeriod.objects.filter(_any_of(AssignmentPeriod, "line_id", chunk))
        for line_id, start, end, partner_id, sub_account_id, via_merge in rows.values_list(
            "line_id", "start", "end", "partner_id", "sub_account_id", "via_merge"
        ):
            if start != end:  # a line moved at the instant it arrived held nothing
                holding = _Holding(start, end, line_id, partner_id, sub_account_id, via_merge)
                by_number[lines[line_id].number].append(holding)
    result = {}
    for number, periods in by_number.items():
        periods.sort(key=lambda h: h.start)
        result[number] = _Holdings([h.start for h in periods], periods)
    return result


def _holder_at(holdings: _Holdings, at: dt.datetime) -> _Holding | None:
    i = bisect.bisect_right(holdings.starts, at) - 1
    if i < 0:
        return None
    holding = holdings.periods[i]
    return holding if holding.end is None or at < holding.end else None


# --- Writing many rows --------------------------------------------------------------


class _Stored(NamedTuple):
    """A MessageEvent row, in column order."""

    partner_id: int
    event_id: str
    line_id: int
    sub_account_id: int
    direction: str
    contact_hash: str
    occurred_at: dt.datetime
    local_day: dt.date
    received_at: dt.datetime


def _insert(
    model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert plain tuples: COPY on PostgreSQL, one prepared ``executemany`` on SQLite.

    Model instances and ``bulk_create`` cost more than the database does at ten
    thousand rows a request.
    """
    if not rows:
        return
    table = model._meta.db_table
    if _postgres():
        copy_binary(table, columns, rows)
        return
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    adapt = _sqlite_adapter()
    # Identifiers come from model metadata; values are parameters.
    sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(columns))})"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.executemany(sql, [tuple(adapt(v) for v in row) for row in rows])


def _sqlite_adapter():
    """Values as Django stores them on SQLite: naive UTC text for datetimes, ISO dates."""

    def adapt(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")
        if isinstance(value, dt.date):
            return value.isoformat()
        return value

    return adapt


def _store_events[T](
    rows: list[_Stored], derive: Callable[[list[_Stored]], T]
) -> tuple[list[_Stored], T]:
    """Insert the events not stored yet; returns the rows inserted (the others are
    duplicates) and ``derive`` of them, which needs no database.

    On PostgreSQL the batch is COPYed as it is, in a savepoint, and ``derive`` runs while
    the server writes the rows and their index entries. A platform's retry never gets
    here: its stored ids were taken out before (:func:`_stored_already`, which looks up
    only events inside their pair's history). An id reused for another pair (a platform
    fault) is a unique violation that undoes the COPY (PostgreSQL logs it as an ERROR, and
    we log a warning); the set then goes again as ``INSERT … ON CONFLICT DO NOTHING
    RETURNING``, which says exactly which rows went in, and ``derive`` runs again on
    those. SQLite runs the conflict-checking insert (its IMMEDIATE transaction
    serialises writers).
    """
    if _postgres():
        try:
            with transaction.atomic():  # a savepoint: a clash undoes the COPY only
                derived = copy_binary(
                    MessageEvent._meta.db_table,
                    _Stored._fields,
                    rows,
                    meanwhile=lambda: derive(rows),
                )
            return rows, derived  # type: ignore[return-value]  # meanwhile was given
        # COPY runs on the driver's cursor, whose errors Django does not wrap.
        except (IntegrityError, connection.Database.IntegrityError):
            # Known retries are taken out before (_stored_already): what is left is an id
            # reused for another pair, a platform fault worth an operator's attention.
            logger.warning(
                "message events: an event id clashed with a stored one of another "
                "line or contact; the batch was inserted skipping it"
            )
    inserted = _insert_new_events(rows)
    stored = [row for row in rows if (row.partner_id, row.event_id) in inserted]
    return stored, derive(stored)


def _stored_already(rows: list[_Stored], pairs_read: dict[int, _PairsRead]) -> set[tuple[int, str]]:
    """The ``(partner, event id)`` of ``rows`` that are stored already: a platform's retry.

    Only an event that falls within its pair's stored history can have been stored
    before (every stored event is inside a stored conversation of its pair, written in
    the same transaction under the line's lock), so only those ids are looked up, in
    one indexed query per partner. Events that follow their pair's history (the usual
    batch) or open a new pair cost nothing, and a retried batch no longer reaches the
    COPY with a clash: PostgreSQL logs every failed statement as an ERROR, and a
    redelivery is a normal event, not an error.
    """
    found: set[tuple[int, str]] = set()
    for partner_id, prows in _by_partner(rows):
        old = pairs_read[partner_id].old
        latest: dict[Pair, dt.datetime | None] = {}
        for pair, spans in old.items():
            ends = [s.last_message_at for *_, s in spans]
            latest[pair] = None if None in ends else max(ends)
        ids = []
        for row in prows:
            pair = (row.line_id, row.contact_hash)
            if pair in latest:
                last = latest[pair]
                if last is None or row.occurred_at <= last:
                    ids.append(row.event_id)
        for chunk in _value_chunks(ids):
            stored = (
                MessageEvent.objects.filter(partner_id=partner_id)
                .filter(_any_of(MessageEvent, "event_id", chunk))
                .values_list("event_id", flat=True)
            )
            found.update((partner_id, event_id) for event_id in stored)
    return found


def _insert_new_events(rows: list[_Stored]) -> set[tuple[int, str]]:
    """Insert the rows whose ``(partner, event id)`` is free (``ON CONFLICT DO NOTHING``)
    in one statement (on SQLite one per chunk); returns the keys inserted."""
    if not rows:
        return set()
    table = MessageEvent._meta.db_table
    names = ", ".join(connection.ops.quote_name(c) for c in _Stored._fields)
    conflict = " ON CONFLICT (partner_id, event_id) DO NOTHING RETURNING partner_id, event_id"
    inserted: set[tuple[int, str]] = set()
    with connection.cursor() as cursor:
        if _postgres():
            arrays = [
                _pg_array(_sql_type(MessageEvent, c), column)
                for c, column in zip(_Stored._fields, zip(*rows, strict=True), strict=True)
            ]
            # Identifiers come from model metadata; values are parameters.
            cursor.execute(
                f"INSERT INTO {table} ({names}) "  # noqa: S608
                f"SELECT * FROM unnest({', '.join(sql for sql, _ in arrays)})" + conflict,
                [param for _, param in arrays],
            )
            return set(cursor.fetchall())
        adapt = _sqlite_adapter()
        placeholder = "(" + ", ".join(["%s"] * len(_Stored._fields)) + ")"
        for chunk in _chunks(rows, _CHUNK // len(_Stored._fields)):
            cursor.execute(
                f"INSERT INTO {table} ({names}) VALUES "  # noqa: S608
                + ", ".join([placeholder] * len(chunk))
                + conflict,
                [adapt(v) for row in chunk for v in row],
            )
            inserted.update(cursor.fetchall())
    return inserted


# --- Ingestion --------------------------------------------------------------------


@dataclass
class IngestReport:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


@retry_on_lost_race
def message_events_ingest(*, principal: Principal, events: list[Any]) -> IngestReport:
    """Store a batch of platform message events and bring conversations and rollups up to date.

    Each event is checked on its own: a bad one is reported by its index and the
    rest are accepted. An id already stored, or repeated in the batch, counts as a
    duplicate and is ignored. Everything accepted is stored in one transaction.
    """
    require(
        can_ingest_message_events(principal),
        "Only the messaging platform (with a staff key) posts message events.",
    )
    if len(events) > MAX_BATCH:
        raise Invalid(
            f"A batch holds at most {MAX_BATCH:,} events; this one has {len(events):,}. "
            "Split it into smaller batches.",
            field="events",
        )
    now = clock.now()
    report = IngestReport()
    parser = _Parser(now)
    parsed: list[_Incoming] = []
    for index, raw in enumerate(events):
        try:
            parsed.append(parser.parse(index, raw))
        except _Rejected as exc:
            report.rejected.append({"index": index, "detail": exc.detail})

    with transaction.atomic():
        lines = _lock_lines(principal, parsed)
        holdings = _holdings_by_number(lines)
        resolved: list[tuple[_Incoming, _Holding]] = []
        for event in parsed:
            known = holdings.get(event.number)
            holder = _holder_at(known, event.occurred_at) if known else None
            if holder is None:
                detail = (
                    f"line {event.number} is not a known line."
                    if not known
                    else f"line {event.number} was not active at {event.occurred_at.isoformat()}."
                )
                report.rejected.append({"index": event.index, "detail": detail})
                continue
            resolved.append((event, holder))

        partners = {holder.partner_id for _, holder in resolved}
        zones = _zones(partners)
        pruned_before = _pruned_before(partners)
        seen: set[str] = set()
        rows: list[_Stored] = []
        for event, holder in resolved:
            day = event.occurred_at.astimezone(zones[holder.partner_id]).date()
            horizon = pruned_before.get(holder.partner_id)
            if horizon is not None and day < horizon:
                report.rejected.append({"index": event.index, "detail": _pruned_detail(day)})
                continue
            if event.event_id in seen:  # repeated in the batch: the first one counts
                report.duplicates += 1
                continue
            seen.add(event.event_id)
            rows.append(
                _Stored(
                    holder.partner_id,
                    event.event_id,
                    holder.line_id,
                    holder.sub_account_id,
                    event.direction,
                    event.contact_hash,
                    event.occurred_at,
                    day,
                    now,
                )
            )
        # What the batch's pairs already have is read before the events go in, so their
        # conversations and rollup differences can be worked out while the COPY runs.
        pairs_read = {pk: _read_pairs(pk, prows) for pk, prows in _by_partner(rows)}
        stored_before = _stored_already(rows, pairs_read)
        if stored_before:
            report.duplicates += len(stored_before)
            rows = [row for row in rows if (row.partner_id, row.event_id) not in stored_before]

        def derive(stored: list[_Stored]) -> dict[int, _Derived]:
            return {
                pk: _derive(zones[pk], prows, pruned_before.get(pk), pairs_read[pk])
                for pk, prows in _by_partner(stored)
            }

        stored, derived = _store_events(rows, derive)
        report.duplicates += len(rows) - len(stored)
        report.accepted = len(stored)
        facts = _LineFacts(
            current={pk: line.daily_limit for pk, line in lines.items()},
            spans=_spans_by_line(holdings),
        )
        for partner_id, changes in derived.items():
            _write_derived(partner_id, changes, zones[partner_id], facts)

    report.rejected.sort(key=lambda r: r["index"])
    logger.info(
        "message events from %s: %d accepted, %d duplicates, %d rejected",
        principal.label,
        report.accepted,
        report.duplicates,
        len(report.rejected),
    )
    return report


def _zones(partner_ids: Iterable[int]) -> dict[int, zoneinfo.ZoneInfo]:
    rows = Partner.objects.filter(pk__in=list(partner_ids)).values_list("pk", "timezone")
    return {pk: zoneinfo.ZoneInfo(tz) for pk, tz in rows}


def _pruned_before(partner_ids: Iterable[int]) -> dict[int, dt.date]:
    """Each partner's first day whose raw events are still kept (absent: none pruned)."""
    rows = PartnerAnalyticsState.objects.filter(
        partner_id__in=list(partner_ids), events_pruned_before__isnull=False
    ).values_list("partner_id", "events_pruned_before")
    return dict(rows)


def _pruned_detail(day: dt.date) -> str:
    return (
        f"occurred_at falls on {day.isoformat()}, a day whose raw events were pruned "
        f"(they are kept {settings.EVENT_RETENTION_DAYS} days); it can no longer be counted."
    )


# --- Conversations and rollups ------------------------------------------------------------


Pair = tuple[int, str]
LineDay = tuple[int, int, dt.date]  # (line, sub-account, day)
# The columns of a line rollup that add up into its sub-account's day.
_SUMMED = (
    "messages_sent",
    "messages_received",
    "new_conversations",
    "responded_conversations",
    "inbound_conversations",
    "near_limit_line_days",
    "over_pressured_line_days",
)
_LINE_COUNTS = _SUMMED[:5]  # what a line rollup stores (its pressure follows from them)
_SENT, _RECEIVED, _NEW, _RESPONDED, _INBOUND = range(5)


_CONVERSATION_COLUMNS = (
    "partner_id",
    "line_id",
    "contact_hash",
    "kind",
    "started_at",
    "sub_account_id",
    "local_day",
    "responded",
    "last_message_at",
    "first_reply_at",
)


def _count_conversation(
    deltas: dict[LineDay, list[int]], line_id: int, span: ConversationSpan, day: dt.date, sign: int
) -> None:
    """Add (``sign`` = 1) or take away (-1) what a conversation counts in its line's day."""
    delta = deltas[(line_id, span.sub_account_id, day)]
    if span.kind == ConversationKind.NEW:
        delta[_NEW] += sign
        if span.responded:
            delta[_RESPONDED] += sign
    else:
        delta[_INBOUND] += sign


def _by_partner(rows: Iterable[_Stored]) -> list[tuple[int, list[_Stored]]]:
    """The rows grouped by partner, in partner order."""
    groups: dict[int, list[_Stored]] = defaultdict(list)
    for row in rows:
        groups[row.partner_id].append(row)
    return sorted(groups.items())


def _by_pair(rows: Iterable[_Stored]) -> dict[Pair, list[_Stored]]:
    batch: dict[Pair, list[_Stored]] = defaultdict(list)
    for e in rows:
        batch[(e.line_id, e.contact_hash)].append(e)
    return batch


StoredSpans = list[tuple[int, dt.date, ConversationSpan]]  # (row id, local day, span)


def _appended(
    batch: dict[Pair, list[_Stored]], old: dict[Pair, StoredSpans]
) -> dict[Pair, dt.datetime]:
    """The known pairs whose new events all come after their last stored message (events
    that arrive in order: the usual case), with their first new instant. Such a pair
    goes on from its stored conversations, which stand in for its earlier events exactly
    as they do for pruned ones (conversations_for's ``prior``), so a batch costs the same
    however long the pairs' histories are."""
    appended: dict[Pair, dt.datetime] = {}
    for pair, events in batch.items():
        known = old.get(pair)
        if not known:
            continue
        first_new = min(e.occurred_at for e in events)
        if all(s.last_message_at is not None and s.last_message_at < first_new for *_, s in known):
            appended[pair] = first_new
    return appended


class _PairsRead(NamedTuple):
    """What a batch's (line, contact) pairs have stored, read before the batch goes in."""

    old: dict[Pair, StoredSpans]  # their conversations
    history: dict[Pair, list[PairEvent]]  # the events of those that are not appended


def _read_pairs(partner_id: int, rows: list[_Stored]) -> _PairsRead:
    """The stored conversations of the pairs of ``rows``, and the stored events of those
    whose new events do not all follow their history (read back to recompute them).

    ``rows`` may be more than will be stored (the COPY may meet a duplicate): a pair
    appended with all of its rows is appended with any of them, so the events read
    cover every pair that needs them.
    """
    batch = _by_pair(rows)
    old: dict[Pair, StoredSpans] = defaultdict(list)
    # By contact hash (nearly unique to a pair); rows of other pairs are skipped.
    for hash_chunk in _value_chunks(sorted({contact for _, contact in batch})):
        stored = (
            Conversation.objects.filter(partner_id=partner_id)
            .filter(_any_of(Conversation, "contact_hash", hash_chunk))
            .values_list(
                "pk",
                "line_id",
                "contact_hash",
                "local_day",
                "kind",
                "started_at",
                "sub_account_id",
                "responded",
                "last_message_at",
                "first_reply_at",
            )
        )
        for pk, line_id, contact, local_day, *span in stored:
            if (line_id, contact) in batch:
                old[(line_id, contact)].append((pk, local_day, ConversationSpan(*span)))
    # Every stored event belongs to a stored conversation of its pair (both are written
    # in one transaction, under the line's lock), so a pair without one has no history:
    # only the other known pairs' events are read back.
    appended = _appended(batch, old)
    reread = {pair for pair in old if pair not in appended}
    history: dict[Pair, list[PairEvent]] = defaultdict(list)
    for hash_chunk in _value_chunks(sorted({contact for _, contact in reread})):
        events = (
            MessageEvent.objects.filter(partner_id=partner_id)
            .filter(_any_of(MessageEvent, "contact_hash", hash_chunk))
            .values_list(
                "line_id", "contact_hash", "occurred_at", "direction", "event_id", "sub_account_id"
            )
        )
        # Streamed (a server-side cursor on PostgreSQL): a late batch reads back the whole
        # stored history of its pairs, which a result list held at once would double.
        for line_id, contact, at, direction, event_id, sub_account_id in events.iterator(
            chunk_size=_CHUNK
        ):
            if (line_id, contact) in reread:
                history[(line_id, contact)].append(
                    PairEvent(at, direction, event_id, sub_account_id)
                )
    return _PairsRead(old, history)


@dataclass
class _Derived:
    """What a partner's stored events change: conversations to delete and to insert, and
    the differences to add to its line rollups."""

    stale: list[int]
    replacements: list[tuple]
    deltas: dict[LineDay, list[int]]


def _derive(
    zone: zoneinfo.ZoneInfo,
    new: list[_Stored],
    pruned_before: dt.date | None,
    read: _PairsRead,
) -> _Derived:
    """Recompute the conversations of the pairs of ``new`` (a partner's stored events) and
    what changes in its line rollups; no database.

    A pair's conversations are derived from its kept events, seeded with its stored
    conversations that started before the prune horizon (whose events are gone); a
    pair whose new events all follow its last stored message goes on from its stored
    conversations instead. Only conversations that changed are rewritten. The rollups
    change by exactly the new events (messages) and the conversations removed and
    added, so those differences are added to the line, sub-account and partner rows
    (one statement each) instead of recounting the days from events.
    """
    partner_id = new[0].partner_id
    horizon = local_midnight(pruned_before, zone) if pruned_before else None
    deltas: dict[LineDay, list[int]] = defaultdict(lambda: [0] * len(_LINE_COUNTS))
    # The stored rows carry what ``conversations_for`` reads of a message (``Message``).
    batch = _by_pair(new)
    for e in new:
        outbound = e.direction == Direction.OUTBOUND
        deltas[(e.line_id, e.sub_account_id, e.local_day)][_SENT if outbound else _RECEIVED] += 1
    appended = _appended(batch, read.old)

    stale: list[int] = []
    replacements: list[tuple] = []

    def replace_with(
        line_id: int, contact: str, span: ConversationSpan, local_day: dt.date | None = None
    ) -> None:
        local_day = local_day or span.started_at.astimezone(zone).date()
        _count_conversation(deltas, line_id, span, local_day, 1)
        replacements.append(
            (
                partner_id,
                line_id,
                contact,
                span.kind,
                span.started_at,
                span.sub_account_id,
                local_day,
                span.responded,
                span.last_message_at,
                span.first_reply_at,
            )
        )

    for pair, events in batch.items():
        line_id, contact = pair
        stored = read.old.get(pair)
        if not stored:  # a pair the portal has not seen: the batch is its whole history
            if len(events) == 1:  # the usual first message: one conversation, unanswered
                (e,) = events
                kind = "new" if e.direction == Direction.OUTBOUND else "inbound"
                span = ConversationSpan(kind, e.occurred_at, e.sub_account_id, False, e.occurred_at)
                replace_with(line_id, contact, span, e.local_day)
                continue
            for span in conversations_for(events):
                replace_with(line_id, contact, span)
            continue
        if pair in appended:
            spans = conversations_for(
                events, prior=[span for _, _, span in stored], horizon=appended[pair]
            )
        else:
            prior = [s for _, _, s in stored if horizon is not None and s.started_at < horizon]
            history = [*read.history.get(pair, ()), *events]
            spans = conversations_for(history, prior=prior, horizon=horizon)
        before = {span: (pk, local_day) for pk, local_day, span in stored}
        for span, (pk, local_day) in before.items():
            if span not in spans:
                stale.append(pk)
                _count_conversation(deltas, line_id, span, local_day, -1)
        for span in spans:
            if span not in before:
                replace_with(line_id, contact, span)
    return _Derived(stale, replacements, deltas)


def _write_derived(
    partner_id: int, derived: _Derived, zone: zoneinfo.ZoneInfo, facts: _LineFacts
) -> None:
    """Replace the changed conversations and add the differences to the rollups."""
    for chunk in _value_chunks(derived.stale):
        Conversation.objects.filter(_any_of(Conversation, "id", chunk)).delete()
    _insert(Conversation, _CONVERSATION_COLUMNS, derived.replacements)
    changed = {key: delta for key, delta in derived.deltas.items() if any(delta)}
    _add_to_sub_account_days(partner_id, _add_to_line_days(partner_id, changed, zone, facts))


# --- Pressure: judging line-days ---------------------------------------------------------

_JUDGED = ("daily_limit", "near_limit_line_days", "over_pressured_line_days")
RowState = tuple[int, int | None, int, int]  # new conversations, daily limit, near, over


@dataclass
class _LineFacts:
    """What judging a line's days needs beyond its rollups: its limit now and its
    assignment periods (the merges), by line id."""

    current: dict[int, int]
    spans: dict[int, list[Span]]


def _spans_by_line(holdings: dict[str, _Holdings]) -> dict[int, list[Span]]:
    spans: dict[int, list[Span]] = defaultdict(list)
    for known in holdings.values():
        for h in known.periods:
            spans[h.line_id].append(Span(h.sub_account_id, h.start, h.end, h.via_merge))
    return spans


def _day_end_limits(
    partner_id: int,
    zone: zoneinfo.ZoneInfo,
    line_days: Iterable[tuple[int, dt.date]],
    current: dict[int, int],
) -> dict[tuple[int, dt.date], int]:
    """Each line-day's limit: the line's limit at the end of the day (its first change at
    or after the day's end says what it was; none: the limit it has now). One query,
    over the changes since the earliest day's end (usually none)."""
    wanted = set(line_days)
    if not wanted:
        return {}
    first_end = local_midnight(min(day for _, day in wanted) + dt.timedelta(days=1), zone)
    changes: dict[int, list[tuple[dt.datetime, int]]] = defaultdict(list)
    for chunk in _value_chunks(sorted({line for line, _ in wanted})):
        rows = (
            LineLimitChange.objects.filter(partner_id=partner_id, at__gte=first_end)
            .filter(_any_of(LineLimitChange, "line_id", chunk))
            .order_by("at", "pk")
            .values_list("line_id", "at", "old_limit")
        )
        for line_id, at, old_limit in rows:
            changes[line_id].append((at, old_limit))
    return {
        (line, day): limit_at_day_end(
            changes.get(line, ()), current[line], local_midnight(day + dt.timedelta(days=1), zone)
        )
        for line, day in wanted
    }


def _merge_heads_by_line_day(
    zone: zoneinfo.ZoneInfo, line_days: Iterable[tuple[int, dt.date]], spans: dict[int, list[Span]]
) -> dict[tuple[int, dt.date], dict[int, int]]:
    """The line-days on which a merge moved the line: sub-account -> the one it joins."""
    heads = {}
    for line, day in line_days:
        line_spans = spans.get(line, ())
        if not any(s.via_merge for s in line_spans):
            continue
        found = merge_heads(
            line_spans, local_midnight(day, zone), local_midnight(day + dt.timedelta(days=1), zone)
        )
        if found:
            heads[(line, day)] = found
    return heads


def _judge_and_write(
    partner_id: int,
    states: dict[LineDay, RowState],
    limits: dict[tuple[int, dt.date], int],
    heads: dict[tuple[int, dt.date], dict[int, int]],
) -> dict[tuple[int, dt.date], dict[str, int]]:
    """Judge every line-day of ``states`` (all of its stored rows) against its limit
    (``analytics.pressure.judge``), store the rows whose limit or flags change (one
    upsert: a merge's target row may be new) and return the flags' differences per
    (sub-account, day), to add to the rollups above."""
    by_line_day: dict[tuple[int, dt.date], dict[int, int]] = defaultdict(dict)
    for (line, sub_account, day), (new, *_) in states.items():
        by_line_day[(line, day)][sub_account] = new
    writes: dict[tuple, Sequence[int]] = {}
    sub_deltas: dict[tuple[int, dt.date], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(_SUMMED, 0)
    )
    for (line, day), rows in by_line_day.items():
        for sub_account, judged in judge(
            rows, limits[(line, day)], heads.get((line, day), {})
        ).items():
            stored = states.get((line, sub_account, day))
            if stored is None and not (judged.near or judged.over):
                continue  # a merge's target with nothing to carry: no row
            _, limit, near, over = stored or (0, None, 0, 0)
            if (limit, near, over) == judged:
                continue
            writes[(line, sub_account, day)] = judged
            if (near, over) != judged[1:]:
                total = sub_deltas[(sub_account, day)]
                total["near_limit_line_days"] += judged.near - near
                total["over_pressured_line_days"] += judged.over - over
    _upsert(
        DailyLineRollup,
        partner_id,
        ("line_id", "sub_account_id", "day"),
        writes,
        _JUDGED,
        added=(),
        kept=(),
    )
    return sub_deltas


def _add_to_line_days(
    partner_id: int,
    deltas: dict[LineDay, list[int]],
    zone: zoneinfo.ZoneInfo,
    facts: _LineFacts,
) -> dict[tuple[int, dt.date], dict[str, int]]:
    """Add the differences to the line rollups, then judge the line-days they touched
    (against the limit at each day's end); returns what changed per (sub-account, day),
    pressure included.

    The upserts return each row's counts and flags after the addition, so judging needs
    no read of the rows but on the day of a merge (the line-day's other rows). No
    difference can empty a row: a conversation that starts on a line's day is one of
    the messages of that day, and messages are never taken away.
    """
    sub_deltas: dict[tuple[int, dt.date], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(_SUMMED, 0)
    )
    if not deltas:
        return sub_deltas
    line_days = {(line, day) for line, _, day in deltas}
    limits = _day_end_limits(partner_id, zone, line_days, facts.current)
    keys = ("line_id", "sub_account_id", "day")
    returning = (*keys, "new_conversations", *_JUDGED)
    fresh: dict[tuple, Sequence[int]] = {}
    taken: dict[tuple, Sequence[int]] = {}
    for key, delta in deltas.items():
        if min(delta) >= 0 and delta[_RESPONDED] <= delta[_NEW]:
            fresh[key] = (limits[(key[0], key[2])], *delta)
        else:
            # Would break the row checks as a row of its own (CHECK constraints are tested
            # before a conflict turns an insert into an update): only ever a row that is
            # there, as taking away needs something to take from.
            taken[key] = delta
    returned = _upsert(
        DailyLineRollup,
        partner_id,
        keys,
        fresh,
        ("daily_limit", *_LINE_COUNTS),
        added=_LINE_COUNTS,
        returning=returning,
        kept=("daily_limit",),
    )
    returned += _add_to_stored(DailyLineRollup, partner_id, keys, taken, _LINE_COUNTS, returning)
    states: dict[LineDay, RowState] = {}
    for line_id, sub_account_id, day, *state in returned:
        states[(line_id, sub_account_id, _as_date(day))] = tuple(state)  # type: ignore[assignment]
    heads = _merge_heads_by_line_day(zone, line_days, facts.spans)
    if heads:  # a merge day: the line-day's rows the batch did not touch are judged too
        states = {**_stored_states(partner_id, heads), **states}
    for (_, sub_account_id, day), delta in deltas.items():
        total = sub_deltas[(sub_account_id, day)]
        for i, name in enumerate(_LINE_COUNTS):
            total[name] += delta[i]
    for key, flags in _judge_and_write(partner_id, states, limits, heads).items():
        total = sub_deltas[key]
        for name, value in flags.items():
            total[name] += value
    return {key: delta for key, delta in sub_deltas.items() if any(delta.values())}


def _as_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def _stored_states(
    partner_id: int, line_days: Iterable[tuple[int, dt.date]]
) -> dict[LineDay, RowState]:
    """The stored rows of the given line-days, as :data:`RowState` by (line, sub-account, day)."""
    wanted = set(line_days)
    states: dict[LineDay, RowState] = {}
    for chunk in _value_chunks(sorted({line for line, _ in wanted})):
        rows = (
            DailyLineRollup.objects.filter(
                partner_id=partner_id, day__in=sorted({day for _, day in wanted})
            )
            .filter(_any_of(DailyLineRollup, "line_id", chunk))
            .values_list("line_id", "sub_account_id", "day", "new_conversations", *_JUDGED)
        )
        for line, sub_account, day, *state in rows:
            if (line, day) in wanted:
                states[(line, sub_account, day)] = tuple(state)  # type: ignore[assignment]
    return states


def line_days_rejudge(*, partner_id: int, line_ids: Sequence[int], since: dt.datetime) -> int:
    """Judge again the lines' days from the one holding ``since`` on: after a limit change
    or a merge at ``since`` (the line-days it can change: the limit at their end, or
    which rows make one line-day). Runs in the caller's transaction, the lines locked
    by it; derived data, not audited. Returns the number of (sub-account, day) pairs
    whose pressure flags it judged."""
    partner = Partner.objects.get(pk=partner_id)
    zone = zoneinfo.ZoneInfo(partner.timezone)
    first_day = since.astimezone(zone).date()
    ids = sorted(set(line_ids))
    states: dict[LineDay, RowState] = {}
    current: dict[int, int] = {}
    spans: dict[int, list[Span]] = defaultdict(list)
    midnight = local_midnight(first_day, zone)
    for chunk in _value_chunks(ids):
        rows = (
            DailyLineRollup.objects.filter(partner_id=partner_id, day__gte=first_day)
            .filter(_any_of(DailyLineRollup, "line_id", chunk))
            .values_list("line_id", "sub_account_id", "day", "new_conversations", *_JUDGED)
        )
        for line, sub_account, day, *state in rows:
            states[(line, sub_account, day)] = tuple(state)  # type: ignore[assignment]
        current.update(
            Line.objects.filter(partner_id=partner_id)
            .filter(_any_of(Line, "id", chunk))
            .values_list("pk", "daily_limit")
        )
        periods = (
            AssignmentPeriod.objects.filter(partner_id=partner_id)
            .filter(Q(end__isnull=True) | Q(end__gt=midnight))
            .filter(_any_of(AssignmentPeriod, "line_id", chunk))
            .values_list("line_id", "sub_account_id", "start", "end", "via_merge")
        )
        for line, *span in periods:
            spans[line].append(Span(*span))
    _counted_capacity_follows_limits(partner_id, zone, ids, since, spans)
    if not states:
        return 0
    line_days = {(line, day) for line, _, day in states}
    limits = _day_end_limits(partner_id, zone, line_days, current)
    heads = _merge_heads_by_line_day(zone, line_days, spans)
    flags = _judge_and_write(partner_id, states, limits, heads)
    _add_to_sub_account_days(
        partner_id, {key: delta for key, delta in flags.items() if any(delta.values())}
    )
    return len(flags)


def _counted_capacity_follows_limits(
    partner_id: int,
    zone: zoneinfo.ZoneInfo,
    line_ids: Sequence[int],
    at: dt.datetime,
    spans: dict[int, list[Span]],
) -> None:
    """Limits that changed at ``at``, after the job counted the day in progress: the count
    holds each line's old limit for every sub-account that held the line by then, so the
    difference is added to those sub-account days (and their weeks, months and partner
    day). Reads add only the line-days gained since the count, with the limits of now,
    so the day's Σ limits are the limits now at any time, not at the job's next run."""
    state = (
        PartnerAnalyticsState.objects.filter(partner_id=partner_id)
        .values_list("capacity_day", "capacity_at")
        .first()
    )
    if not state or state[1] is None or at <= state[1] or at.astimezone(zone).date() != state[0]:
        return
    day, counted_at = state
    differences: dict[int, int] = {}
    for chunk in _value_chunks(sorted(line_ids)):
        changes = LineLimitChange.objects.filter(partner_id=partner_id, at=at).filter(
            _any_of(LineLimitChange, "line_id", chunk)
        )
        for line, old, new in changes.values_list("line_id", "old_limit", "new_limit"):
            differences[line] = new - old
    day_start = local_midnight(day, zone)
    held: dict[tuple[int, dt.date], dict[str, int]] = {}
    for line, difference in differences.items():
        for sub_account_id in _holders_at_count(spans.get(line, ()), day_start, counted_at):
            row = held.setdefault((sub_account_id, day), dict.fromkeys(_CAPACITY, 0))
            row["limit_line_days"] += difference
    _add_to_sub_account_days(partner_id, held, columns=_CAPACITY)


def _holders_at_count(
    spans: Sequence[Span], day_start: dt.datetime, counted_at: dt.datetime
) -> set[int]:
    """The sub-accounts whose count of the day starting ``day_start`` (made at
    ``counted_at``) included the line: every holder of it that day up to the count, but
    not one the line left by a merge before the count (counted in the target)."""
    ordered = sorted(spans, key=lambda s: s.start)
    holders = set()
    for span, after in zip(ordered, [*ordered[1:], None], strict=True):
        if span.start > counted_at or span.end == span.start:
            continue
        if span.end is not None and span.end <= day_start:
            continue
        left_by_merge = (
            after is not None
            and after.via_merge
            and after.start == span.end
            and span.end is not None
            and span.end <= counted_at
        )
        if not left_by_merge:
            holders.add(span.sub_account_id)
    return holders


def _upsert(
    model: type[models.Model],
    partner_id: int,
    keys: Sequence[str],
    rows: dict[tuple, Sequence[int]],
    columns: Sequence[str],
    *,
    added: Sequence[str],
    returning: Sequence[str] = (),
    kept: Sequence[str] = (),
) -> list[tuple]:
    """``INSERT … ON CONFLICT DO UPDATE`` of rollup rows in one statement (on SQLite one
    per chunk), in key order so concurrent writers lock rows in the same order.

    ``rows`` maps the values of ``keys`` (after ``partner_id``) to the values of
    ``columns``. On a clash the ``added`` columns are added to the stored ones
    (ingestion's differences commute, so two batches for different lines of one
    sub-account cannot overwrite each other) and the other columns replaced, except the
    ``kept`` ones, which a stored row keeps. Columns of the table not named start at zero.
    Returns the ``returning`` columns of every row written.
    """
    if not rows:
        return []
    table = model._meta.db_table
    quote = connection.ops.quote_name
    names = ["partner_id", *keys, *columns]
    updates = [
        f"{quote(c)} = {table}.{quote(c)} + EXCLUDED.{quote(c)}"
        if c in added
        else f"{quote(c)} = EXCLUDED.{quote(c)}"
        for c in columns
        if c not in kept
    ]
    conflict = ", ".join(quote(n) for n in ["partner_id", *keys])
    tail = f" ON CONFLICT ({conflict}) DO UPDATE SET {', '.join(updates)}"
    if returning:
        tail += " RETURNING " + ", ".join(quote(c) for c in returning)
    # Columns a statement does not name start at zero.
    defaults = [name for name in ROLLUP_SUMS if name not in columns and _has_field(model, name)]
    all_names = ", ".join(quote(n) for n in [*names, *defaults])
    zeros = ["0"] * len(defaults)
    values = [(partner_id, *key, *row) for key, row in sorted(rows.items())]
    result: list[tuple] = []
    with connection.cursor() as cursor:
        if _postgres():
            arrays = [
                _pg_array(_sql_type(model, n), column)
                for n, column in zip(names, zip(*values, strict=True), strict=True)
            ]
            # Identifiers come from model metadata; values are array parameters.
            cursor.execute(
                f"INSERT INTO {table} ({all_names}) "  # noqa: S608
                f"SELECT u.*{''.join(', ' + z for z in zeros)} "
                f"FROM unnest({', '.join(sql for sql, _ in arrays)}) AS u" + tail,
                [param for _, param in arrays],
            )
            return cursor.fetchall() if returning else []
        placeholder = "(" + ", ".join(["%s"] * len(names) + zeros) + ")"
        adapt = _sqlite_adapter()
        for chunk in _chunks(values, max(1, 30_000 // len(names) // 2)):
            cursor.execute(  # identifiers from model metadata; values are parameters
                f"INSERT INTO {table} ({all_names}) VALUES "  # noqa: S608
                + ", ".join([placeholder] * len(chunk))
                + tail,
                [adapt(v) for row in chunk for v in row],
            )
            if returning:
                result.extend(cursor.fetchall())
    return result


def _add_to_stored(
    model: type[models.Model],
    partner_id: int,
    keys: Sequence[str],
    rows: dict[tuple, Sequence[int]],
    columns: Sequence[str],
    returning: Sequence[str],
) -> list[tuple]:
    """``UPDATE … FROM`` adding ``rows`` (values of ``columns`` by the values of ``keys``)
    to rows that must already be stored; returns their ``returning`` columns."""
    if not rows:
        return []
    table = model._meta.db_table
    quote = connection.ops.quote_name
    names = [*keys, *columns]
    values = [(*key, *row) for key, row in sorted(rows.items())]
    if _postgres():
        arrays = [
            _pg_array(_sql_type(model, n), column)
            for n, column in zip(names, zip(*values, strict=True), strict=True)
        ]
        source = f"SELECT * FROM unnest({', '.join(sql for sql, _ in arrays)})"  # noqa: S608
        params: list[Any] = [param for _, param in arrays]
    else:
        adapt = _sqlite_adapter()
        row_sql = "(" + ", ".join(["%s"] * len(names)) + ")"
        source = "VALUES " + ", ".join([row_sql] * len(values))
        params = [adapt(v) for row in values for v in row]
    sets = ", ".join(f"{quote(c)} = {table}.{quote(c)} + d.{quote(c)}" for c in columns)
    matches = " AND ".join(f"{table}.{quote(k)} = d.{quote(k)}" for k in keys)
    # Identifiers come from model metadata; values are parameters.
    sql = (
        f"WITH d ({', '.join(quote(n) for n in names)}) AS ({source}) "  # noqa: S608
        f"UPDATE {table} SET {sets} FROM d WHERE {table}.partner_id = %s AND {matches} "
        f"RETURNING {', '.join(f'{table}.{quote(c)}' for c in returning)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, partner_id])
        result = cursor.fetchall()
    if len(result) != len(rows):
        raise RuntimeError(f"{table}: {len(rows) - len(result)} row(s) to take from are missing")
    return result


def _has_field(model: type[models.Model], name: str) -> bool:
    return any(f.name == name for f in model._meta.concrete_fields)


def bucket_starts(day: dt.date) -> dict[str, dt.date]:
    """The week (from Monday) and the month ``day`` falls in."""
    return {
        Grain.WEEK: day - dt.timedelta(days=day.weekday()),
        Grain.MONTH: day.replace(day=1),
    }


def _in_buckets(
    rows: dict[tuple[int, dt.date], dict[str, int]], columns: Sequence[str]
) -> dict[tuple[int, str, dt.date], list[int]]:
    buckets: dict[tuple[int, str, dt.date], list[int]] = defaultdict(lambda: [0] * len(columns))
    for (sub_account_id, day), values in rows.items():
        for grain, start in bucket_starts(day).items():
            total = buckets[(sub_account_id, grain, start)]
            for i, name in enumerate(columns):
                total[i] += values[name]
    return buckets


def _by_day(
    rows: dict[tuple[int, dt.date], dict[str, int]], columns: Sequence[str]
) -> dict[tuple[dt.date], list[int]]:
    """Sub-account days summed per day: the partner's rows."""
    days: dict[tuple[dt.date], list[int]] = defaultdict(lambda: [0] * len(columns))
    for (_, day), values in rows.items():
        total = days[(day,)]
        for i, name in enumerate(columns):
            total[i] += values[name]
    return days


def _add_to_sub_account_days(
    partner_id: int,
    deltas: dict[tuple[int, dt.date], dict[str, int]],
    *,
    columns: Sequence[str] = _SUMMED,
) -> None:
    """Add differences (ingestion's, or a limit's to a counted day's capacity) to the
    sub-accounts' days, weeks and months, and to the partner's days, in that order."""
    if not deltas:
        return
    _upsert(
        DailySubAccountRollup,
        partner_id,
        ("sub_account_id", "day"),
        {key: [delta[c] for c in columns] for key, delta in deltas.items()},
        columns,
        added=columns,
    )
    _upsert(
        SubAccountRollupBucket,
        partner_id,
        ("sub_account_id", "grain", "start"),
        _in_buckets(deltas, columns),
        columns,
        added=columns,
    )
    _upsert(
        DailyPartnerRollup, partner_id, ("day",), _by_day(deltas, columns), columns, added=columns
    )


def sub_account_buckets_rebuild(*, partner_id: int) -> int:
    """Recompute a partner's week and month buckets and its own days from its sub-accounts'
    days (repair, data loads).

    Derived data: logged, not audited. Returns the number of bucket rows written.
    """
    with transaction.atomic():
        SubAccountRollupBucket.objects.filter(partner_id=partner_id).delete()
        DailyPartnerRollup.objects.filter(partner_id=partner_id).delete()
        days = {}
        for row in DailySubAccountRollup.objects.filter(partner_id=partner_id).values():
            days[(row["sub_account_id"], row["day"])] = row
        buckets = _in_buckets(days, ROLLUP_SUMS)
        keys = ("sub_account_id", "grain", "start")
        _upsert(SubAccountRollupBucket, partner_id, keys, buckets, ROLLUP_SUMS, added=())
        partner_days = _by_day(days, ROLLUP_SUMS)
        _upsert(DailyPartnerRollup, partner_id, ("day",), partner_days, ROLLUP_SUMS, added=())
    logger.info("analytics: rebuilt %d bucket(s) of partner %s", len(buckets), partner_id)
    return len(buckets)


# --- Periodic jobs: closing days, pruning raw events -------------------------------------

CLOSE_DAYS_PER_STATEMENT = 7


def _state(partner_id: int) -> PartnerAnalyticsState:
    """The partner's analytics state row, locked (created on first use)."""
    PartnerAnalyticsState.objects.get_or_create(partner_id=partner_id)
    return PartnerAnalyticsState.objects.select_for_update().get(partner_id=partner_id)


def analytics_days_close(*, partner_id: int) -> int:
    """Store the capacity (line-days, Σ limits) of the partner's ended days not stored yet,
    then the capacity of the day in progress so far.

    Backfills from the partner's first line if no day was closed yet. A day is
    closed once: the capacity columns are replaced by :func:`selectors.line_days`
    (each line's limit at the end of the day, from its history, so a day closed late
    counts as one closed on time), in one statement per few days,
    each batch in a transaction that also moves ``days_closed_through``, so a rerun
    resumes. The day in progress is counted the same way and stamped in the state
    (``capacity_day``, ``capacity_at``): reads then add only the lines that arrived
    since, instead of counting a partner's lines on every request. Derived data:
    logged, not audited. Returns the number of days closed.
    """
    partner = Partner.objects.get(pk=partner_id)
    zone = zoneinfo.ZoneInfo(partner.timezone)
    now = clock.now()
    today = now.astimezone(zone).date()
    yesterday = today - dt.timedelta(days=1)
    closed = 0
    while True:
        with transaction.atomic():
            state = _state(partner_id)
            first = (
                state.days_closed_through + dt.timedelta(days=1)
                if state.days_closed_through
                else _first_day(partner_id, zone)
            )
            if first is None or first > yesterday:
                break
            last = min(yesterday, first + dt.timedelta(days=CLOSE_DAYS_PER_STATEMENT - 1))
            days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
            _store_capacity(partner_id, zone, days)
            state.days_closed_through = last
            state.save(update_fields=["days_closed_through"])
            closed += len(days)
    with transaction.atomic():
        state = _state(partner_id)
        if state.days_closed_through is not None or _first_day(partner_id, zone) is not None:
            _store_capacity(partner_id, zone, [today])
            state.capacity_day, state.capacity_at = today, now
            state.save(update_fields=["capacity_day", "capacity_at"])
    if closed:
        logger.info("analytics: closed %d day(s) of partner %s", closed, partner_id)
    return closed


_CAPACITY = ("active_line_days", "limit_line_days")


def _store_capacity(partner_id: int, zone: zoneinfo.ZoneInfo, days: list[dt.date]) -> None:
    """Set the capacity of ``days`` to :func:`selectors.line_days` counted now, on the
    sub-account days and the partner's days, and add what changed to weeks and months
    (a day counted before, in progress, changes by the lines and limits since)."""
    counted = line_days(partner_id=partner_id, zone=zone, days=days)
    stored = DailySubAccountRollup.objects.filter(partner_id=partner_id, day__in=days).filter(
        Q(active_line_days__gt=0) | Q(limit_line_days__gt=0)
    )
    before = {
        (sub_account_id, day): (lines, limits)
        for sub_account_id, day, lines, limits in stored.values_list(
            "sub_account_id", "day", *_CAPACITY
        )
    }
    rows: dict[tuple[int, dt.date], dict[str, int]] = {}
    changes: dict[tuple[int, dt.date], dict[str, int]] = {}
    for key in set(counted) | set(before):
        lines, limits = counted.get(key, (0, 0))
        old_lines, old_limits = before.get(key, (0, 0))
        rows[key] = {"active_line_days": lines, "limit_line_days": limits}
        if (lines, limits) != (old_lines, old_limits):
            changes[key] = {
                "active_line_days": lines - old_lines,
                "limit_line_days": limits - old_limits,
            }
    day_rows = {key: [row[c] for c in _CAPACITY] for key, row in rows.items()}
    _upsert(
        DailySubAccountRollup, partner_id, ("sub_account_id", "day"), day_rows, _CAPACITY, added=()
    )
    partner_days = _by_day(rows, _CAPACITY)
    _upsert(DailyPartnerRollup, partner_id, ("day",), partner_days, _CAPACITY, added=())
    keys = ("sub_account_id", "grain", "start")
    buckets = _in_buckets(changes, _CAPACITY)
    _upsert(SubAccountRollupBucket, partner_id, keys, buckets, _CAPACITY, added=_CAPACITY)


def _first_day(partner_id: int, zone: zoneinfo.ZoneInfo) -> dt.date | None:
    first = (
        AssignmentPeriod.objects.filter(partner_id=partner_id)
        .order_by("start")
        .values_list("start", flat=True)
        .first()
    )
    return first.astimezone(zone).date() if first else None


def analytics_days_close_all() -> int:
    """:func:`analytics_days_close` for every partner that has lines."""
    partner_ids = AssignmentPeriod.objects.values_list("partner_id", flat=True).distinct()
    return sum(analytics_days_close(partner_id=pk) for pk in sorted(set(partner_ids)))


PRUNE_BATCH = 10_000


def message_events_prune(*, partner_id: int, batch_size: int = PRUNE_BATCH) -> int:
    """Delete the partner's raw events of days older than ``EVENT_RETENTION_DAYS``.

    The horizon (``events_pruned_before``) is moved first, in its own transaction,
    so from then on ingestion refuses events for those days; then the events go in
    batches of ``batch_size`` (one ``DELETE … WHERE id IN (…)`` each, its own
    transaction), so a killed worker leaves a consistent state and the next run
    finishes. Conversations and rollups are kept. Returns the number deleted.
    """
    partner = Partner.objects.get(pk=partner_id)
    zone = zoneinfo.ZoneInfo(partner.timezone)
    cutoff = clock.now().astimezone(zone).date() - dt.timedelta(days=settings.EVENT_RETENTION_DAYS)
    with transaction.atomic():
        state = _state(partner_id)
        if state.events_pruned_before is None or state.events_pruned_before < cutoff:
            state.events_pruned_before = cutoff
            state.save(update_fields=["events_pruned_before"])
        cutoff = state.events_pruned_before
    deleted = 0
    old = MessageEvent.objects.filter(partner_id=partner_id, local_day__lt=cutoff)
    while True:
        with transaction.atomic():
            ids = list(old.order_by().values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            deleted += MessageEvent.objects.filter(pk__in=ids).delete()[0]
    if deleted:
        logger.info(
            "analytics: pruned %d raw event(s) of partner %s before %s", deleted, partner_id, cutoff
        )
    return deleted


def message_events_prune_all(*, batch_size: int = PRUNE_BATCH) -> int:
    """:func:`message_events_prune` for every partner that has events."""
    partner_ids = Partner.objects.values_list("pk", flat=True)
    return sum(message_events_prune(partner_id=pk, batch_size=batch_size) for pk in partner_ids)
