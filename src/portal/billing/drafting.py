"""The invoice-drafting engine: what the invoice of a cycle holds, computed from history
without storing anything (:func:`invoice_draft`; issuing stores it).

The invoice of cycle N is computed from assignment history only (nothing is
counted incrementally), so issuing it late, or twice, gives the same answer:

- **recurring**: one ``GROUP BY`` over the assignment periods open at the cycle's
  start ``S``: lines held per sub-account;
- **prorations** for cycle N−1: one SQL statement (:func:`~portal.billing.holders.holder_changes`)
  finds, for the lines whose periods start or end inside that cycle, the days on which the
  holder *at the end of the day* changes. Python only turns those few change rows
  into rounded items (:func:`proration_items`);
- **discounts and credits** in force for the cycle, applied in domain §3's order (the
  arithmetic is :mod:`portal.billing.adjustments`).

Internal (``core.tenancy``): its functions take a bare partner; the services, selectors
and jobs that call them took it from the principal (``partner_for``) or iterate
every partner as the system.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Max, Q, QuerySet, Sum

from portal.billing import adjustments
from portal.billing.holders import HolderChange, holder_changes, lines_held_at
from portal.billing.models import (
    PRORATION_KINDS,
    CreditEntry,
    CreditEntryKind,
    Discount,
    DiscountKind,
    Invoice,
    InvoiceItem,
    InvoiceItemKind,
    PriceChange,
)
from portal.billing.money import plain_amount, quantize
from portal.billing.names import name_history, named_sub_accounts, section_name, with_merge_targets
from portal.billing.periods import Cycle
from portal.billing.proration import prorated_amount
from portal.core.phone import display_number_fast
from portal.partners.models import Partner, SubAccount, SubAccountKind


@dataclass(slots=True)
class DraftItem:
    """An invoice item before it is stored (see :class:`~portal.billing.models.InvoiceItem`)."""

    sub_account_id: int
    kind: str
    amount: Decimal
    unit_price: Decimal
    service_start: dt.date
    service_end: dt.date
    days: int
    description: str
    quantity: int = 1
    day: int | None = None
    line_id: int | None = None
    line_number: str = ""
    other_sub_account_id: int | None = None
    other_name: str = ""
    discount_id: int | None = None
    # The balance a credit item comes from: None = the partner's, else a sub-account's.
    credit_pool: int | None = None


@dataclass(slots=True)
class DraftSection:
    sub_account_id: int
    name: str
    kind: str
    position: int
    line_quantity: int = 0
    items: list[DraftItem] = field(default_factory=list)
    # (number of items summed, sum per kind): items are only ever appended, so the sums
    # stand until the list grows. Issuing reads them a dozen times per section.
    _sums: tuple[int, dict[str, Decimal]] = field(default=(0, {}), repr=False, compare=False)

    def _by_kind(self) -> dict[str, Decimal]:
        counted, sums = self._sums
        if counted != len(self.items):
            sums = {}
            for item in self.items:
                sums[item.kind] = sums.get(item.kind, Decimal(0)) + item.amount
            self._sums = (len(self.items), sums)
        return sums

    def _sum(self, kinds: tuple[str, ...]) -> Decimal:
        sums = self._by_kind()
        return sum((sums[k] for k in kinds if k in sums), Decimal(0))

    @property
    def recurring(self) -> Decimal:
        return self._sum((InvoiceItemKind.RECURRING,))

    @property
    def prorations(self) -> Decimal:
        return self._sum(PRORATION_KINDS)

    @property
    def discounts(self) -> Decimal:
        return self._sum((InvoiceItemKind.DISCOUNT,))

    @property
    def credits(self) -> Decimal:
        return self._sum((InvoiceItemKind.CREDIT,))

    @property
    def total(self) -> Decimal:
        return sum(self._by_kind().values(), Decimal(0))


@dataclass(slots=True)
class DraftInvoice:
    """What the invoice of ``cycle`` holds, computed from history; nothing stored."""

    partner: Partner
    cycle: Cycle
    unit_price: Decimal
    proration_price: Decimal
    sections: list[DraftSection]
    # What the invoice was drafted from, kept for the client statements issued with it
    # (domain §8.1: one engine, the same holder changes): lines held at the cycle's start
    # per sub-account, and the holder changes of the cycle before.
    held: dict[int, int] = field(default_factory=dict)
    changes: list[HolderChange] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return sum((s.total for s in self.sections), Decimal(0))

    def credits_applied(self) -> dict[int | None, Decimal]:
        """Credit taken from each balance (None = the partner's), positive."""
        taken: dict[int | None, Decimal] = {}
        for s in self.sections:
            for i in s.items:
                if i.kind == InvoiceItemKind.CREDIT:
                    taken[i.credit_pool] = taken.get(i.credit_pool, Decimal(0)) - i.amount
        return taken


# --- Prorations ---------------------------------------------------------------------------


def _negated(amount: Decimal) -> Decimal:
    """``-amount``, but never a negative zero (which would print as "-0.00")."""
    return -amount if amount else amount


def proration_items(
    *,
    partner: Partner,
    cycle: Cycle,
    price: Decimal | Callable[[int], Decimal | None],
    changes: list[HolderChange],
    names: Callable[[int, int], str] | None,
) -> list[DraftItem]:
    """domain §3's prorations of ``cycle`` from its holder changes, each rounded on its own.

    The one proration engine, for invoices and client statements alike:

    - an invoice passes the provider's ``price`` of the cycle and ``names(sub_account_id,
      day)``, how a move's item names the other sub-account: as it was called on the day
      of the change (:class:`~portal.billing.names.NameHistory`), not as it is now;
    - a client statement (domain §8.1) passes ``price`` as a function giving each
      sub-account's resale price of the cycle (None: not priced, no item) and no
      ``names``: a statement never names another client, so its items say "moved in" and
      "moved out" and state the price they are computed at.

    A move on day d of n gives the source −price·(n−d+1)/n and the target the same
    fraction of its price, positive (with one price, computed once and negated); a new
    line is charged that amount (the full price when ``prorate_new_lines`` is off) to its
    holder at the end of day d; a disconnected line is credited the unused days only under
    ``credit_disconnects``, and never more than its holder was charged for the line this
    cycle.
    """
    n = cycle.days
    currency = partner.currency
    last_date = cycle.date_of(n)
    price_of = price if callable(price) else (lambda _sub, _p=price: _p)
    client = names is None
    items: list[DraftItem] = []
    charged: dict[int, Decimal] = {}  # line -> what its current holder was charged
    # What depends only on the day and the price: at most 31 distinct values per price
    # for 100,000s of changes.
    per_day: dict[tuple[int, Decimal], tuple[int, Decimal, str]] = {}
    fulls: dict[Decimal, Decimal] = {}
    dates: dict[int, tuple[dt.date, str]] = {}

    def day_words(day: int) -> tuple[dt.date, str]:
        when = cycle.date_of(day)
        return when, (f"{when:%-d %B %Y}" if client else f"{when}")

    def facts(day: int, at: Decimal) -> tuple[int, Decimal, str]:
        found = per_day.get((day, at))
        if found is None:
            days = n - day + 1
            span = f"{days} of {n} days"
            if client:
                span = f"{span} × {plain_amount(at, currency)}"
            found = per_day[(day, at)] = (days, prorated_amount(at, days, n, currency), span)
        return found

    def full(at: Decimal) -> Decimal:
        if at not in fulls:
            fulls[at] = quantize(at, currency)
        return fulls[at]

    for change in changes:
        before, after = change.before, change.after
        before_price = price_of(before) if before is not None else None
        after_price = price_of(after) if after is not None else None
        number = display_number_fast(change.number)
        when, on = dates.get(change.day) or dates.setdefault(change.day, day_words(change.day))

        common = {
            "service_start": when,
            "service_end": last_date,
            "day": change.day,
            "line_id": change.line_id,
            "line_number": change.number,
        }

        if change.line_id not in charged and before_price is not None:
            charged[change.line_id] = full(before_price)  # charged in advance
        if before is not None and after is not None:
            source = target = ""
            if names is not None:
                source, target = names(before, change.day), names(after, change.day)
            if before_price is not None:
                days, amount, span = facts(change.day, before_price)
                items.append(
                    DraftItem(
                        sub_account_id=before,
                        kind=InvoiceItemKind.MOVE_CREDIT,
                        amount=_negated(amount),
                        other_sub_account_id=None if client else after,
                        other_name=target,
                        description=(
                            f"{number} moved out on {on}: {span}"
                            if client
                            else f"{number} moved to {target} on {on}: {span}"
                        ),
                        unit_price=before_price,
                        days=days,
                        **common,  # type: ignore[arg-type]
                    )
                )
            if after_price is not None:
                days, amount, span = facts(change.day, after_price)
                items.append(
                    DraftItem(
                        sub_account_id=after,
                        kind=InvoiceItemKind.MOVE_CHARGE,
                        amount=amount,
                        other_sub_account_id=None if client else before,
                        other_name=source,
                        description=(
                            f"{number} moved in on {on}: {span}"
                            if client
                            else f"{number} moved from {source} on {on}: {span}"
                        ),
                        unit_price=after_price,
                        days=days,
                        **common,  # type: ignore[arg-type]
                    )
                )
                charged[change.line_id] = amount
            else:
                charged.pop(change.line_id, None)
        elif after is not None:
            if after_price is None:
                continue
            days, amount, span = facts(change.day, after_price)
            if partner.prorate_new_lines:
                description = f"{number} activated on {on}: {span}"
            else:
                amount = full(after_price)
                whole = (
                    f"full month × {plain_amount(after_price, currency)}"
                    if client
                    else "full month"
                )
                description = f"{number} activated on {on}: {whole}"
            items.append(
                DraftItem(
                    sub_account_id=after,
                    kind=InvoiceItemKind.ACTIVATION,
                    amount=amount,
                    description=description,
                    unit_price=after_price,
                    days=days,
                    **common,  # type: ignore[arg-type]
                )
            )
            charged[change.line_id] = amount
        elif before is not None:
            if partner.credit_disconnects and before_price is not None:
                days, amount, span = facts(change.day, before_price)
                credit = min(amount, charged.get(change.line_id, Decimal(0)))
                items.append(
                    DraftItem(
                        sub_account_id=before,
                        kind=InvoiceItemKind.DISCONNECT_CREDIT,
                        amount=_negated(credit),
                        description=f"{number} disconnected on {on}: {span} unused",
                        unit_price=before_price,
                        days=days,
                        **common,  # type: ignore[arg-type]
                    )
                )
            charged[change.line_id] = Decimal(0)
    return items


# --- The invoice --------------------------------------------------------------------------


def invoice_for_cycle(partner_id: int, cycle: Cycle) -> Invoice | None:
    return Invoice.objects.filter(partner_id=partner_id, period_month=cycle.first_day).first()


def price_for_cycle(partner: Partner, cycle: Cycle) -> Decimal:
    """The price per line of ``cycle`` from the partner's price history.

    A change made during a cycle applies from the next one (:class:`PriceChange`); a
    partner whose price never changed through the service charges ``line_price``.
    """
    month = cycle.first_day
    changes = PriceChange.objects.filter(partner_id=partner.pk)
    last = changes.filter(effective_month__lte=month).order_by("-effective_month", "-pk").first()
    if last is not None:
        return last.price
    first = changes.order_by("effective_month", "pk").first()
    return first.previous_price if first is not None else partner.line_price


def charged_price(partner: Partner, cycle: Cycle) -> Decimal:
    """The price charged for ``cycle``: its invoice's, or its price if none was issued."""
    invoice = invoice_for_cycle(partner.pk, cycle)
    return invoice.unit_price if invoice is not None else price_for_cycle(partner, cycle)


def _moved_between(
    subs: dict[int, SubAccount], changes: list[HolderChange]
) -> dict[int, SubAccount]:
    """The sub-accounts a move item names (both ends of each move), and the targets of
    those that are merged sources (loaded with them by ``select_related``): what a name
    history needs, and nothing when nothing moved."""
    named: dict[int, SubAccount] = {}
    for change in changes:
        if change.before is not None and change.after is not None:
            named[change.before] = subs[change.before]
            named[change.after] = subs[change.after]
    return with_merge_targets(named)


def invoice_draft(
    *, partner: Partner, cycle: Cycle, as_of: dt.datetime | None = None
) -> DraftInvoice:
    """Compute the invoice of ``cycle`` (recurring at its start + prorations of the cycle
    before) without storing anything. A handful of queries whatever the partner's size.

    Lines, prorations and prices come from their history whenever this runs. What has no
    history of its own is read as it is now, unless ``as_of`` is given: a late run
    (:func:`invoice_as_of`) passes the cycle's start, the instant the invoice would have
    been issued on time, and then credits granted since, discounts removed since and
    renames or merges since are not seen (domain §3, "exactly as if it had run on time").
    """
    currency = partner.currency
    price = price_for_cycle(partner, cycle)
    previous = cycle.previous()
    proration_price = charged_price(partner, previous)
    held = lines_held_at(partner.pk, cycle.start)
    changes = holder_changes(partner_id=partner.pk, cycle=previous)
    involved = set(held) | {pk for c in changes for pk in (c.before, c.after) if pk is not None}
    discounts = list(discounts_in_force(partner_id=partner.pk, cycle=cycle, as_of=as_of))
    balances = credit_balances(partner_id=partner.pk, as_of=as_of)
    involved |= {d.sub_account_id for d in discounts if d.sub_account_id is not None}
    involved |= {pk for pk in balances if pk is not None}
    subs = named_sub_accounts(partner.pk, involved)
    if as_of is None:
        names = {pk: section_name(sa) for pk, sa in subs.items()}
    else:
        then = name_history(
            partner_id=partner.pk, subs=with_merge_targets(subs), cycle=cycle, since=as_of
        )
        names = {pk: then.name_at(pk, as_of) for pk in subs}
    history = name_history(
        partner_id=partner.pk, subs=_moved_between(subs, changes), cycle=previous
    )
    prorations = proration_items(
        partner=partner, cycle=previous, price=proration_price, changes=changes, names=history
    )
    sections: dict[int, DraftSection] = {}

    def section(sub_account_id: int) -> DraftSection:
        if sub_account_id not in sections:
            sa = subs[sub_account_id]
            sections[sub_account_id] = DraftSection(
                sub_account_id=sub_account_id,
                name=names[sub_account_id],
                kind=sa.kind,
                position=0,
                line_quantity=held.get(sub_account_id, 0),
            )
        return sections[sub_account_id]

    first, last = cycle.first_day, cycle.date_of(cycle.days)
    for sub_account_id, count in held.items():
        plural = "line" if count == 1 else "lines"
        section(sub_account_id).items.append(
            DraftItem(
                sub_account_id=sub_account_id,
                kind=InvoiceItemKind.RECURRING,
                amount=quantize(count * price, currency),
                unit_price=price,
                quantity=count,
                service_start=first,
                service_end=last,
                days=cycle.days,
                description=(
                    f"{count} {plural} × {plain_amount(price, currency)} {currency} "
                    f"for {first:%B %Y}"
                ),
            )
        )
    for item in prorations:
        into = sections.get(item.sub_account_id) or section(item.sub_account_id)
        into.items.append(item)
    ordered = sorted(
        sections.values(),
        key=lambda s: (s.kind != SubAccountKind.AVAILABLE, s.name.lower(), s.sub_account_id),
    )
    for position, s in enumerate(ordered, start=1):
        s.position = position
    _add_discounts_and_credits(
        partner=partner,
        cycle=cycle,
        sections=ordered,
        discounts=discounts,
        balances=balances,
        names=names,
        received=credit_transfers_in(partner_id=partner.pk) if balances else {},
    )
    return DraftInvoice(
        partner=partner,
        cycle=cycle,
        unit_price=price,
        proration_price=proration_price,
        sections=ordered,
        held=held,
        changes=changes,
    )


def invoice_as_of(cycle: Cycle, now: dt.datetime) -> dt.datetime | None:
    """The instant an invoice of ``cycle`` issued at ``now`` reads what has no history as
    of (see :func:`invoice_draft`): None (as it is now) while ``cycle`` is still running,
    so the invoice issued on time, or a few days late, is unchanged; the cycle's start
    once the cycle is over, when a run catching up on missed months issues it."""
    return cycle.start if now >= cycle.end else None


# --- Discounts and credits ----------------------------------------------------------------


def discounts_in_force(
    *, partner_id: int, cycle: Cycle, as_of: dt.datetime | None = None
) -> QuerySet[Discount]:
    """Discounts that the invoice of ``cycle`` applies if issued now (not removed), or if
    issued at ``as_of`` (not removed by then: a discount removed at t still applies to
    the cycles whose invoice was due before t)."""
    month = cycle.first_day
    kept = Q(removed_at__isnull=True)
    if as_of is not None:
        kept |= Q(removed_at__gt=as_of)
    return (
        Discount.objects.filter(kept, partner_id=partner_id, first_month__lte=month)
        .filter(Q(last_month__isnull=True) | Q(last_month__gte=month))
        .order_by("pk")
    )


def credit_balances(
    *, partner_id: int, keep_zero: bool = False, as_of: dt.datetime | None = None
) -> dict[int | None, Decimal]:
    """Each credit balance of the partner (None = the partner's own): one ``GROUP BY``
    over the ledger. Balances at zero are left out unless ``keep_zero``.

    ``as_of`` leaves out the grants made at or after it: what an invoice due then could
    apply. Every application is counted (invoices are issued oldest first, so those
    already stored are all of earlier cycles), and so is every transfer: a balance
    follows its sub-account whenever the merge or deletion happened. A transfer moved
    the whole balance as it stood then, applications of a late run not yet taken, so
    reading it earlier than it happened could apply the same credit twice. Each
    balance read so is at most its ledger total, so no balance ever goes below zero;
    one left negative (a grant made after ``as_of`` and since transferred) counts as
    nothing.
    """
    rows = CreditEntry.objects.filter(partner_id=partner_id)
    if as_of is not None:
        rows = rows.exclude(kind=CreditEntryKind.GRANT, created_at__gte=as_of)
    sums = rows.values("sub_account_id").annotate(balance=Sum("amount")).order_by()
    if as_of is not None:
        return {r["sub_account_id"]: r["balance"] for r in sums if r["balance"] > 0}
    return {r["sub_account_id"]: r["balance"] for r in sums if keep_zero or r["balance"]}


def credit_transfers_in(*, partner_id: int) -> dict[int | None, list[tuple[Decimal, str]]]:
    """Per balance (None = the partner's), the ``(amount, reason)`` of each transfer it
    received since an invoice last drew on it, oldest first: where the balance the next
    invoice applies came from (a merged or deleted sub-account's). Transfers are few (one
    per merged or deleted sub-account that had credit left): one small query, and a
    ``GROUP BY`` over the applications only when there is one."""
    received = list(
        CreditEntry.objects.filter(
            partner_id=partner_id, kind=CreditEntryKind.TRANSFER, amount__gt=0
        )
        .order_by("pk")
        .values_list("pk", "sub_account_id", "amount", "reason")
    )
    if not received:
        return {}
    last_applied = dict(
        CreditEntry.objects.filter(partner_id=partner_id, kind=CreditEntryKind.APPLY)
        .values("sub_account_id")
        .annotate(last=Max("pk"))
        .order_by()
        .values_list("sub_account_id", "last")
    )
    found: dict[int | None, list[tuple[Decimal, str]]] = {}
    for pk, pool, amount, reason in received:
        if pk > last_applied.get(pool, 0):
            found.setdefault(pool, []).append((amount, reason))
    return found


def _received_text(received: list[tuple[Decimal, str]], currency: str, room: int) -> str:
    """ ", which received …" naming each transfer, or their sum when that would not fit
    ``room`` characters."""
    parts = [
        f"{plain_amount(amount, currency)} {currency} from the {reason[:1].lower()}{reason[1:]}"
        for amount, reason in received
    ]
    text = f", which received {' and '.join(parts)}"
    if len(text) <= room:
        return text
    total = plain_amount(sum((a for a, _ in received), Decimal(0)), currency)
    return (
        f", which received {total} {currency} from the balances of {len(received)} merged "
        "or deleted sub-accounts (see the credit ledger)"
    )


# InvoiceItem.description's length.
_DESCRIPTION_MAX = InvoiceItem._meta.get_field("description").max_length


def _percent_text(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return f"{text}%"


def _add_discounts_and_credits(
    *,
    partner: Partner,
    cycle: Cycle,
    sections: list[DraftSection],
    discounts: list[Discount],
    balances: dict[int | None, Decimal],
    names: dict[int, str],
    received: dict[int | None, list[tuple[Decimal, str]]],
) -> None:
    """Append discount then credit items to ``sections`` (domain §3 order), per
    :mod:`portal.billing.adjustments`. A credit item drawn on a balance that received a
    merged or deleted sub-account's credit since it was last drawn on says so
    (``received``, from :func:`credit_transfers_in`)."""
    currency = partner.currency
    first, last = cycle.first_day, cycle.date_of(cycle.days)
    by_sub = {s.sub_account_id: s for s in sections}
    rules = [adjustments.DiscountRule(d.pk, d.sub_account_id, d.kind, d.value) for d in discounts]
    recurring = {s.sub_account_id: s.recurring for s in sections}
    by_id = {d.pk: d for d in discounts}
    common = {"service_start": first, "service_end": last, "days": cycle.days}
    for part in adjustments.apply_discounts(recurring, rules, currency):
        d = by_id[part.discount_id]
        if d.kind == DiscountKind.PERCENT:
            what = f"{_percent_text(d.value)} off recurring charges"
        else:
            what = f"{plain_amount(d.value, currency)} {currency} off recurring charges"
        if d.sub_account_id is None:
            what += (
                ", whole invoice, spread in proportion to recurring charges before "
                f"sub-account discounts: this section's {plain_amount(part.basis, currency)} "
                f"of {plain_amount(part.basis_total, currency)} {currency}"
            )
            if part.capped:
                what += ", limited to what its own discount left"
        by_sub[part.sub_account_id].items.append(
            DraftItem(
                sub_account_id=part.sub_account_id,
                kind=InvoiceItemKind.DISCOUNT,
                amount=_negated(part.amount),
                unit_price=part.amount,
                description=f"Discount “{d.name}”: {what}",
                discount_id=d.pk,
                **common,
            )
        )
    totals = {s.sub_account_id: s.total for s in sections}
    sub_balances = {pk: b for pk, b in balances.items() if pk is not None}
    for part in adjustments.apply_credits(
        totals, sub_balances, balances.get(None, Decimal(0)), currency
    ):
        if part.pool is None:
            source = "the partner's credit balance (shared by section totals)"
        else:
            source = f"the credit balance of {names.get(part.pool, 'this sub-account')}"
        description = f"Credit from {source}"
        if part.pool in received:
            room = _DESCRIPTION_MAX - len(description)
            description += _received_text(received[part.pool], currency, room)
        by_sub[part.sub_account_id].items.append(
            DraftItem(
                sub_account_id=part.sub_account_id,
                kind=InvoiceItemKind.CREDIT,
                amount=_negated(part.amount),
                unit_price=part.amount,
                description=description,
                credit_pool=part.pool,
                **common,
            )
        )
