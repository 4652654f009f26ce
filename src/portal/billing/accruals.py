"""The prorations accruing in a cycle, per sub-account, summed in SQL without making an
item (:func:`proration_sums`: exactly the sum of the items that
:func:`~portal.billing.drafting.proration_items` gives), and the worker's precomputed
sums (:class:`~portal.billing.models.SummaryAccrual`) read back and brought up to now
(:func:`accruing_prorations`). The billing summary reads them; the precompute worker
(:mod:`portal.billing.precompute`) writes the stored sums with the same statements.

Internal (``core.tenancy``): it takes a bare partner, scoped by its callers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from decimal import Decimal

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Case, F, Q, QuerySet, Subquery, When

from portal.billing.holders import changes_sql
from portal.billing.models import Invoice, SummaryAccrual, SummaryAccrualRow
from portal.billing.money import minor_units, quantize
from portal.billing.periods import Cycle
from portal.billing.proration import prorated_amount
from portal.partners.models import Partner


def proration_sums(
    *,
    partner: Partner,
    cycle: Cycle,
    price: Decimal,
    until: dt.datetime | None = None,
    after_day: int = 0,
) -> dict[int, Decimal]:
    """Per sub-account, the sum of the proration items of ``cycle`` (through ``until``) that
    :func:`~portal.billing.drafting.proration_items` gives for
    :func:`~portal.billing.holders.holder_changes`, exactly, without making the items: the
    billing summary's accruing prorations.

    One statement over the same changes: an item's amount depends only on its day and its
    kind, so Python rounds the (at most 31) day amounts once, as
    :func:`~portal.billing.drafting.proration_items` does, and passes them in minor units;
    the database adds whole numbers per sub-account, which is exact on SQLite as on
    PostgreSQL. A disconnection credits the day's amount: never more than was charged, since
    what was charged is the full price or the amount of an earlier day, and the amounts do
    not grow from one day to the next. Sub-accounts whose items add up to zero are kept.

    ``after_day`` sums only the items of the days after it, reading only the lines that
    changed holder since that day ended.
    """
    since = cycle.day_end(after_day) if after_day else None
    parts = proration_parts(
        partner=partner, cycle=cycle, price=price, until=until, after_day=after_day, since=since
    )
    places = minor_units(partner.currency)
    # Whole minor units: scaled, they are rounded already (and never a negative zero).
    return {pk: Decimal(units).scaleb(-places) for pk, (units, _items) in parts.items()}


def proration_parts(
    *,
    partner: Partner,
    cycle: Cycle,
    price: Decimal,
    until: dt.datetime | None,
    after_day: int = 0,
    since: dt.datetime | None = None,
    changed_before: dt.datetime | None = None,
) -> dict[int, tuple[int, int]]:
    """:func:`proration_sums` as ``{sub-account: (minor units, items)}``, for the lines
    :func:`~portal.billing.holders.changes_sql` selects (``since``, ``changed_before``),
    days after ``after_day``."""
    found = proration_parts_sql(
        partner=partner,
        cycle=cycle,
        price=price,
        until=until,
        after_day=after_day,
        since=since,
        changed_before=changed_before,
    )
    if found is None:
        return {}
    sql, params = found
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} SELECT sub_account_id, units, items FROM parts", params)  # noqa: S608
        return {pk: (int(total), int(items)) for pk, total, items in cursor.fetchall()}


def proration_parts_sql(
    *,
    partner: Partner,
    cycle: Cycle,
    price: Decimal,
    until: dt.datetime | None,
    after_day: int = 0,
    since: dt.datetime | None = None,
    changed_before: dt.datetime | None = None,
) -> tuple[str, list[object]] | None:
    """The ``WITH`` clause of :func:`proration_parts`, ending with the CTE ``parts``
    (``sub_account_id, units, items``), and its parameters, for a statement over the
    parts to follow (a ``SELECT``, or the worker's ``INSERT``); None when ``until`` is at
    or before the cycle's start."""
    found = changes_sql(
        partner_id=partner.pk, cycle=cycle, until=until, since=since, changed_before=changed_before
    )
    if found is None:
        return None
    changes, params = found
    currency, n = partner.currency, cycle.days
    places = minor_units(currency)

    def units(amount: Decimal) -> int:
        return int(amount.scaleb(places))

    days = range(after_day + 1, n + 1)
    for day in days:
        params += [day, units(prorated_amount(price, n - day + 1, n, currency))]
    params += [int(partner.credit_disconnects), int(partner.prorate_new_lines)]
    params.append(units(quantize(price, currency)))
    sql = f"""
        {changes},
        amounts (day, units) AS (VALUES {", ".join(["(%s, %s)"] * len(days))}),
        parts (sub_account_id, units, items) AS (
            SELECT sub_account_id, SUM(units), COUNT(*) FROM (
                SELECT ch.before_id AS sub_account_id, -a.units AS units
                FROM changes ch JOIN amounts a ON a.day = ch.day
                WHERE ch.before_id IS NOT NULL AND (ch.after_id IS NOT NULL OR %s = 1)
                UNION ALL
                SELECT ch.after_id AS sub_account_id,
                       CASE WHEN ch.before_id IS NULL AND %s = 0 THEN %s ELSE a.units END
                           AS units
                FROM changes ch JOIN amounts a ON a.day = ch.day
                WHERE ch.after_id IS NOT NULL
            ) item_parts
            GROUP BY sub_account_id
        )
    """  # noqa: S608 (only the statement's own text and placeholders are formatted in)
    return sql, params


# --- The worker's precomputed sums --------------------------------------------------------


# How far behind now the worker sums (``proration_accruals_precompute``): history is
# appended at the instant of a change, but a transaction commits a little after it; a
# sum through an instant must not miss a change still uncommitted at that instant.
ACCRUAL_LAG = dt.timedelta(minutes=5)


def accrual_key(partner: Partner, cycle: Cycle, price: Decimal) -> dict[str, object]:
    """What a :class:`SummaryAccrual` of ``cycle`` depends on besides history and the
    invoice."""
    return {
        "partner_id": partner.pk,
        "period_month": cycle.first_day,
        "price": price,
        "prorate_new_lines": partner.prorate_new_lines,
        "credit_disconnects": partner.credit_disconnects,
    }


# The columns of a precomputed summary's rows as the summary reads them, the first with
# the summary's instant (:func:`accrual_summary_rows`).
_SUMMARY_FIELDS = (
    *("through_once", "sub_account_id", "position", "name", "line_quantity"),
    *("recurring", "prorations", "discounts", "credits", "accruing_units", "accruing_items"),
)


def _accrual_summary(
    partner: Partner, cycle: Cycle, price: Decimal, now: dt.datetime, invoice: Invoice | None
) -> QuerySet[SummaryAccrual]:
    """The worker's summary of ``cycle`` a read at ``now`` may use (made for ``invoice``
    when given), as a queryset to use as a subquery."""
    summary = SummaryAccrual.objects.filter(**accrual_key(partner, cycle, price), through__lte=now)
    return summary if invoice is None else summary.filter(invoice_id=invoice.pk)


def accrual_summary_rows(
    *,
    partner: Partner,
    cycle: Cycle,
    price: Decimal,
    now: dt.datetime,
    invoice: Invoice,
    sub_account_ids: Collection[int] | None = None,
) -> QuerySet:
    """The rows of the worker's precomputed summary of ``invoice``'s ``cycle``
    (:class:`SummaryAccrual`) usable at ``now``, shaped as :data:`_SUMMARY_FIELDS`:
    sections in their order on the invoice, then the other sub-accounts with accruing
    items. One statement, so the instant and the rows are of one computation even while
    the worker updates it; the summary is found by subqueries, not a join, so the rows are
    walked by their index in order. The instant is in the first row only (the others'
    are None): decoding 10,000 timestamps would cost a sixth of the read. With
    ``sub_account_ids`` (a page of a list), the rows of those only, each with the instant.
    """
    summary = _accrual_summary(partner, cycle, price, now, invoice)
    through = Subquery(summary.values("through")[:1])
    rows = SummaryAccrualRow.objects.filter(summary_id=Subquery(summary.values("pk")[:1]))
    if sub_account_ids is None:
        # The first row: the first section's, or one without a section (then first).
        once = Case(When(Q(position__isnull=True) | Q(position=1), then=through), default=None)
    else:
        rows, once = rows.filter(sub_account_id__in=sub_account_ids), through
    return (
        rows.annotate(through_once=once)
        .order_by(F("position").asc(nulls_last=True))
        .values_list(*_SUMMARY_FIELDS)
    )


def accrual_rows(
    *,
    partner: Partner,
    cycle: Cycle,
    price: Decimal,
    now: dt.datetime,
    sub_account_ids: Collection[int] | None = None,
) -> tuple[dt.datetime | None, list[tuple]]:
    """The worker's precomputed accruing sums of ``cycle`` usable at ``now``: its instant
    (None: none usable) and ``(through, sub-account, minor units, items)`` per
    sub-account with accruing items (of ``sub_account_ids`` when given), in one statement
    (one computation). With ``sub_account_ids`` and none of them accruing, the instant is
    read alone (a second statement: nothing to be inconsistent with)."""
    summary = _accrual_summary(partner, cycle, price, now, None)
    rows = SummaryAccrualRow.objects.filter(
        summary_id=Subquery(summary.values("pk")[:1]), accruing_items__gt=0
    )
    if sub_account_ids is not None:
        rows = rows.filter(sub_account_id__in=sub_account_ids)
    found = fetch_rows(
        rows.annotate(through_once=Subquery(summary.values("through")[:1])).values_list(
            "through_once", "sub_account_id", "accruing_units", "accruing_items"
        )
    )
    if found:
        return found[0][0], found
    if sub_account_ids is not None:
        return summary.values_list("through", flat=True).first(), []
    return None, []


def accrual_changes(
    *, partner: Partner, cycle: Cycle, price: Decimal, since: dt.datetime, until: dt.datetime
) -> dict[int, tuple[int, int]]:
    """What turns the accruing prorations through ``since`` into those through ``until``
    (``since < until``, both in ``cycle``), as ``{sub-account: (minor units, items)}``
    to add: the lines with a period boundary in ``[since, until)``, their items through
    ``until`` less their items through ``since`` (two statements, each line's periods by
    index). The other lines had one holder from ``since`` to ``until``: their items are
    the same at both instants, and so are these lines' items of the days that ended
    before ``since``."""
    after_day = cycle.day_of(since) - 1 if since > cycle.start else 0
    common = {"partner": partner, "cycle": cycle, "price": price, "after_day": after_day}
    now = proration_parts(**common, until=until, since=since)
    then = proration_parts(**common, until=since, since=since, changed_before=until)
    delta = dict(now)
    for pk, (units, items) in then.items():
        had_units, had_items = delta.get(pk, (0, 0))
        delta[pk] = (had_units - units, had_items - items)
    return delta


def fetch_rows(queryset: QuerySet) -> list[tuple]:
    """A ``values_list`` queryset's rows in one fetch. On PostgreSQL the driver's values
    are what Django would return for these fields (no converters), and one ``fetchall``
    saves a third of the time of Django's chunked iteration on 10,000 rows."""
    if connection.vendor != "postgresql":
        return list(queryset)
    try:
        sql, params = queryset.query.sql_with_params()
    except EmptyResultSet:  # e.g. an empty page of sub-accounts
        return []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def accruing_prorations(
    *,
    partner: Partner,
    cycle: Cycle,
    price: Decimal,
    now: dt.datetime,
    sub_account_ids: Collection[int] | None = None,
) -> dict[int, Decimal]:
    """The prorations accruing in ``cycle`` until ``now``, per sub-account (those with
    items): the worker's latest sums (:func:`accrual_rows`) plus the changes since
    (:func:`accrual_changes`), or every change of the cycle so far when nothing is
    precomputed (e.g. in its first minutes). With the sums there, no query reads the
    moves made before they were summed. ``sub_account_ids`` reads the stored sums of
    those only (a page of a list), not the partner's ten thousand."""
    through, found = accrual_rows(
        partner=partner, cycle=cycle, price=price, now=now, sub_account_ids=sub_account_ids
    )
    if through is None:
        sums = proration_parts(partner=partner, cycle=cycle, price=price, until=now)
    else:
        sums = {pk: (units, items) for _through, pk, units, items in found}
        if through < now:
            delta = accrual_changes(
                partner=partner, cycle=cycle, price=price, since=through, until=now
            )
            for pk, (units, items) in delta.items():
                had_units, had_items = sums.get(pk, (0, 0))
                sums[pk] = (had_units + units, had_items + items)
    if sub_account_ids is not None:
        sums = {pk: part for pk, part in sums.items() if pk in sub_account_ids}
    places = minor_units(partner.currency)
    # Whole minor units: scaled, they are rounded already (and never a negative zero).
    return {pk: Decimal(units).scaleb(-places) for pk, (units, items) in sums.items() if items > 0}
