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
import re
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import phonenumbers
from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Count, Q

from portal.accounts.policies import require
from portal.accounts.principal import Principal
from portal.analytics.conversations import ConversationSpan, PairEvent, conversations_for
from portal.analytics.models import (
    Conversation,
    ConversationKind,
    DailyLineRollup,
    DailySubAccountRollup,
    Direction,
    Grain,
    MessageEvent,
    PartnerAnalyticsState,
    SubAccountRollupBucket,
)
from portal.analytics.policies import can_ingest_message_events
from portal.analytics.selectors import NEAR_LIMIT_TENTHS, ROLLUP_SUMS, line_days, local_midnight
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
_E164_SHAPE = re.compile(r"\+[0-9]{1,20}")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


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
        if _CONTROL.search(text):
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
    model: type[models.Model],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    conflict_safe: bool = False,
) -> None:
    """Insert plain tuples: COPY on PostgreSQL, one prepared ``executemany`` on SQLite.

    Model instances and ``bulk_create`` cost more than the database does at ten
    thousand rows a request. With ``conflict_safe`` a unique-key clash makes the
    whole set go again with ``ON CONFLICT DO NOTHING`` (rows already there are kept).
    """
    if not rows:
        return
    table = model._meta.db_table
    quote = connection.ops.quote_name
    names = ", ".join(quote(c) for c in columns)
    if connection.vendor == "postgresql":
        try:
            copy_sql = f"COPY {table} ({names}) FROM STDIN"
            with (
                transaction.atomic(),
                connection.cursor() as cursor,
                cursor.cursor.copy(copy_sql) as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            return
        except IntegrityError:
            if not conflict_safe:
                raise
        adapted: Iterable[Sequence[Any]] = rows
    else:
        adapt = _sqlite_adapter()
        adapted = [tuple(adapt(v) for v in row) for row in rows]
    # Identifiers come from model metadata; values are parameters.
    sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(columns))})"  # noqa: S608
    if conflict_safe:
        sql += " ON CONFLICT DO NOTHING"
    with connection.cursor() as cursor:
        cursor.executemany(sql, adapted)


