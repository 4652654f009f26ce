"""Writes for analytics: ingesting message events and keeping the derived rows current.

``message_events_ingest`` validates a batch event by event, stores what it accepts
in one transaction, and in the same transaction recomputes the conversations of
every (line, contact) pair the batch touched and the daily rollups of every
(line, day) whose counts could have changed. Recomputing from stored events
(instead of adding to counters) is what makes late, out-of-order and repeated
deliveries come out exactly as an in-order delivery would.

Ingestion is machine data, not a change a person makes to a partner's objects,
so it records no audit event (one per batch would drown the audit log and tell
nobody anything); each request is logged instead with its counts and key.

Concurrency: the batch's lines are locked in id order (``FOR NO KEY UPDATE`` on
PostgreSQL; SQLite's IMMEDIATE transaction serialises writers), so two batches
touching a line recompute its pairs and days one after the other and the
"already stored" check is exact.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import hmac
import logging
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q

from portal.accounts.policies import require
from portal.accounts.principal import Principal
from portal.analytics.conversations import PairEvent, conversations_for
from portal.analytics.models import (
    Conversation,
    ConversationKind,
    DailyLineRollup,
    Direction,
    MessageEvent,
)
from portal.analytics.policies import can_ingest_message_events
from portal.core import clock
from portal.core.errors import Invalid
from portal.core.phone import normalize_e164
from portal.lines.models import AssignmentPeriod, Line, LineStatus
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
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is not None and phonenumbers.is_valid_number(parsed):
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return "".join(text.split()).casefold()


def contact_hash(raw: str) -> str:
    """HMAC-SHA256 (hex) of the normalised contact under ``settings.CONTACT_HASH_KEY``."""
    key = settings.CONTACT_HASH_KEY.encode()
    return hmac.new(key, normalise_contact(raw).encode(), hashlib.sha256).hexdigest()


# --- Validating one event -------------------------------------------------------------


class _Rejected(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class _Incoming:
    index: int
    event_id: str
    number: str
    direction: str
    contact_hash: str
    occurred_at: dt.datetime


class _Parser:
    """Checks one event at a time; a batch repeats numbers and contacts, so both are cached."""

    def __init__(self, now: dt.datetime) -> None:
        self.latest = now + FUTURE_TOLERANCE
        self._numbers: dict[str, str] = {}
        self._contacts: dict[str, str] = {}

    def parse(self, index: int, raw: Any) -> _Incoming:
        if not isinstance(raw, dict):
            raise _Rejected("Each event must be a JSON object.")
        missing = [name for name in _REQUIRED if raw.get(name) in (None, "")]
        if missing:
            raise _Rejected(f"Missing field(s): {', '.join(missing)}.")
        return _Incoming(
            index=index,
            event_id=self._event_id(raw["id"]),
            number=self._number(raw["line"]),
            direction=self._direction(raw["direction"]),
            contact_hash=self._contact(raw["contact"]),
            occurred_at=self._occurred_at(raw["occurred_at"]),
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
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
            raise _Rejected("id contains a control character.")
        return text

    def _number(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _Rejected("line must be a phone number in E.164 form (e.g. +14155550100).")
        if value not in self._numbers:
            try:
                self._numbers[value] = normalize_e164(value, field="line")
            except Invalid as exc:
                raise _Rejected(str(exc.detail)) from None
        return self._numbers[value]

    @staticmethod
    def _direction(value: Any) -> str:
        if value not in Direction.values:
            raise _Rejected(f"direction must be 'outbound' or 'inbound', not {value!r:.40}.")
        return value

    def _contact(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise _Rejected("contact must be a non-empty string.")
        if len(value) > MAX_CONTACT_LENGTH:
            raise _Rejected(f"contact is longer than {MAX_CONTACT_LENGTH} characters.")
        if "\x00" in value:
            raise _Rejected("contact contains a NUL character.")
        if value not in self._contacts:
            self._contacts[value] = contact_hash(value)
        return self._contacts[value]

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
        at = at.astimezone(dt.UTC)
        if at > self.latest:
            raise _Rejected("occurred_at is in the future.")
        return at


# --- Which line and sub-account an event belongs to ----------------------------------------


@dataclass(frozen=True, slots=True)
class _Holding:
    """One assignment period of a line carrying a number: who held it in ``[start, end)``."""

    start: dt.datetime
    end: dt.datetime | None
    line_id: int
    partner_id: int
    sub_account_id: int


def _lock_lines(principal: Principal, events: Sequence[_Incoming]) -> list[int]:
    """Ids of the lines that can have carried the events' numbers, locked in id order.

    The active line with the number answers almost every event, and the unique index
    on active numbers finds it. Disconnected lines are looked up only for numbers
    whose events predate the active line (or that no active line carries): late
    events of a disconnected or reissued number.
    """
    lines = Line.objects.visible_to(principal)
    active: dict[str, tuple[int, dt.datetime]] = {}
    for chunk in _chunks(sorted({e.number for e in events})):
        rows = lines.filter(status=LineStatus.ACTIVE, number__in=chunk).values_list(
            "number", "pk", "activated_at"
        )
        active.update((number, (pk, activated_at)) for number, pk, activated_at in rows)
    older = sorted(
        {e.number for e in events if e.number not in active or e.occurred_at < active[e.number][1]}
    )
    ids = [pk for pk, _ in active.values()]
    for chunk in _chunks(older):
        ids.extend(
            lines.filter(status=LineStatus.DISCONNECTED, number__in=chunk).values_list(
                "pk", flat=True
            )
        )
    ids.sort()
    for chunk in _chunks(ids):
        list(
            Line.objects.select_for_update(no_key=True)
            .filter(pk__in=chunk)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    return ids


def _holdings_by_number(line_ids: Sequence[int]) -> dict[str, list[_Holding]]:
    """Every assignment period of the lines, by number, oldest first.

    A number's lines never overlap in time (unique among active lines), and a
    line's periods tile its active life, so at most one period covers an instant.
    """
    by_number: dict[str, list[_Holding]] = defaultdict(list)
    for chunk in _chunks(line_ids):
        rows = AssignmentPeriod.objects.filter(line_id__in=chunk).values_list(
            "line__number", "start", "end", "line_id", "partner_id", "sub_account_id"
        )
        for number, start, end, *rest in rows:
            if start != end:  # a line moved at the instant it arrived held nothing
                by_number[number].append(_Holding(start, end, *rest))
    for holdings in by_number.values():
        holdings.sort(key=lambda h: h.start)
    return by_number


def _holder_at(holdings: list[_Holding], at: dt.datetime) -> _Holding | None:
    i = bisect.bisect_right([h.start for h in holdings], at) - 1
    if i < 0:
        return None
    holding = holdings[i]
    return holding if holding.end is None or at < holding.end else None


# --- Ingestion --------------------------------------------------------------------


@dataclass
class IngestReport:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


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
        line_ids = _lock_lines(principal, parsed)
        holdings = _holdings_by_number(line_ids)
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

        fresh = _drop_duplicates(resolved, report)
        zones = _zones({holder.partner_id for _, holder in fresh})
        rows = [
            MessageEvent(
                partner_id=holder.partner_id,
                event_id=event.event_id,
                line_id=holder.line_id,
                sub_account_id=holder.sub_account_id,
                direction=event.direction,
                contact_hash=event.contact_hash,
                occurred_at=event.occurred_at,
                local_day=event.occurred_at.astimezone(zones[holder.partner_id]).date(),
                received_at=now,
            )
            for event, holder in fresh
        ]
        # The lines are locked, so no other request inserts these ids meanwhile; the
        # conflict clause is a safety net, not the duplicate count.
        MessageEvent.objects.bulk_create(rows, batch_size=1_000, ignore_conflicts=True)
        report.accepted = len(rows)
        by_partner: dict[int, list[MessageEvent]] = defaultdict(list)
        for row in rows:
            by_partner[row.partner_id].append(row)
        for partner_id, partner_rows in sorted(by_partner.items()):
            _refresh_derived(partner_id, zones[partner_id], partner_rows)

    report.rejected.sort(key=lambda r: r["index"])
    logger.info(
        "message events from %s: %d accepted, %d duplicates, %d rejected",
        principal.label,
        report.accepted,
        report.duplicates,
        len(report.rejected),
    )
    return report


def _drop_duplicates(
    resolved: list[tuple[_Incoming, _Holding]], report: IngestReport
) -> list[tuple[_Incoming, _Holding]]:
    """The first of each id that is not stored yet; the others are counted as duplicates."""
    stored: set[tuple[int, str]] = set()
    ids_by_partner: dict[int, set[str]] = defaultdict(set)
    for event, holder in resolved:
        ids_by_partner[holder.partner_id].add(event.event_id)
    for partner_id, ids in ids_by_partner.items():
        for chunk in _chunks(sorted(ids)):
            stored.update(
                (partner_id, event_id)
                for event_id in MessageEvent.objects.filter(
                    partner_id=partner_id, event_id__in=chunk
                ).values_list("event_id", flat=True)
            )
    seen: set[str] = set()
    fresh = []
    for event, holder in resolved:
        if event.event_id in seen or (holder.partner_id, event.event_id) in stored:
            report.duplicates += 1
            continue
        seen.add(event.event_id)
        fresh.append((event, holder))
    return fresh


def _zones(partner_ids: Iterable[int]) -> dict[int, zoneinfo.ZoneInfo]:
    rows = Partner.objects.filter(pk__in=list(partner_ids)).values_list("pk", "timezone")
    return {pk: zoneinfo.ZoneInfo(tz) for pk, tz in rows}


# --- Conversations and rollups ------------------------------------------------------------


Pair = tuple[int, str]


def _refresh_derived(partner_id: int, zone: zoneinfo.ZoneInfo, new: list[MessageEvent]) -> None:
    """Recompute the touched pairs' conversations, then the rollups of every stale (line, day)."""
    pairs: set[Pair] = {(e.line_id, e.contact_hash) for e in new}
    stale_days: dict[int, set[dt.date]] = defaultdict(set)
    for event in new:
        stale_days[event.line_id].add(event.local_day)

    history: dict[Pair, list[PairEvent]] = defaultdict(list)
    old: dict[Pair, list[Conversation]] = defaultdict(list)
    lines = sorted({line_id for line_id, _ in pairs})
    hashes = sorted({contact for _, contact in pairs})
    # IN (lines) × IN (hashes) is a superset of the pairs; rows of other pairs are skipped.
    for line_chunk in _chunks(lines):
        for hash_chunk in _chunks(hashes):
            scope = {
                "partner_id": partner_id,
                "line_id__in": line_chunk,
                "contact_hash__in": hash_chunk,
            }
            rows = MessageEvent.objects.filter(**scope).values_list(
                "line_id", "contact_hash", "occurred_at", "direction", "event_id", "sub_account_id"
            )
            for line_id, contact, at, direction, event_id, sub_account_id in rows:
                if (line_id, contact) in pairs:
                    history[(line_id, contact)].append(
                        PairEvent(at, direction, event_id, sub_account_id)
                    )
            for conversation in Conversation.objects.filter(**scope):
                key = (conversation.line_id, conversation.contact_hash)
                if key in pairs:
                    old[key].append(conversation)

    stale_conversations: list[int] = []
    replacements: list[Conversation] = []
    for pair in sorted(pairs):
        line_id, contact = pair
        spans = conversations_for(history[pair])
        before = sorted(old[pair], key=lambda c: c.started_at)
        if [(c.kind, c.started_at, c.sub_account_id, c.responded) for c in before] == [
            (s.kind, s.started_at, s.sub_account_id, s.responded) for s in spans
        ]:
            continue
        for conversation in before:
            stale_conversations.append(conversation.pk)
            stale_days[line_id].add(conversation.local_day)
        for span in spans:
            local_day = span.started_at.astimezone(zone).date()
            stale_days[line_id].add(local_day)
            replacements.append(
                Conversation(
                    partner_id=partner_id,
                    line_id=line_id,
                    contact_hash=contact,
                    kind=span.kind,
                    started_at=span.started_at,
                    sub_account_id=span.sub_account_id,
                    local_day=local_day,
                    responded=span.responded,
                )
            )
    for chunk in _chunks(stale_conversations):
        Conversation.objects.filter(pk__in=chunk).delete()
    Conversation.objects.bulk_create(replacements, batch_size=1_000)
    _recount_rollups(partner_id, stale_days)


