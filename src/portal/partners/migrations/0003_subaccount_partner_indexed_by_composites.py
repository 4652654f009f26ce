# Hand-written: Django's AlterField for db_index would drop and re-add the foreign key
# (validating every row) and drop the partial unique index one_available_pool_per_partner
# on PostgreSQL; only the index has to go.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("partners", "0002_subaccount_list_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="subaccount",
                    name="partner",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="sub_accounts",
                        to="partners.partner",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "partners_subaccount_partner_id_791fe16b"',
                    reverse_sql=(
                        'CREATE INDEX "partners_subaccount_partner_id_791fe16b" '
                        'ON "partners_subaccount" ("partner_id")'
                    ),
                ),
            ],
        ),
    ]
