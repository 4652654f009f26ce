from django.db import migrations
from django.db.models import Sum

COLUMNS = [
    "messages_sent",
    "messages_received",
    "new_conversations",
    "responded_conversations",
    "inbound_conversations",
    "near_limit_line_days",
    "over_pressured_line_days",
    "active_line_days",
    "limit_line_days",
]


def fill_partner_days(apps, schema_editor):
    """A partner's day is the sum of its sub-accounts' days stored before this migration."""
    day_model = apps.get_model("analytics", "DailySubAccountRollup")
    partner_model = apps.get_model("analytics", "DailyPartnerRollup")
    sums = (
        day_model.objects.values("partner_id", "day")
        .annotate(**{f"total_{name}": Sum(name) for name in COLUMNS})
        .order_by("partner_id", "day")
    )
    partner_model.objects.bulk_create(
        [
            partner_model(
                partner_id=row["partner_id"],
                day=row["day"],
                **{name: row[f"total_{name}"] or 0 for name in COLUMNS},
            )
            for row in sums
        ],
        batch_size=1_000,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0006_partner_day_rollups_and_partner_led_indexes"),
    ]

    operations = [
        migrations.RunPython(fill_partner_days, migrations.RunPython.noop, elidable=True),
    ]
