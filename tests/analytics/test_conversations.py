"""domain §4 conversations for one pair, as a table: events in, conversations out."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.analytics.conversations import ConversationSpan, PairEvent, conversations_for

T = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
SECOND = dt.timedelta(seconds=1)
JUST_UNDER_30_DAYS = 30 * DAY - SECOND  # 29 d 23 h 59 m 59 s


def out(at: dt.timedelta, sub: int = 1) -> tuple[str, dt.timedelta, int]:
    return ("outbound", at, sub)


def inb(at: dt.timedelta, sub: int = 1) -> tuple[str, dt.timedelta, int]:
    return ("inbound", at, sub)


def new(at: dt.timedelta, responded: bool = False, sub: int = 1) -> ConversationSpan:
    return ConversationSpan("new", T + at, sub, responded)


def inbound(at: dt.timedelta, sub: int = 1) -> ConversationSpan:
    return ConversationSpan("inbound", T + at, sub)


def events(*messages: tuple[str, dt.timedelta, int]) -> list[PairEvent]:
    return [
        PairEvent(T + at, direction, f"e{i:03d}", sub)
        for i, (direction, at, sub) in enumerate(messages)
    ]


CASES = {
    "no messages": ([], []),
    "one outbound opens a new conversation": ([out(0 * DAY)], [new(0 * DAY)]),
    "follow-ups stay in the conversation": (
        [out(0 * DAY), out(HOUR), out(10 * DAY)],
        [new(0 * DAY)],
    ),
    "29 d 23 h 59 m 59 s later is the same conversation": (
        [out(0 * DAY), out(JUST_UNDER_30_DAYS)],
        [new(0 * DAY)],
    ),
    "exactly 30 days later starts a new conversation": (
        [out(0 * DAY), out(30 * DAY)],
        [new(0 * DAY), new(30 * DAY)],
    ),
    "the gap counts from the previous message, not the start": (
        [out(0 * DAY), out(20 * DAY), out(45 * DAY)],
        [new(0 * DAY)],
    ),
    "an inbound message keeps the conversation alive": (
        [out(0 * DAY), inb(25 * DAY), out(50 * DAY)],
        [new(0 * DAY, responded=True)],
    ),
    "a reply after the first outbound makes it responded": (
        [out(0 * DAY), inb(HOUR)],
        [new(0 * DAY, responded=True)],
    ),
    "a reply weeks later but within the conversation counts": (
        [out(0 * DAY), out(20 * DAY), inb(40 * DAY)],
        [new(0 * DAY, responded=True)],
    ),
    "a message from the contact before the outbound is not a reply: it opened the talk": (
        [inb(0 * DAY), out(HOUR)],
        [inbound(0 * DAY)],
    ),
    "a reply before the first outbound belongs to the earlier conversation": (
        [inb(0 * DAY), out(30 * DAY)],
        [inbound(0 * DAY), new(30 * DAY)],
    ),
    "a reply after the next new conversation counts for that one only": (
        [out(0 * DAY), out(30 * DAY), inb(30 * DAY + HOUR)],
        [new(0 * DAY), new(30 * DAY, responded=True)],
    ),
    "a reply 30 days later opens an inbound conversation and still answers the new one": (
        [out(0 * DAY), inb(30 * DAY)],
        [new(0 * DAY, responded=True), inbound(30 * DAY)],
    ),
    "the answer window ends at the next new conversation, not at an inbound one": (
        [out(0 * DAY), inb(40 * DAY), out(80 * DAY)],
        [new(0 * DAY, responded=True), inbound(40 * DAY), new(80 * DAY)],
    ),
    "a contact's earlier inbound conversation answers nothing that comes later": (
        [inb(0 * DAY), out(40 * DAY)],
        [inbound(0 * DAY), new(40 * DAY)],
    ),
    "inbound first, then a new conversation after a quiet month": (
        [inb(0 * DAY), out(DAY), out(31 * DAY), inb(31 * DAY + HOUR)],
        [inbound(0 * DAY), new(31 * DAY, responded=True)],
    ),
    "only inbound messages: one inbound conversation per quiet gap": (
        [inb(0 * DAY), inb(5 * DAY), inb(40 * DAY)],
        [inbound(0 * DAY), inbound(40 * DAY)],
    ),
    "the conversation keeps the sub-account that held the line when it started": (
        [out(0 * DAY, sub=1), inb(HOUR, sub=2), out(40 * DAY, sub=2)],
        [new(0 * DAY, responded=True, sub=1), new(40 * DAY, sub=2)],
    ),
}


def core(spans: list[ConversationSpan]) -> list[ConversationSpan]:
    """The spans without the bookkeeping times the table does not spell out."""
    return [ConversationSpan(s.kind, s.started_at, s.sub_account_id, s.responded) for s in spans]


@pytest.mark.parametrize(("messages", "expected"), CASES.values(), ids=CASES.keys())
def test_conversations(messages, expected):
    assert core(conversations_for(events(*messages))) == expected


@pytest.mark.parametrize(("messages", "expected"), CASES.values(), ids=CASES.keys())
def test_order_of_arrival_does_not_matter(messages, expected):
    shuffled = events(*messages)
    random.Random(7).shuffle(shuffled)
    assert core(conversations_for(shuffled)) == expected


def test_messages_at_the_same_instant_are_ordered_by_id():
    same = [
        PairEvent(T, "inbound", "b", 1),
        PairEvent(T, "outbound", "a", 1),
    ]
    assert core(conversations_for(same)) == [ConversationSpan("new", T, 1, True)]
    assert core(conversations_for(list(reversed(same)))) == [ConversationSpan("new", T, 1, True)]


def test_the_bookkeeping_times():
    spans = conversations_for(events(out(0 * DAY), inb(2 * DAY), out(5 * DAY), inb(40 * DAY)))
    assert spans == [
        ConversationSpan(
            "new", T, 1, True, last_message_at=T + 5 * DAY, first_reply_at=T + 2 * DAY
        ),
        ConversationSpan("inbound", T + 40 * DAY, 1, False, last_message_at=T + 40 * DAY),
    ]


# --- Pruned history: the stored conversations before the horizon stand in for its events ---

DAY_SECONDS = 24 * 3600
message = st.tuples(
    st.sampled_from(["outbound", "inbound"]),
    st.one_of(
        st.sampled_from([0, 1, 30 * DAY_SECONDS - 1, 30 * DAY_SECONDS, 30 * DAY_SECONDS + 1]),
        st.integers(0, 120 * DAY_SECONDS),
    ),
    st.integers(1, 2),
)


@given(
    messages=st.lists(message, min_size=1, max_size=12),
    horizon=st.integers(0, 120 * DAY_SECONDS),
    late=st.lists(message, max_size=4),
)
def test_pruned_history_and_late_events_classify_as_the_full_history(messages, horizon, late):
    """Prune everything before any horizon, then add late events after it: the stored
    conversations before the horizon plus the kept and late events give exactly the
    conversations of the whole history."""
    cut = T + dt.timedelta(seconds=horizon)
    full = [
        PairEvent(T + dt.timedelta(seconds=at), direction, f"e{i:03d}", sub)
        for i, (direction, at, sub) in enumerate(messages)
    ]
    extra = [
        PairEvent(max(cut, T + dt.timedelta(seconds=at)), direction, f"l{i:03d}", sub)
        for i, (direction, at, sub) in enumerate(late)
    ]
    stored = conversations_for(full)
    prior = [c for c in stored if c.started_at < cut]
    kept = [e for e in full if e.occurred_at >= cut]
    assert conversations_for(kept, prior=prior, horizon=cut) == stored
    assert conversations_for([*kept, *extra], prior=prior, horizon=cut) == conversations_for(
        [*full, *extra]
    )
