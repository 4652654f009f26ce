"""``portal runbilling``: issue every invoice that is due now, missed months included."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from portal.billing.invoicing import BillingRunIncomplete, invoices_issue_due
from portal.billing.models import Invoice
from portal.billing.money import quantize
from portal.core.commands import cli_principal, domain_errors, plural


class Command(BaseCommand):
    help = (
        "Issue, for every partner, every invoice that is due and not issued yet: each "
        "billing cycle (the calendar month in the partner's timezone) from the one after "
        "the partner's latest invoice up to the current one, oldest first, each exactly as "
        "if billing had run at its start (recurring charges for the lines held then plus "
        "prorations for the month before). A cycle with no line at its start and nothing "
        "to prorate gets no invoice and uses no number. Idempotent: running it again "
        "issues nothing new. The worker does the same every 10 minutes. Prints one line "
        "per invoice issued and a summary."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        failure: BillingRunIncomplete | None = None
        with domain_errors():
            try:
                issued = invoices_issue_due(principal=cli_principal("runbilling"))
            except BillingRunIncomplete as exc:
                issued, failure = exc.issued, exc
        for invoice in issued:
            self.stdout.write(self._line(invoice))
        self.stdout.write(f"Issued {plural(len(issued), 'invoice')}.")
        if failure is not None:
            raise CommandError(f"{failure} See the log; run again to retry them.")

    @staticmethod
    def _line(invoice: Invoice) -> str:
        total = quantize(invoice.total, invoice.currency)
        return (
            f"{invoice.partner.slug}: invoice {invoice.number} for "
            f"{invoice.period_month:%Y-%m} ({invoice.timezone}): {total:f} {invoice.currency}"
        )
