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

Floors: each event is checked by :mod:`~portal.analytics.parsing`, the statements with
many values come from :mod:`~portal.analytics.bulk_sql`, and the differences are added
to the rollups (and their line-days judged) by :mod:`~portal.analytics.rollups`.

Each batch that stored events sends :data:`message_events_ingested` inside its
transaction, naming the partners it touched, for the apps above analytics that react to
new figures (alerts evaluate their rules once it has committed).
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import zoneinfo
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.dispatch import Signal

from portal.accounts.policies import require
from portal.analytics.bulk_sql import (
    CHUNK,
    any_of,
    chunks,
    insert,
    pg_array,
    postgres,
    sql_type,
    sqlite_adapter,
    value_chunks,
)
from portal.analytics.conversations import ConversationSpan, PairEvent, conversations_for
from portal.analytics.models import (
    Conversation,
    ConversationKind,
    Direction,
    MessageEvent,
    PartnerAnalyticsState,
)
from portal.analytics.parsing import Incoming, Parser, Rejected
from portal.analytics.periods import local_midnight
from portal.analytics.policies import can_ingest_message_events
from portal.analytics.pressure import Span
from portal.analytics.rollups import (
    INBOUND,
    LINE_COUNTS,
    NEW,
    RECEIVED,
    RESPONDED,
    SENT,
    LineDay,
    LineFacts,
    add_to_line_days,
    add_to_sub_account_days,
)
from portal.core import clock
from portal.core.bulk import copy_binary
from portal.core.errors import Invalid
from portal.core.principal import Principal
from portal.core.retry import retry_on_lost_race
from portal.lines.models import AssignmentPeriod, Line, LineStatus
from portal.partners.models import Partner

logger = logging.getLogger("portal.analytics")

MAX_BATCH = 10_000


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


def _lock_lines(principal: Principal, events: Sequence[Incoming]) -> dict[int, _LockedLine]:
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
    for chunk in value_chunks(sorted({e.number for e in events})):
        rows = (
            lines.filter(any_of(Line, "number", chunk), status=LineStatus.ACTIVE)
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
    for chunk in value_chunks(older):
        rows = (
            lines.filter(any_of(Line, "number", chunk), status=LineStatus.DISCONNECTED)
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
    for chunk in value_chunks(sorted(lines)):
        rows = AssignmentPeriod.objects.filter(any_of(AssignmentPeriod, "line_id", chunk))
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


def _spans_by_line(holdings: dict[str, _Holdings]) -> dict[int, list[Span]]:
    spans: dict[int, list[Span]] = defaultdict(list)
    for known in holdings.values():
        for h in known.periods:
            spans[h.line_id].append(Span(h.sub_account_id, h.start, h.end, h.via_merge))
    return spans


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
    if postgres():
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
        for chunk in value_chunks(ids):
            stored = (
                MessageEvent.objects.filter(partner_id=partner_id)
                .filter(any_of(MessageEvent, "event_id", chunk))
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
        if postgres():
            arrays = [
                pg_array(sql_type(MessageEvent, c), column)
                for c, column in zip(_Stored._fields, zip(*rows, strict=True), strict=True)
            ]
            # Identifiers come from model metadata; values are parameters.
            cursor.execute(
                f"INSERT INTO {table} ({names}) "  # noqa: S608
                f"SELECT * FROM unnest({', '.join(sql for sql, _ in arrays)})" + conflict,
                [param for _, param in arrays],
            )
            return set(cursor.fetchall())
        adapt = sqlite_adapter()
        placeholder = "(" + ", ".join(["%s"] * len(_Stored._fields)) + ")"
        for chunk in chunks(rows, CHUNK // len(_Stored._fields)):
            cursor.execute(
                f"INSERT INTO {table} ({names}) VALUES "  # noqa: S608
                + ", ".join([placeholder] * len(chunk))
                + conflict,
                [adapt(v) for row in chunk for v in row],
            )
            inserted.update(cursor.fetchall())
    return inserted


# --- Ingestion --------------------------------------------------------------------

# Sent inside the ingestion transaction with ``partner_ids``, the partners whose figures
# the batch changed; a receiver that acts on committed figures defers with
# ``transaction.on_commit`` (a retried or rolled-back batch then announces nothing).
message_events_ingested = Signal()


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
    parser = Parser(now)
    parsed: list[Incoming] = []
    for index, raw in enumerate(events):
        try:
            parsed.append(parser.parse(index, raw))
        except Rejected as exc:
            report.rejected.append({"index": index, "detail": exc.detail})

    with transaction.atomic():
        lines = _lock_lines(principal, parsed)
        holdings = _holdings_by_number(lines)
        resolved: list[tuple[Incoming, _Holding]] = []
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
        facts = LineFacts(
            current={pk: line.daily_limit for pk, line in lines.items()},
            spans=_spans_by_line(holdings),
        )
        for partner_id, changes in derived.items():
            _write_derived(partner_id, changes, zones[partner_id], facts)
        if derived:
            message_events_ingested.send(sender=IngestReport, partner_ids=sorted(derived))

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


# --- Conversations ----------------------------------------------------------------


Pair = tuple[int, str]


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
        delta[NEW] += sign
        if span.responded:
            delta[RESPONDED] += sign
    else:
        delta[INBOUND] += sign


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
    for hash_chunk in value_chunks(sorted({contact for _, contact in batch})):
        stored = (
            Conversation.objects.filter(partner_id=partner_id)
            .filter(any_of(Conversation, "contact_hash", hash_chunk))
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
    for hash_chunk in value_chunks(sorted({contact for _, contact in reread})):
        events = (
            MessageEvent.objects.filter(partner_id=partner_id)
            .filter(any_of(MessageEvent, "contact_hash", hash_chunk))
            .values_list(
                "line_id", "contact_hash", "occurred_at", "direction", "event_id", "sub_account_id"
            )
        )
        # Streamed (a server-side cursor on PostgreSQL): a late batch reads back the whole
        # stored history of its pairs, which a result list held at once would double.
        for line_id, contact, at, direction, event_id, sub_account_id in events.iterator(
            chunk_size=CHUNK
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
    deltas: dict[LineDay, list[int]] = defaultdict(lambda: [0] * len(LINE_COUNTS))
    # The stored rows carry what ``conversations_for`` reads of a message (``Message``).
    batch = _by_pair(new)
    for e in new:
        outbound = e.direction == Direction.OUTBOUND
        deltas[(e.line_id, e.sub_account_id, e.local_day)][SENT if outbound else RECEIVED] += 1
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
    partner_id: int, derived: _Derived, zone: zoneinfo.ZoneInfo, facts: LineFacts
) -> None:
    """Replace the changed conversations and add the differences to the rollups."""
    for chunk in value_chunks(derived.stale):
        Conversation.objects.filter(any_of(Conversation, "id", chunk)).delete()
    insert(Conversation, _CONVERSATION_COLUMNS, derived.replacements)
    changed = {key: delta for key, delta in derived.deltas.items() if any(delta)}
    add_to_sub_account_days(partner_id, add_to_line_days(partner_id, changed, zone, facts))
