"""MessageEvent (raw platform data), Conversation and DailyLineRollup (derived from it).

Attribution and merges: every derived row names the sub-account that *held the
line* (its :class:`~portal.lines.models.AssignmentPeriod`) when the event
occurred or the conversation started, and is never re-keyed afterwards. When a
later merge folds sub-accounts into a target, reads map each source to its target
(``SubAccount.merged_into``, followed to the end) and sum, so the target's
analytics include the sources' whole history without rewriting a row; see
``selectors.analytics_owner_map``.

Days are local dates in the partner's timezone, fixed when the row is written.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from portal.core.tenancy import TenantQuerySet


class Direction(models.TextChoices):
    OUTBOUND = "outbound", "Outbound"
    INBOUND = "inbound", "Inbound"


class MessageEvent(models.Model):
    """One message the messaging platform reported, as received.

    Invariants:
    - ``(partner, event_id)`` is unique: a redelivered event is ignored. The same
      platform id always resolves to the same line and so the same partner (a
      line's past is append-only and future events are refused), so this is the
      platform-wide uniqueness of the id, keyed so the table can be distributed
      by partner;
    - ``line`` is the line that had the number at ``occurred_at`` and
      ``sub_account`` the one holding it then (the assignment period covering
      ``occurred_at``); both belong to ``partner``;
    - ``contact_hash`` is HMAC-SHA256 of the normalised contact under
      ``settings.CONTACT_HASH_KEY``; the contact itself is never stored;
    - ``local_day`` is ``occurred_at``'s date in the partner's timezone;
    - rows are only ever inserted.
    """

    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="+")
    event_id = models.CharField(max_length=128)
    line = models.ForeignKey("lines.Line", on_delete=models.PROTECT, related_name="+")
    sub_account = models.ForeignKey(
        "partners.SubAccount", on_delete=models.PROTECT, related_name="+"
    )
    direction = models.CharField(max_length=8, choices=Direction.choices)
    contact_hash = models.CharField(max_length=64)
    occurred_at = models.DateTimeField()
    local_day = models.DateField()
    received_at = models.DateTimeField()

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "event_id"], name="message_event_id_unique_per_partner"
            ),
        ]
        indexes = [
            # A pair's history, read to recompute its conversations.
            models.Index(
                fields=["partner", "line", "contact_hash", "occurred_at"],
                name="msgevent_partner_pair",
            ),
            # A line's days, read to recompute its rollups.
            models.Index(fields=["partner", "line", "local_day"], name="msgevent_partner_line_day"),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.event_id}"


class ConversationKind(models.TextChoices):
    NEW = "new", "New"
    INBOUND = "inbound", "Inbound"


class Conversation(models.Model):
    """A run of one (line, contact) pair's messages with no gap of 30 days or more.

    Derived from the pair's events by ``conversations.conversations_for`` and
    replaced whole whenever an event of the pair arrives, so late and out-of-order
    events are counted as if they had come in order.

    Invariants:
    - ``kind`` is ``new`` when the run starts with an outbound message and
      ``inbound`` when the contact wrote first;
    - ``responded`` only for ``new``: an inbound message came after the first
      outbound one and before the pair's next conversation;
    - ``sub_account`` held the line at ``started_at``; ``local_day`` is the
      partner-local date of ``started_at`` (the day it counts on);
    - a pair has at most one conversation starting at a given instant.
    """

    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="+")
    line = models.ForeignKey("lines.Line", on_delete=models.PROTECT, related_name="+")
    contact_hash = models.CharField(max_length=64)
    kind = models.CharField(max_length=8, choices=ConversationKind.choices)
    started_at = models.DateTimeField()
    sub_account = models.ForeignKey(
        "partners.SubAccount", on_delete=models.PROTECT, related_name="+"
    )
    local_day = models.DateField()
    responded = models.BooleanField(default=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "line", "contact_hash", "started_at"],
                name="conversation_pair_start_unique",
            ),
            models.CheckConstraint(
                condition=Q(kind=ConversationKind.NEW) | Q(responded=False),
                name="conversation_only_new_responds",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "line", "local_day"], name="conv_partner_line_day"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} conversation from {self.started_at:%Y-%m-%d %H:%M}"


class DailyLineRollup(models.Model):
    """What one line did for one sub-account on one partner-local day.

    Pages and the API read these, never raw events. A line moved mid-day has one
    row per holder that day.

    Invariants:
    - one row per ``(line, sub_account, day)`` (``partner`` leads the key; a line
      belongs to one partner);
    - ``messages_sent`` / ``messages_received`` count the day's outbound / inbound
      events attributed to ``sub_account``; the conversation counts count the
      conversations that *started* that day held by ``sub_account``, with
      ``responded_conversations <= new_conversations``;
    - rows are recomputed (deleted and inserted) from events and conversations for
      every (line, day) an ingestion touches, so they always equal a recount;
      all-zero rows are not stored.
    """

    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="+")
    line = models.ForeignKey("lines.Line", on_delete=models.PROTECT, related_name="+")
    sub_account = models.ForeignKey(
        "partners.SubAccount", on_delete=models.PROTECT, related_name="+"
    )
    day = models.DateField()
    messages_sent = models.PositiveIntegerField(default=0)
    messages_received = models.PositiveIntegerField(default=0)
    new_conversations = models.PositiveIntegerField(default=0)
    responded_conversations = models.PositiveIntegerField(default=0)
    inbound_conversations = models.PositiveIntegerField(default=0)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "line", "sub_account", "day"], name="rollup_line_sub_day_unique"
            ),
            models.CheckConstraint(
                condition=Q(responded_conversations__lte=models.F("new_conversations")),
                name="rollup_responded_le_new",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "day", "sub_account"], name="rollup_partner_day_sub"),
            models.Index(fields=["partner", "sub_account", "day"], name="rollup_partner_sub_day"),
        ]

    def __str__(self) -> str:
        return f"{self.line_id}/{self.sub_account_id} {self.day}"