def _sqlite_adapter():
    """Values as Django stores them on SQLite: naive UTC text for datetimes, ISO dates."""

    def adapt(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")
        if isinstance(value, dt.date):
            return value.isoformat()
        return value

    return adapt


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

        zones = _zones({holder.partner_id for _, holder in resolved})
        pruned_before = _pruned_before(zones)
        kept = []
        for event, holder in resolved:
            day = event.occurred_at.astimezone(zones[holder.partner_id]).date()
            horizon = pruned_before.get(holder.partner_id)
            if horizon is not None and day < horizon:
                report.rejected.append({"index": event.index, "detail": _pruned_detail(day)})
                continue
            kept.append((event, holder))
        fresh = _drop_duplicates(kept, report)
        rows = [
            _Stored(
                holder.partner_id,
                event.event_id,
                holder.line_id,
                holder.sub_account_id,
                event.direction,
                event.contact_hash,
                event.occurred_at,
                event.occurred_at.astimezone(zones[holder.partner_id]).date(),
                now,
            )
            for event, holder in fresh
        ]
        # The lines are locked, so no other request inserts these ids meanwhile; a
        # conflict (the same id sent for two lines at once) is only a safety net.
        _insert(MessageEvent, _Stored._fields, rows, conflict_safe=True)
        report.accepted = len(rows)
        by_partner: dict[int, list[_Stored]] = defaultdict(list)
        for row in rows:
            by_partner[row.partner_id].append(row)
        for partner_id, partner_rows in sorted(by_partner.items()):
            _refresh_derived(
                partner_id, zones[partner_id], partner_rows, pruned_before.get(partner_id)
            )

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
_LINE_ROLLUP_COLUMNS = (
    "partner_id",
    "line_id",
    "sub_account_id",
    "day",
    "daily_limit",
    *_SUMMED[:5],
)


def _counted(span: ConversationSpan) -> tuple:
    """What a conversation contributes to rollups (its bookkeeping times do not)."""
    return (span.kind, span.started_at, span.sub_account_id, span.responded)


def _refresh_derived(
    partner_id: int,
    zone: zoneinfo.ZoneInfo,
    new: list[_Stored],
    pruned_before: dt.date | None,
) -> None:
    """Recompute the touched pairs' conversations, then the rollups of every stale (line, day).

    A pair's conversations are derived from its kept events, seeded with its stored
    conversations that started before the prune horizon (whose events are gone).
    Only conversations that changed are rewritten, and only the days of those whose
    counted fields changed are recounted.
    """
    horizon = local_midnight(pruned_before, zone) if pruned_before else None
    pairs: set[Pair] = {(e.line_id, e.contact_hash) for e in new}
    stale_days: dict[int, set[dt.date]] = defaultdict(set)
    for event in new:
        stale_days[event.line_id].add(event.local_day)

    history: dict[Pair, list[PairEvent]] = defaultdict(list)
    old: dict[Pair, list[tuple[int, dt.date, ConversationSpan]]] = defaultdict(list)
    hashes = sorted({contact for _, contact in pairs})
    # By contact hash only (nearly unique to a pair); rows of other pairs are skipped.
    for hash_chunk in _chunks(hashes):
        stored = Conversation.objects.filter(
            partner_id=partner_id, contact_hash__in=hash_chunk
        ).values_list(
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
        for pk, line_id, contact, local_day, *span in stored:
            if (line_id, contact) in pairs:
                old[(line_id, contact)].append((pk, local_day, ConversationSpan(*span)))
    # Every stored event belongs to a stored conversation of its pair (both are written
    # in one transaction, under the line's lock), so a pair without one has no history
    # but this batch: only known pairs' events are read back.
    for event in new:
        if (event.line_id, event.contact_hash) not in old:
            history[(event.line_id, event.contact_hash)].append(
                PairEvent(event.occurred_at, event.direction, event.event_id, event.sub_account_id)
            )
    for hash_chunk in _chunks(sorted({contact for _, contact in old})):
        rows = MessageEvent.objects.filter(
            partner_id=partner_id, contact_hash__in=hash_chunk
        ).values_list(
            "line_id", "contact_hash", "occurred_at", "direction", "event_id", "sub_account_id"
        )
        for line_id, contact, at, direction, event_id, sub_account_id in rows:
            if (line_id, contact) in old:
                history[(line_id, contact)].append(
                    PairEvent(at, direction, event_id, sub_account_id)
                )

    stale_conversations: list[int] = []
    replacements: list[tuple] = []
    for pair in sorted(pairs):
        line_id, contact = pair
        stored = old[pair]
        prior = [span for _, _, span in stored if horizon is not None and span.started_at < horizon]
        spans = conversations_for(history[pair], prior=prior, horizon=horizon)
        before = {span: (pk, local_day) for pk, local_day, span in stored}
        after = set(spans)
        if set(before) == after:
            continue
        counted_before = {_counted(span) for span in before}
        counted_after = {_counted(span) for span in after}
        for span, (pk, local_day) in before.items():
            if span not in after:
                stale_conversations.append(pk)
                if _counted(span) not in counted_after:
                    stale_days[line_id].add(local_day)
        for span in spans:
            if span in before:
                continue
            local_day = span.started_at.astimezone(zone).date()
            if _counted(span) not in counted_before:
                stale_days[line_id].add(local_day)
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
    for chunk in _chunks(stale_conversations):
        Conversation.objects.filter(pk__in=chunk).delete()
    _insert(Conversation, _CONVERSATION_COLUMNS, replacements)
    deltas = _recount_rollups(partner_id, stale_days, pruned_before)
    _add_to_sub_account_days(partner_id, deltas)


def _pressure(new_conversations: int, daily_limit: int) -> dict[str, int]:
    """A line rollup's near-limit and over-limit flags, as counts of line-days."""
    return {
        "near_limit_line_days": int(new_conversations * 10 >= daily_limit * NEAR_LIMIT_TENTHS),
        "over_pressured_line_days": int(new_conversations >= daily_limit),
    }


def _recount_rollups(
    partner_id: int, stale_days: dict[int, set[dt.date]], pruned_before: dt.date | None
) -> dict[tuple[int, dt.date], dict[str, int]]:
    """Delete and re-insert the rollups of lines × days, counted from events and conversations.

    For a chunk of lines the recount covers every day stale for any of them: the
    rows deleted and the rows counted are the same set, so extra (line, day)
    combinations are simply rewritten with the counts they already had. On a day
    whose events were pruned the message counts are taken from the old rows (only a
    conversation's ``responded`` can still change there). A row keeps the daily limit
    it was first counted against.

    Returns what changed per (sub-account, day): new rows minus old rows, over
    :data:`_SUMMED`.
    """
    deltas: dict[tuple[int, dt.date], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(_SUMMED, 0)
    )
    for line_chunk in _chunks(sorted(stale_days)):
        days = sorted(set().union(*(stale_days[line_id] for line_id in line_chunk)))
        scope = {"partner_id": partner_id, "line_id__in": line_chunk}
        old_rows = {
            (row["line_id"], row["sub_account_id"], row["day"]): row
            for row in DailyLineRollup.objects.filter(**scope, day__in=days).values(
                "pk", "line_id", "sub_account_id", "day", "daily_limit", *_SUMMED[:5]
            )
        }
        counts: dict[tuple[int, int, dt.date], dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(_SUMMED[:5], 0)
        )
        kept_days = [d for d in days if pruned_before is None or d >= pruned_before]
        events = (
            MessageEvent.objects.filter(**scope, local_day__in=kept_days)
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
        for key, row in old_rows.items():
            if pruned_before is not None and key[2] < pruned_before:
                counts[key].update(
                    messages_sent=row["messages_sent"], messages_received=row["messages_received"]
                )
        conversations = (
            Conversation.objects.filter(**scope, local_day__in=days)
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
        limits = dict(Line.objects.filter(pk__in=line_chunk).values_list("pk", "daily_limit"))
        fresh = []
        for key, values in sorted(counts.items()):
            if not any(values.values()):
                continue
            line_id, sub_account_id, day = key
            limit = old_rows[key]["daily_limit"] if key in old_rows else limits[line_id]
            values = {**values, **_pressure(values["new_conversations"], limit)}
            delta = deltas[(sub_account_id, day)]
            for name in _SUMMED:
                delta[name] += values[name]
            fresh.append(
                (
                    partner_id,
                    line_id,
                    sub_account_id,
                    day,
                    limit,
                    *(values[name] for name in _SUMMED[:5]),
                )
            )
        for (_, sub_account_id, day), row in old_rows.items():
            delta = deltas[(sub_account_id, day)]
            row.update(_pressure(row["new_conversations"], row["daily_limit"]))
            for name in _SUMMED:
                delta[name] -= row[name]
        for chunk in _chunks([row["pk"] for row in old_rows.values()]):
            DailyLineRollup.objects.filter(pk__in=chunk).delete()
        _insert(DailyLineRollup, _LINE_ROLLUP_COLUMNS, fresh)
    return {key: delta for key, delta in deltas.items() if any(delta.values())}


def _upsert(
    model: type[models.Model],
    partner_id: int,
    keys: Sequence[str],
    rows: dict[tuple, dict[str, int]],
    columns: Sequence[str],
    *,
    add: bool,
) -> None:
    """``INSERT … ON CONFLICT DO UPDATE`` of rollup rows, one statement per chunk.

    ``rows`` maps the values of ``keys`` (after ``partner_id``) to column values.
    ``add`` adds the values to the stored ones (ingestion's deltas commute, so two
    batches for different lines of one sub-account cannot overwrite each other);
    otherwise the values replace the stored ones.
    """
    if not rows:
        return
    table = model._meta.db_table
    quote = connection.ops.quote_name
    names = ["partner_id", *keys, *columns]
    if add:
        updates = [f"{quote(c)} = {table}.{quote(c)} + EXCLUDED.{quote(c)}" for c in columns]
    else:
        updates = [f"{quote(c)} = EXCLUDED.{quote(c)}" for c in columns]
    # Columns a statement does not name start at zero.
    defaults = [name for name in ROLLUP_SUMS if name not in columns]
    all_names = ", ".join(quote(n) for n in [*names, *defaults])
    placeholder = "(" + ", ".join(["%s"] * len(names) + ["0"] * len(defaults)) + ")"
    conflict = ", ".join(quote(n) for n in ["partner_id", *keys])

    def adapt(value: Any) -> Any:
        return connection.ops.adapt_datefield_value(value) if isinstance(value, dt.date) else value

    items = sorted(rows.items())
    per_statement = max(1, 30_000 // len(names) // 2)
    with connection.cursor() as cursor:
        for chunk in _chunks(items, per_statement):
            params: list[Any] = []
            for key, values in chunk:
                params += [partner_id, *(adapt(k) for k in key), *(values[c] for c in columns)]
            cursor.execute(  # identifiers from model metadata; values are parameters
                f"INSERT INTO {table} ({all_names}) VALUES "  # noqa: S608
                + ", ".join([placeholder] * len(chunk))
                + f" ON CONFLICT ({conflict}) DO UPDATE SET "
                + ", ".join(updates),
                params,
            )


def bucket_starts(day: dt.date) -> dict[str, dt.date]:
    """The week (from Monday) and the month ``day`` falls in."""
    return {
        Grain.WEEK: day - dt.timedelta(days=day.weekday()),
        Grain.MONTH: day.replace(day=1),
    }


def _in_buckets(
    rows: dict[tuple[int, dt.date], dict[str, int]], columns: Sequence[str]
) -> dict[tuple[int, str, dt.date], dict[str, int]]:
    buckets: dict[tuple[int, str, dt.date], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(columns, 0)
    )
    for (sub_account_id, day), values in rows.items():
        for grain, start in bucket_starts(day).items():
            total = buckets[(sub_account_id, grain, start)]
            for name in columns:
                total[name] += values[name]
    return buckets


def _add_to_sub_account_days(
    partner_id: int, deltas: dict[tuple[int, dt.date], dict[str, int]]
) -> None:
    """Add ingestion's deltas to the days and to their weeks and months."""
    _upsert(DailySubAccountRollup, partner_id, ("sub_account_id", "day"), deltas, _SUMMED, add=True)
    _upsert(
        SubAccountRollupBucket,
        partner_id,
        ("sub_account_id", "grain", "start"),
        _in_buckets(deltas, _SUMMED),
        _SUMMED,
        add=True,
    )


def sub_account_buckets_rebuild(*, partner_id: int) -> int:
    """Recompute a partner's week and month buckets from its days (repair, data loads).

    Derived data: logged, not audited. Returns the number of bucket rows written.
    """
    with transaction.atomic():
        SubAccountRollupBucket.objects.filter(partner_id=partner_id).delete()
        days = {}
        for row in DailySubAccountRollup.objects.filter(partner_id=partner_id).values():
            days[(row["sub_account_id"], row["day"])] = row
        buckets = _in_buckets(days, ROLLUP_SUMS)
        _upsert(
            SubAccountRollupBucket,
            partner_id,
            ("sub_account_id", "grain", "start"),
            buckets,
            ROLLUP_SUMS,
            add=False,
        )
    logger.info("analytics: rebuilt %d bucket(s) of partner %s", len(buckets), partner_id)
    return len(buckets)


# --- Periodic jobs: closing days, pruning raw events -------------------------------------

CLOSE_DAYS_PER_STATEMENT = 7


def _state(partner_id: int) -> PartnerAnalyticsState:
    """The partner's analytics state row, locked (created on first use)."""
    PartnerAnalyticsState.objects.get_or_create(partner_id=partner_id)
    return PartnerAnalyticsState.objects.select_for_update().get(partner_id=partner_id)


def analytics_days_close(*, partner_id: int) -> int:
    """Store the capacity (line-days, Σ limits) of the partner's ended days not stored yet.

    Backfills from the partner's first line if no day was closed yet. A day is
    closed once: the capacity columns are replaced by :func:`selectors.line_days`
    computed now (the line's limit at this moment), in one statement per few days,
    each batch in a transaction that also moves ``days_closed_through``, so a rerun
    resumes. Derived data: logged, not audited. Returns the number of days closed.
    """
    partner = Partner.objects.get(pk=partner_id)
    zone = zoneinfo.ZoneInfo(partner.timezone)
    yesterday = clock.now().astimezone(zone).date() - dt.timedelta(days=1)
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
            capacity = line_days(partner_id=partner_id, zone=zone, days=days)
            columns = ("active_line_days", "limit_line_days")
            rows = {
                key: {"active_line_days": lines, "limit_line_days": limits}
                for key, (lines, limits) in capacity.items()
            }
            # Each day is closed once (``days_closed_through`` moves in this transaction),
            # so its capacity is set on the day and added to its week and month.
            _upsert(
                DailySubAccountRollup,
                partner_id,
                ("sub_account_id", "day"),
                rows,
                columns,
                add=False,
            )
            _upsert(
                SubAccountRollupBucket,
                partner_id,
                ("sub_account_id", "grain", "start"),
                _in_buckets(rows, columns),
                columns,
                add=True,
            )
            state.days_closed_through = last
            state.save(update_fields=["days_closed_through"])
            closed += len(days)
    if closed:
        logger.info("analytics: closed %d day(s) of partner %s", closed, partner_id)
    return closed


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
