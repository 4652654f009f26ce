"""Each stored line rollup's pressure flags, as the rollups above it already count them:
the row judged by its own new conversations against the limit it stored (the limit
history starts now; merge days are re-judged when their lines' limits next change)."""

from django.db import migrations
from django.db.models import Case, F, Value, When
from django.db.models.lookups import GreaterThanOrEqual


def fill(apps, schema_editor):
    DailyLineRollup = apps.get_model("analytics", "DailyLineRollup")
    DailyLineRollup.objects.update(
        near_limit_line_days=Case(
            When(
                GreaterThanOrEqual(F("new_conversations") * 10, F("daily_limit") * 9),
                then=Value(1),
            ),
            default=Value(0),
        ),
        over_pressured_line_days=Case(
            When(new_conversations__gte=F("daily_limit"), then=Value(1)), default=Value(0)
        ),
    )


class Migration(migrations.Migration):
    dependencies = [("analytics", "0008_line_rollup_pressure_flags")]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
