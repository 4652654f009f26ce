"""The cached accruals summed through a day are dropped before they become sums through an
instant (the worker recomputes them on its next run)."""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def drop_cached_accruals(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("billing", "ProrationAccrual").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0005_proration_accruals")]

    operations = [migrations.RunPython(drop_cached_accruals, migrations.RunPython.noop)]
