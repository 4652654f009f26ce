"""MessageEvent (raw platform data), Conversation and DailyLineRollup (derived from it).

Attribution and merges: every derived row names the sub-account that *held the
line* (its :class:`~portal.lines.models.AssignmentPeriod`) when the event
occurred or the conversation started, and is never re-keyed afterwards. When a
later merge folds sub-accounts into a target, reads map each source to its target
(``SubAccount.merged_into``, followed to the end) and sum, so the target's
analytics include the sources' whole history without rewriting a row; see
``selectors.analytics_owner_map``.

Days are local dates in the partner's timezone, fixed when the row is written.

Read model (what pages and the API read): :class:`DailySubAccountRollup`, one row per
(sub-account, day). Its activity columns are the sums of the day's
:class:`DailyLineRollup` rows, kept current by ingestion in the same transaction
(added as deltas, which commute, so concurrent batches for different lines of one
sub-account cannot overwrite each other). Its capacity columns (line-days and the
sum of daily limits) are written by the periodic job ``analytics_days_close`` when a
partner-local day has ended, and for the day in progress every time the job runs (as
counted then); reads add only the lines that arrived in a sub-account since, so no
read scans a partner's lines. :class:`SubAccountRollupBucket` holds the same sums per
week and month, and :class:`DailyPartnerRollup` per partner day (the totals and
charts of the Analytics page). :class:`PartnerAnalyticsState` remembers how far a
partner's days are closed, when the day in progress was counted and how far its raw
events are pruned.

Every index leads with the partner (foreign keys carry no index of their own), so the
schema can be distributed by partner.

Line-days: a line counts one *active line-day* for every sub-account that held it
at **any moment** of a partner-local day (a line moved mid-day counts for both
holders that day; one disconnected mid-day still counts that day), except a
sub-account the line left *by a merge* that day: once merged, a source's history is
the target's, so the line is one line-day of the target (domain §4). The same unit
carries volume pressure (``analytics.pressure``): a line-day is at >= 90 % / >= 100 %
when the new conversations started on it that day reach 90 % / 100 % of the limit the
line had at the **end** of the day (``lines.LineLimitChange``), so the near / over
counts never exceed the line-days, and the figures do not depend on when events
arrive or days are closed.
"""

from __future__ import annotations

