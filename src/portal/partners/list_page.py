"""What the Sub-accounts list shows beside each sub-account, read set-based: its cost this
month (the billing summary's row), its last 30 days' volume limit usage, response rate and
flags (the Analytics comparison's figures), and, pending deletion, where **Restore** posts.

These figures come from the selectors that compute them for Billing and Analytics, never
computed anew. Sorted by name or lines, the database pages the list and the figures are
read for the page only; sorted by a figure, they are read for the whole partner (one
billing summary, one comparison sum) and the listed ids ordered here, then the page's rows
read by id. Either way a fixed number of queries, whatever the number of sub-accounts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet

from portal.analytics.periods import Metrics
from portal.analytics.policies import can_read_analytics
from portal.analytics.selectors import sub_account_comparison_figures
from portal.analytics.views import FLAG_LABELS, percent_text
from portal.billing.policies import can_read_billing_summary
from portal.billing.summary import billing_summary
from portal.core.principal import Principal
from portal.partners.models import SubAccount, SubAccountStatus
from portal.web.sorting import Column
from portal.workflows.policies import can_restore
from portal.workflows.selectors import scheduled_deletion_ids

PAGE_SIZE = 50

# The headings that sort (the select offers the same keys). "Status" does not sort.
NAME = Column("name", "Sub-account", numeric=False)
LINES = Column("lines", "Lines")
THIS_MONTH = Column("this_month", "This month")
USAGE = Column("volume_limit_usage", "Volume limit usage")
RATE = Column("response_rate", "Response rate")
FLAGS = Column("flags", "Flags")

# Sorts by a figure: what each orders by (None: no value, listed last either way).
FIGURE_SORTS: dict[str, Callable[[Decimal | None, Metrics], Any]] = {
    "this_month": lambda cost, m: cost or Decimal(0),
    "volume_limit_usage": lambda cost, m: m.volume_limit_usage,
    "response_rate": lambda cost, m: m.response_rate,
    "flags": lambda cost, m: len(m.flags),
}


def columns(*, show_cost: bool, show_analytics: bool) -> list[Column]:
    shown = [NAME, LINES]
    if show_cost:
        shown.append(THIS_MONTH)
    if show_analytics:
        shown += [USAGE, RATE, FLAGS]
    return shown


@dataclass
class Row:
    """One sub-account as the list shows it (the figures formatted; None: not shown)."""

    sub_account: SubAccount
    cost: Decimal | None = None
    usage: str = ""
    rate: str = ""
    flags: list[tuple[str, str]] = field(default_factory=list)
    restore_id: int | None = None  # its scheduled deletion, when this person may restore


@dataclass
class Listing:
    page: Page
    rows: list[Row]
    pool: Row | None
    currency: str
    show_cost: bool
    show_analytics: bool


class _Figures:
    """Costs and comparison figures of sub-accounts, added by :meth:`add_cost` and
    :meth:`add_stats` for some ids (None: all of them): a figure's sort reads that figure
    for all of them and the other for the page only."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.cost: dict[int, Decimal] = {}
        self.metrics: dict[int, Metrics] = {}
        self.currency = ""

    def add_cost(self, ids: list[int] | None) -> None:
        summary = billing_summary(principal=self.principal, sub_account_ids=ids)
        self.currency = summary.partner.currency
        self.cost.update((r.sub_account_id, r.total) for r in summary.rows if r.sub_account_id)

    def add_stats(self, ids: list[int] | None) -> None:
        self.metrics.update(
            sub_account_comparison_figures(principal=self.principal, sub_account_ids=ids).figures
        )

    def row(self, sa: SubAccount) -> Row:
        m = self.metrics.get(sa.pk) or Metrics()
        return Row(
            sub_account=sa,
            cost=self.cost.get(sa.pk, Decimal(0)) if self.currency else None,
            usage=percent_text(m.volume_limit_usage),
            rate=percent_text(m.response_rate),
            flags=[(f, FLAG_LABELS.get(f, f)) for f in m.flags],
        )


def _by_figure(ids: list[int], figures: _Figures, sort: str) -> list[int]:
    """``ids`` (in the listed order, the tie-break) ordered by a figure; empty values last
    either way, as Analytics orders them."""
    value = FIGURE_SORTS[sort.removeprefix("-")]
    keyed = [(pk, value(figures.cost.get(pk), figures.metrics.get(pk) or Metrics())) for pk in ids]
    present = [(pk, v) for pk, v in keyed if v is not None]
    missing = [pk for pk, v in keyed if v is None]
    # A stable sort: reverse=True keeps equal values in the listed order.
    present.sort(key=lambda pair: pair[1], reverse=sort.startswith("-"))
    return [pk for pk, _ in present] + missing


def sub_account_listing(
    *,
    principal: Principal,
    standard: QuerySet[SubAccount],
    listed: QuerySet[SubAccount],
    pool: SubAccount | None,
    sort: str,
    page_number: str | None,
) -> Listing:
    """The page of ``standard`` (sorted by name, lines or age in the database) or, for a
    figure's sort, of ``listed`` (the same sub-accounts in the listed order) ordered by
    that figure; with each row's figures as far as the principal may see them."""
    in_partner = principal.scope_partner_id is not None
    show_cost = in_partner and can_read_billing_summary(principal)
    show_analytics = in_partner and can_read_analytics(principal)
    figures = _Figures(principal)
    key = sort.removeprefix("-")
    by_cost = key == THIS_MONTH.key
    by_figure = key in FIGURE_SORTS and (show_cost if by_cost else show_analytics)
    if by_figure:
        # The sorted figure for every sub-account, then the page in its order.
        (figures.add_cost if by_cost else figures.add_stats)(None)
        ids = list(listed.values_list("pk", flat=True))
        page = Paginator(_by_figure(ids, figures, sort), PAGE_SIZE).get_page(page_number)
        found = SubAccount.objects.visible_to(principal).in_bulk(list(page.object_list))
        subs = [found[pk] for pk in page.object_list if pk in found]
    else:
        page = Paginator(standard, PAGE_SIZE).get_page(page_number)
        subs = list(page.object_list)
    # The figures not read already, for the page only.
    wanted = [sa.pk for sa in subs] + ([pool.pk] if pool else [])
    if show_cost and not (by_figure and by_cost):
        figures.add_cost(wanted)
    if show_analytics and not (by_figure and not by_cost):
        figures.add_stats(wanted)
    rows = [figures.row(sa) for sa in subs]
    pending = [r for r in rows if r.sub_account.status == SubAccountStatus.PENDING_DELETION]
    if pending and can_restore(principal):
        restore = scheduled_deletion_ids(
            principal=principal, sub_account_ids=[r.sub_account.pk for r in pending]
        )
        for r in pending:
            r.restore_id = restore.get(r.sub_account.pk)
    return Listing(
        page=page,
        rows=rows,
        pool=figures.row(pool) if pool else None,
        currency=figures.currency,
        show_cost=show_cost,
        show_analytics=show_analytics,
    )
