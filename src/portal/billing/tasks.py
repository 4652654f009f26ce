"""Periodic billing jobs: issue invoices at each cycle's start, finalize after the grace
period, and sum the accruing prorations for the billing summary through a few minutes ago
(every 10 minutes: the read then adds at most a quarter of an hour's moves).

Both are safe to run twice and at any time: issuing skips cycles already invoiced and
catches up every cycle missed while it did not run (a stopped worker), finalising only
touches drafts past their grace period.
"""

from __future__ import annotations

import datetime as dt

from portal.billing.invoicing import invoices_finalize_due, invoices_issue_due
from portal.billing.precompute import proration_accruals_precompute
from portal.core.principal import Principal
from portal.jobs import periodic


@periodic.register("issue_due_invoices", every=dt.timedelta(minutes=10))
def issue_due_invoices_job() -> None:
    invoices_issue_due(principal=Principal.system("job:issue_due_invoices"))


@periodic.register("finalize_due_invoices", every=dt.timedelta(hours=1))
def finalize_due_invoices_job() -> None:
    invoices_finalize_due(principal=Principal.system("job:finalize_due_invoices"))


@periodic.register("precompute_proration_accruals", every=dt.timedelta(minutes=10))
def precompute_proration_accruals_job() -> None:
    proration_accruals_precompute(principal=Principal.system("job:precompute_proration_accruals"))