def _recount_rollups(partner_id: int, stale_days: dict[int, set[dt.date]]) -> None:
    """Delete and re-insert the rollups of lines × days, counted from events and conversations.

    For a chunk of lines the recount covers every day stale for any of them: the
    rows deleted and the rows counted are the same set, so extra (line, day)
    combinations are simply rewritten with the counts they already had.
    """
    for line_chunk in _chunks(sorted(stale_days)):
        days = sorted(set().union(*(stale_days[line_id] for line_id in line_chunk)))
        counts: dict[tuple[int, int, dt.date], dict[str, int]] = defaultdict(dict)
        events = (
            MessageEvent.objects.filter(
                partner_id=partner_id, line_id__in=line_chunk, local_day__in=days
            )
            .values("line_id", "sub_account_id", "local_day")
            .annotate(
                messages_sent=Count("pk", filter=Q(direction=Direction.OUTBOUND)),
                messages_received=Count("pk", filter=Q(direction=Direction.INBOUND)),
            )
            .order_by()
        )
        for row in events:
            key = (row.pop("line_id"), row.pop("sub_account_id"), row.pop("local_day"))
            counts[key].update(row)
        conversations = (
            Conversation.objects.filter(
                partner_id=partner_id, line_id__in=line_chunk, local_day__in=days
            )
            .values("line_id", "sub_account_id", "local_day")
            .annotate(
                new_conversations=Count("pk", filter=Q(kind=ConversationKind.NEW)),
                responded_conversations=Count(
                    "pk", filter=Q(kind=ConversationKind.NEW, responded=True)
                ),
                inbound_conversations=Count("pk", filter=Q(kind=ConversationKind.INBOUND)),
            )
            .order_by()
        )
        for row in conversations:
            key = (row.pop("line_id"), row.pop("sub_account_id"), row.pop("local_day"))
            counts[key].update(row)
        DailyLineRollup.objects.filter(
            partner_id=partner_id, line_id__in=line_chunk, day__in=days
        ).delete()
        DailyLineRollup.objects.bulk_create(
            [
                DailyLineRollup(
                    partner_id=partner_id,
                    line_id=line_id,
                    sub_account_id=sub_account_id,
                    day=day,
                    **values,
                )
                for (line_id, sub_account_id, day), values in sorted(counts.items())
            ],
            batch_size=1_000,
        )
