# Hand-written: Django's AlterField for db_index would drop and re-add each foreign key
# (validating every row of the largest tables) and drop the partial unique index
# one_open_period_per_line on PostgreSQL; only the indexes have to go. Every index of
# these tables leads with the partner, and period_line_start leads with the line.

import django.db.models.deletion
from django.db import migrations, models

# (table, column, index Django named for the foreign key)
COVERED = [
    ("lines_assignmentperiod", "line_id", "lines_assignmentperiod_line_id_23803c5a"),
    ("lines_assignmentperiod", "partner_id", "lines_assignmentperiod_partner_id_624295a8"),
    ("lines_line", "partner_id", "lines_line_partner_id_eefebedd"),
]


def _foreign_key(**kwargs: object) -> models.ForeignKey:
    return models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, **kwargs)


class Migration(migrations.Migration):
    dependencies = [
        ("lines", "0004_line_list_indexes_with_id"),
        ("partners", "0003_subaccount_partner_indexed_by_composites"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="assignmentperiod",
                    name="line",
                    field=_foreign_key(related_name="periods", to="lines.line"),
                ),
                migrations.AlterField(
                    model_name="assignmentperiod",
                    name="partner",
                    field=_foreign_key(related_name="+", to="partners.partner"),
                ),
                migrations.AlterField(
                    model_name="line",
                    name="partner",
                    field=_foreign_key(related_name="+", to="partners.partner"),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX "{index}" ON "{table}" ("{column}")',
                )
                for table, column, index in COVERED
            ],
        ),
    ]