from typing import ClassVar

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

    Its foreign keys are not checked by the database (``db_constraint=False``), as on
    :class:`Conversation`: ingestion writes ten thousand of each per request, checking
    three keys per row at commit cost more than storing the rows, and the only writer
    takes every id from the lines it has locked. Lines, sub-accounts and partners are
    never deleted (and the ORM's ``PROTECT`` still guards a delete).
    """

    partner = models.ForeignKey(
        "partners.Partner",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    event_id = models.CharField(max_length=128)
    line = models.ForeignKey(
        "lines.Line",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    sub_account = models.ForeignKey(
        "partners.SubAccount",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    direction = models.CharField(max_length=8, choices=Direction.choices)
    contact_hash = models.CharField(max_length=64)
    occurred_at = models.DateTimeField()
    local_day = models.DateField()
    received_at = models.DateTimeField()

    objects = TenantQuerySet.as_manager()
    # A client sees its sub-accounts' analytics (core.tenancy).
    tenant_sub_account_field: ClassVar[str] = "sub_account_id"

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "event_id"], name="message_event_id_unique_per_partner"
            ),
        ]
        indexes = [
            # A pair's history, read to recompute its conversations (by contact hash,
            # nearly unique to a pair, so a batch's pairs are found by their contacts).
            models.Index(
                fields=["partner", "contact_hash", "line", "occurred_at"],
                name="msgevent_partner_contact",
            ),
            # The retention job deletes a partner's oldest days.
            models.Index(fields=["partner", "local_day"], name="msgevent_partner_day"),
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
    - a pair has at most one conversation starting at a given instant;
    - ``last_message_at`` is the time of its latest message (>= ``started_at``);
      ``first_reply_at`` the first inbound message that answered it (``responded``
      iff it is set);
    - conversations are kept when raw events are pruned: the ones that started
      before the prune horizon are the pair's history from then on (see
      ``conversations.conversations_for``).

    Foreign keys unchecked by the database, for the reason given on
    :class:`MessageEvent`.
    """

    partner = models.ForeignKey(
        "partners.Partner",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    line = models.ForeignKey(
        "lines.Line",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    contact_hash = models.CharField(max_length=64)
    kind = models.CharField(max_length=8, choices=ConversationKind.choices)
    started_at = models.DateTimeField()
    sub_account = models.ForeignKey(
        "partners.SubAccount",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    local_day = models.DateField()
    responded = models.BooleanField(default=False)
    # What the pair's later events need once the raw events are pruned: the time of the
    # conversation's latest message (is the next message 30 days later?) and of the
    # inbound message that first answered it (was it answered before the prune horizon?).
    last_message_at = models.DateTimeField()
    first_reply_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()
    # A client sees its sub-accounts' analytics (core.tenancy).
    tenant_sub_account_field: ClassVar[str] = "sub_account_id"

    class Meta:
        constraints = [
            # Contact first: ingestion looks a batch's pairs up by their (nearly unique)
            # contact hashes.
            models.UniqueConstraint(
                fields=["partner", "contact_hash", "line", "started_at"],
                name="conversation_pair_start_unique",
            ),
            models.CheckConstraint(
                condition=Q(kind=ConversationKind.NEW) | Q(responded=False),
                name="conversation_only_new_responds",
            ),
            models.CheckConstraint(
                condition=Q(responded=False, first_reply_at__isnull=True)
                | Q(responded=True, first_reply_at__isnull=False),
                name="conversation_responded_has_reply",
            ),
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
    - ingestion adds to them exactly what it changed (the new events, the conversations
      removed and added), so they always equal a recount; rows with no counts are not
      stored (a conversation starting on a line's day is one of that day's messages, and
      messages are never taken away, pruning included), but for a merge's target row
      carrying its line-day's pressure (below);
    - ``daily_limit`` is the line's limit at the end of ``day`` (as known now: for the
      day in progress, the current one), from its history (``lines.LineLimitChange``);
      a limit change re-judges the line's rows from its day on;
    - ``near_limit_line_days`` / ``over_pressured_line_days`` (0 or 1) are the row's
      share of its line-day's pressure (``analytics.pressure``): a row is its own
      line-day, judged by its ``new_conversations`` against ``daily_limit`` (near at
      90 %, over at 100 %), except on the day a merge moved the line, when the rows of
      the source(s) and the target are one line-day: judged by their sum, flagged on
      the target's row (kept even with no counts of its own), the others carrying 0.
    """

    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    line = models.ForeignKey(
        "lines.Line", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    sub_account = models.ForeignKey(
        "partners.SubAccount", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    day = models.DateField()
    messages_sent = models.PositiveIntegerField(default=0)
    messages_received = models.PositiveIntegerField(default=0)
    new_conversations = models.PositiveIntegerField(default=0)
    responded_conversations = models.PositiveIntegerField(default=0)
    inbound_conversations = models.PositiveIntegerField(default=0)
    # The line's limit at the end of the day, and the row's share of the line-day's pressure.
    daily_limit = models.PositiveIntegerField()
    near_limit_line_days = models.PositiveSmallIntegerField(default=0)
    over_pressured_line_days = models.PositiveSmallIntegerField(default=0)

    objects = TenantQuerySet.as_manager()
    # A client sees its sub-accounts' analytics (core.tenancy).
    tenant_sub_account_field: ClassVar[str] = "sub_account_id"

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
            models.Index(fields=["partner", "sub_account", "day"], name="rollup_partner_sub_day"),
        ]

    def __str__(self) -> str:
        return f"{self.line_id}/{self.sub_account_id} {self.day}"


class RollupTotals(models.Model):
    """The columns every rollup above the line level sums: activity and capacity.

    Ingestion adds differences to them, closing a day sets the capacity ones, and reads
    add them up; the same names on every grain keep those statements one template.
    """

    messages_sent = models.IntegerField(default=0)
    messages_received = models.IntegerField(default=0)
    new_conversations = models.IntegerField(default=0)
    responded_conversations = models.IntegerField(default=0)
    inbound_conversations = models.IntegerField(default=0)
    near_limit_line_days = models.IntegerField(default=0)
    over_pressured_line_days = models.IntegerField(default=0)
    active_line_days = models.IntegerField(default=0)
    limit_line_days = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class DailySubAccountRollup(RollupTotals):
    """One sub-account's day: what pages and the analytics API read.

    Keyed by the sub-account that held the lines (never re-keyed): after a merge the
    target's figures are the sum of its own rows and its sources' rows, mapped at
    read time, so a merge rewrites nothing here.

    Invariants:
    - one row per ``(partner, sub_account, day)``;
    - the activity columns (messages, conversations, ``near_limit_line_days``,
      ``over_pressured_line_days``) equal the sums over the day's
      :class:`DailyLineRollup` rows of the sub-account; ingestion adds the
      difference it made to those rows in the same transaction;
    - the capacity columns (``active_line_days``, ``limit_line_days`` = Σ daily
      limits of those line-days) are written by ``rollups.analytics_days_close``:
      once the day is closed they count every line the sub-account held at any moment
      of the day (not one it left by a merge that day), with the line's limit at the
      end of the day; before, they are zero or the count of the day so far
      (``PartnerAnalyticsState.capacity_at``, with limit changes since added by them);
    - ``near_limit_line_days >= over_pressured_line_days``.
    """

    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    sub_account = models.ForeignKey(
        "partners.SubAccount", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    day = models.DateField()

    objects = TenantQuerySet.as_manager()
    # A client sees its sub-accounts' analytics (core.tenancy).
    tenant_sub_account_field: ClassVar[str] = "sub_account_id"

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "sub_account", "day"], name="sa_rollup_sub_day_unique"
            ),
        ]
        indexes = [
            # The list reads one partner's period across every sub-account.
            models.Index(fields=["partner", "day"], name="sa_rollup_partner_day"),
        ]

    def __str__(self) -> str:
        return f"{self.sub_account_id} {self.day}"


class DailyPartnerRollup(RollupTotals):
    """One partner's day: the sums of all its :class:`DailySubAccountRollup` rows that day.

    What the Analytics page's totals and charts read: a period is one row per day
    whatever the number of sub-accounts. Sub-accounts whose history the comparison
    leaves out (merged into one that is no longer active) are a handful, and reads take
    their days away.

    Invariants:
    - one row per ``(partner, day)``;
    - every column equals the sum over the partner's sub-account days of that day,
      every sub-account included: ingestion adds the same differences to both, and
      closing a day sets the sum of the capacity it stores.
    """

    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    day = models.DateField()

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["partner", "day"], name="partner_rollup_day_unique"),
        ]

    def __str__(self) -> str:
        return f"partner {self.partner_id} {self.day}"


class PartnerAnalyticsState(models.Model):
    """How far the periodic jobs have brought one partner's analytics.

    Invariants:
    - ``days_closed_through``: every partner-local day up to it has its capacity
      columns written; later days are computed live (null: none closed yet);
    - ``capacity_day`` / ``capacity_at``: the job also stores the capacity of the day
      in progress, as counted at ``capacity_at`` (every line held at any moment from
      the day's midnight to then, with the limits of then, and each limit change since
      added as it happens); reads add the lines that
      arrived in a sub-account after ``capacity_at`` instead of recounting the day.
      Closing the day replaces that count (null: none stored);
    - ``events_pruned_before``: raw events of partner-local days before it are
      deleted; an event for such a day is refused (its day can no longer be
      recounted), and conversations that started before that day's midnight are the
      pairs' history (null: nothing pruned). Days closed and events pruned only move
      forward.
    """

    partner = models.OneToOneField(
        "partners.Partner", on_delete=models.PROTECT, related_name="+", primary_key=True
    )
    days_closed_through = models.DateField(null=True, blank=True)
    capacity_day = models.DateField(null=True, blank=True)
    capacity_at = models.DateTimeField(null=True, blank=True)
    events_pruned_before = models.DateField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        return f"analytics of partner {self.partner_id}"


class Grain(models.TextChoices):
    WEEK = "week", "Week (Monday to Sunday)"
    MONTH = "month", "Calendar month"


class SubAccountRollupBucket(RollupTotals):
    """A sub-account's week or month: the sums of its :class:`DailySubAccountRollup` days.

    Long periods read whole buckets where they fit and days only at the edges, so a
    90-day comparison of ten thousand sub-accounts reads about a dozen rows per
    sub-account instead of ninety.

    Invariants:
    - one row per ``(partner, sub_account, grain, start)``; ``start`` is a Monday
      (week) or the first of a month (month), partner-local like the days;
    - every column equals the sum of the days of the bucket in
      :class:`DailySubAccountRollup`: ingestion adds the same deltas to the day and
      to its week and month, and closing a day adds its capacity to both.
    """

    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    sub_account = models.ForeignKey(
        "partners.SubAccount", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    grain = models.CharField(max_length=5, choices=Grain.choices)
    start = models.DateField()

    objects = TenantQuerySet.as_manager()
    # A client sees its sub-accounts' analytics (core.tenancy).
    tenant_sub_account_field: ClassVar[str] = "sub_account_id"

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "sub_account", "grain", "start"], name="sa_bucket_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "grain", "start"], name="sa_bucket_partner_start"),
        ]

    def __str__(self) -> str:
        return f"{self.sub_account_id} {self.grain} of {self.start}"
