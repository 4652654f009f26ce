"""On PostgreSQL the rate-limit counters live in an UNLOGGED table.

A counter lost in a crash costs nothing, while writing and flushing WAL for one on
every request would cost every request: without WAL a one-statement upsert commits
without waiting for the disk. (Unlogged tables are emptied after a crash and are not
copied to streaming replicas; neither matters for counters that expire in minutes.)
"""

from django.db import migrations


def _set(logged: bool):
    def apply(apps, schema_editor) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        table = schema_editor.quote_name(apps.get_model("core", "RateLimitBucket")._meta.db_table)
        schema_editor.execute(f"ALTER TABLE {table} SET {'LOGGED' if logged else 'UNLOGGED'}")

    return apply


class Migration(migrations.Migration):
    dependencies = [("core", "0001_rate_limit_bucket")]

    operations = [migrations.RunPython(_set(logged=False), _set(logged=True))]
