"""domain §4 conversations for one (line, contact) pair: pure, no database, no clock.

A pair's messages split into conversations wherever two consecutive messages (in
either direction) are at least 30 × 24 h apart. A conversation that opens with an
outbound message is *new*; one the contact opens is *inbound* (counted apart). A
new conversation is *responded* when an inbound message follows its first
outbound message before the pair's next *new* conversation starts (an inbound
conversation in between does not end that window: domain §4 read as written).

The answer depends only on the set of events, never on the order they arrived
in: events are ordered by ``(occurred_at, event_id)``, so two messages at the same
instant are ordered by their platform ids.

Once raw events before a *horizon* are pruned, the pair's conversations that
started before it stand in for them (``prior``): the last one's
``last_message_at`` says whether the first later message continues it (a message
after the horizon that belonged to it was less than 30 days from the last pruned
one, so any message between them is too), and the latest new one's
``first_reply_at`` says whether a pruned inbound message already answered it.
Events before the horizon are never accepted again, so this is exact.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

QUIET_GAP = dt.timedelta(days=30)
OUTBOUND = "outbound"
INBOUND = "inbound"


# Named tuples, not dataclasses: ingestion makes one per event and one per conversation,
# ten thousand a batch, and a tuple is built in C.


class PairEvent(NamedTuple):
    """One message of the pair, with the sub-account that held the line at the time."""

    occurred_at: dt.datetime
    direction: str
    event_id: str
    sub_account_id: int


class Message(Protocol):
    """What :func:`conversations_for` reads of a message (a :class:`PairEvent` or any row
    with these fields)."""

    @property
    def occurred_at(self) -> dt.datetime: ...
    @property
    def direction(self) -> str: ...
    @property
    def event_id(self) -> str: ...
    @property
    def sub_account_id(self) -> int: ...


class ConversationSpan(NamedTuple):
    """One conversation: ``kind`` is ``"new"`` or ``"inbound"``."""

    kind: str
    started_at: dt.datetime
    sub_account_id: int
    responded: bool = False
    last_message_at: dt.datetime | None = None
    first_reply_at: dt.datetime | None = None


def conversations_for(
    events: Iterable[Message],
    *,
    prior: Sequence[ConversationSpan] = (),
    horizon: dt.datetime | None = None,
) -> list[ConversationSpan]:
    """The pair's conversations, oldest first.

    ``prior`` are the stored conversations that started before ``horizon``, whose
    events were pruned; ``events`` are the pair's events from ``horizon`` on.

    Ingestion calls this for every pair a batch touches (thousands per request), so the
    spans are built in plain lists and frozen once at the end.
    """
    spans: list[ConversationSpan] = sorted(prior, key=lambda c: c.started_at)
    latest_new: int | None = None  # index in ``spans`` of the pair's latest new conversation
    previous_at: dt.datetime | None = None
    if spans:
        assert horizon is not None, "prior conversations need the horizon they precede"
        last = spans[-1]
        assert last.last_message_at is not None
        # A last message at or after the horizon means the first later message continues it.
        previous_at = min(last.last_message_at, horizon)
        spans[-1] = last._replace(last_message_at=previous_at)
        for i in range(len(spans) - 1, -1, -1):
            if spans[i].kind == "new":
                latest_new = i
                answer = spans[i].first_reply_at
                if answer is not None and answer >= horizon:  # replayed below
                    spans[i] = spans[i]._replace(responded=False, first_reply_at=None)
                break
    kinds = [s.kind for s in spans]
    starts = [s.started_at for s in spans]
    holders = [s.sub_account_id for s in spans]
    answered = [s.responded for s in spans]
    last_at = [s.last_message_at for s in spans]
    first_reply = [s.first_reply_at for s in spans]
    for event in sorted(events, key=lambda e: (e.occurred_at, e.event_id)):
        at = event.occurred_at
        if previous_at is None or at - previous_at >= QUIET_GAP:
            kind = "new" if event.direction == OUTBOUND else "inbound"
            kinds.append(kind)
            starts.append(at)
            holders.append(event.sub_account_id)
            answered.append(False)
            last_at.append(at)
            first_reply.append(None)
            if kind == "new":
                latest_new = len(kinds) - 1
        previous_at = at
        last_at[-1] = at
        # A new conversation opens with its first outbound message, so an inbound message
        # after its start and before the next new conversation answers it. domain §4 ends
        # that window at the next *new* conversation only: a contact writing after a quiet
        # month opens an inbound conversation and still counts as having answered.
        if event.direction == INBOUND and latest_new is not None and not answered[latest_new]:
            answered[latest_new] = True
            first_reply[latest_new] = at
    return [
        ConversationSpan(kinds[i], starts[i], holders[i], answered[i], last_at[i], first_reply[i])
        for i in range(len(kinds))
    ]
