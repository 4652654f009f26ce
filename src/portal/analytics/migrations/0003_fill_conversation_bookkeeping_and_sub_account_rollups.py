"""Data: fill what 0002 added from the rows already stored.

Line rollups take their line's current limit; conversations get their latest
message and first answer from the pair's events (nothing was pruned before this
migration, so every event is there); sub-account rollups are the sums of the line
rollups. Capacity columns stay zero: the day-closing job backfills them.
"""

from collections import defaultdict

from django.db import migrations
from django.db.models import OuterRef, Subquery

from portal.analytics.conversations import PairEvent, conversations_for


def fill(apps, schema_editor):
    Line = apps.get_model("lines", "Line")
    MessageEvent = apps.get_model("analytics", "MessageEvent")
    Conversation = apps.get_model("analytics", "Conversation")
    DailyLineRollup = apps.get_model("analytics", "DailyLineRollup")
    DailySubAccountRollup = apps.get_model("analytics", "DailySubAccountRollup")

    DailyLineRollup.objects.update(
        daily_limit=Subquery(Line.objects.filter(pk=OuterRef("line_id")).values("daily_limit")[:1])
    )

    history = defaultdict(list)
    for row in MessageEvent.objects.values_list(
        "line_id", "contact_hash", "occurred_at", "direction", "event_id", "sub_account_id"
    ).iterator():
        history[row[:2]].append(PairEvent(*row[2:]))
    for conversation in Conversation.objects.all().iterator():
        spans = conversations_for(history[(conversation.line_id, conversation.contact_hash)])
        span = next((s for s in spans if s.started_at == conversation.started_at), None)
        conversation.last_message_at = span.last_message_at if span else conversation.started_at
        conversation.first_reply_at = span.first_reply_at if span and span.responded else None
        conversation.responded = conversation.first_reply_at is not None
        conversation.save(update_fields=["last_message_at", "first_reply_at", "responded"])

    sums = defaultdict(lambda: defaultdict(int))
    for row in DailyLineRollup.objects.values().iterator():
        target = sums[(row["partner_id"], row["sub_account_id"], row["day"])]
        for name in (
            "messages_sent",
            "messages_received",
            "new_conversations",
            "responded_conversations",
            "inbound_conversations",
        ):
            target[name] += row[name]
        new, limit = row["new_conversations"], row["daily_limit"]
        target["near_limit_line_days"] += int(new * 10 >= limit * 9)
        target["over_pressured_line_days"] += int(new >= limit)
    DailySubAccountRollup.objects.bulk_create(
        [
            DailySubAccountRollup(partner_id=p, sub_account_id=sa, day=day, **values)
            for (p, sa, day), values in sums.items()
        ],
        batch_size=1_000,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0002_subaccount_rollups_state_conversation_bookkeeping"),
    ]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
