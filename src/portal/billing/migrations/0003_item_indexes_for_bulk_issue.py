"""Fewer indexes on invoice items: a large invoice stores some 200,000 at once.

The single-column indexes Django gave the foreign keys are dropped where a partner-led
composite already serves (``partner``, ``line``), where nothing searches
(``other_sub_account``) or where almost every row is NULL (``discount`` and
``credit_entry``, which get partial indexes instead). Only the indexes change: the
foreign-key constraints stay as they are (an AlterField would drop and re-validate
them over the whole table), hence the state and database operations apart.
"""

import django.db.models.deletion
from django.db import migrations, models

# (field, target model, index Django named for it in 0001_invoices)
DROPPED = [
    ("partner", "partners.partner", "billing_invoiceitem_partner_id_a8100f1d", False),
    ("line", "lines.line", "billing_invoiceitem_line_id_7e754588", True),
    (
        "other_sub_account",
        "partners.subaccount",
        "billing_invoiceitem_other_sub_account_id_76aef164",
        True,
    ),
    ("discount", "billing.discount", "billing_invoiceitem_discount_id_1c120e25", True),
    ("credit_entry", "billing.creditentry", "billing_invoiceitem_credit_entry_id_9bafacc1", True),
]


def _field(target: str, nullable: bool) -> models.ForeignKey:
    options = {"blank": True, "null": True} if nullable else {}
    return models.ForeignKey(
        db_index=False,
        on_delete=django.db.models.deletion.PROTECT,
        related_name="+",
        to=target,
        **options,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0002_discounts_credits_prices"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="invoiceitem", name=name, field=_field(target, nullable)
                )
                for name, target, _, nullable in DROPPED
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX "{index}" ON "billing_invoiceitem" ("{name}_id")',
                )
                for name, _, index, _ in DROPPED
            ],
        ),
        migrations.AddIndex(
            model_name="invoiceitem",
            index=models.Index(
                condition=models.Q(discount__isnull=False),
                fields=["discount"],
                name="item_discount",
            ),
        ),
        migrations.AddIndex(
            model_name="invoiceitem",
            index=models.Index(
                condition=models.Q(credit_entry__isnull=False),
                fields=["credit_entry"],
                name="item_credit_entry",
            ),
        ),
    ]
