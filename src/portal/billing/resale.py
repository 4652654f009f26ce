"""Resale prices: what a partner charges its own clients per line per month (domain §8.1).

A partner default and an optional override per sub-account, both kept as a history of
:class:`~portal.billing.models.ResalePriceChange` rows, so a change applies from the next
cycle, like the provider's price, and a statement issued late (an outage) is priced as it
would have been on time. The Available pool never has a resale price.

Reads that take a bare ``partner_id`` are internal to billing (statements, margins), whose
callers have already scoped the partner to the principal; what people and keys read
(:func:`resale_overview`, :func:`sub_account_resale_prices`) starts from
``visible_to(principal)``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.db.models import Q

from portal.accounts.policies import require
from portal.audit.services import audit_record
from portal.billing.models import ResalePriceChange
from portal.billing.money import minor_units, quantize
from portal.billing.periods import Cycle, cycle_containing
from portal.billing.policies import can_read_resale_prices, can_set_resale_prices
from portal.core import clock
from portal.core.errors import Conflict, Invalid, NotFound
from portal.core.principal import Principal
from portal.core.retry import retry_on_lost_race
from portal.partners.models import Partner, SubAccount, SubAccountKind, SubAccountStatus
from portal.partners.selectors import partner_for
from portal.partners.services import sub_account_update

MAX_RESALE_PRICE = Decimal("100000000")


@dataclass(slots=True)
class ResalePrices:
    """The resale prices of one moment: the partner's default and each override (an
    override of None, kept for a sub-account that cleared its own, means "the default")."""

    default: Decimal | None = None
    overrides: dict[int, Decimal | None] = field(default_factory=dict)

    def price_of(self, sub_account_id: int) -> Decimal | None:
        """The resale price of a sub-account (not the Available pool): its override, else
        the default; None when neither is set."""
        own = self.overrides.get(sub_account_id)
        return own if own is not None else self.default

    def override_of(self, sub_account_id: int) -> Decimal | None:
        return self.overrides.get(sub_account_id)


def _replayed(rows: Iterable[tuple[int | None, Decimal | None]]) -> ResalePrices:
    """The prices after ``rows`` (``(sub_account_id, price)`` in the order they apply)."""
    prices = ResalePrices()
    for sub_account_id, price in rows:
        if sub_account_id is None:
            prices.default = price
        else:
            prices.overrides[sub_account_id] = price
    return prices


def _history(partner_id: int) -> Any:
    return ResalePriceChange.objects.filter(partner_id=partner_id).order_by("effective_month", "pk")


def resale_prices_in_force(partner_id: int, month: dt.date) -> ResalePrices:
    """The resale prices in force for the cycle starting on ``month`` (the 1st): every
    change effective at or before it, replayed in order. One query."""
    rows = _history(partner_id).filter(effective_month__lte=month)
    return _replayed(rows.values_list("sub_account_id", "price"))


def resale_prices_in_force_for(
    partner_id: int, months: Iterable[dt.date]
) -> dict[dt.date, ResalePrices]:
    """:func:`resale_prices_in_force` for several cycles from one query."""
    wanted = sorted(set(months))
    if not wanted:
        return {}
    rows = list(
        _history(partner_id)
        .filter(effective_month__lte=wanted[-1])
        .values_list("effective_month", "sub_account_id", "price")
    )
    return {
        month: _replayed((sub, price) for effective, sub, price in rows if effective <= month)
        for month in wanted
    }


def resale_settings(partner_id: int, sub_account_ids: Iterable[int] | None = None) -> ResalePrices:
    """The resale prices as set now, whatever cycle they take effect from: what Settings
    and the API show and change. ``sub_account_ids`` limits the overrides read (a page of
    the list); None reads them all."""
    rows = _history(partner_id).order_by("effective_month", "pk")
    if sub_account_ids is not None:
        wanted = list(sub_account_ids)
        rows = rows.filter(Q(sub_account_id__isnull=True) | Q(sub_account_id__in=wanted))
    return _replayed(rows.values_list("sub_account_id", "price"))


# --- What people read ---------------------------------------------------------------------


@dataclass(slots=True)
class ResaleOverview:
    """A partner's resale prices as the Resale prices page and ``GET /billing/resale`` show
    them: those in force for the current cycle and those set now, which the next cycle
    takes (a change always applies from the next cycle)."""

    partner: Partner
    cycle: Cycle  # the current cycle
    in_force: ResalePrices
    set_now: ResalePrices

    @property
    def next_month(self) -> dt.date:
        return self.cycle.next().first_day

    def default_pending(self) -> bool:
        """Whether the default set now differs from this cycle's (it applies next cycle)."""
        return self.set_now.default != self.in_force.default

    def pending(self, sub_account_id: int) -> bool:
        """Whether the sub-account's price next cycle differs from this cycle's."""
        return self.set_now.price_of(sub_account_id) != self.in_force.price_of(sub_account_id)


def resale_overview(*, principal: Principal, sub_account_ids: Iterable[int] = ()) -> ResaleOverview:
    """The principal's partner's default, and the overrides of ``sub_account_ids`` (a page
    of the list), in force this cycle and as set now: one query of their history."""
    require(can_read_resale_prices(principal), "Your role may not read resale prices.")
    partner = partner_for(principal)
    cycle = cycle_containing(clock.now(), partner.timezone)
    rows = list(
        ResalePriceChange.objects.visible_to(principal)
        .filter(partner_id=partner.pk)
        .filter(Q(sub_account_id__isnull=True) | Q(sub_account_id__in=list(sub_account_ids)))
        .order_by("effective_month", "pk")
        .values_list("effective_month", "sub_account_id", "price")
    )
    month = cycle.first_day
    return ResaleOverview(
        partner=partner,
        cycle=cycle,
        in_force=_replayed((sub, price) for effective, sub, price in rows if effective <= month),
        set_now=_replayed((sub, price) for _effective, sub, price in rows),
    )


def sub_account_resale_prices(
    *, principal: Principal, sub_account_ids: Iterable[int]
) -> dict[int, Decimal] | None:
    """Each sub-account's own resale price as set now (absent: none, the partner's default
    applies), rounded to its partner's currency, from one query: what the SubAccount
    shape's ``resale_price`` shows. None when the principal may not read resale prices
    (roles that see no billing), so the shape leaves the field out for them."""
    if not can_read_resale_prices(principal):
        return None
    wanted = list(sub_account_ids)
    if not wanted:
        return {}
    rows = (
        ResalePriceChange.objects.visible_to(principal)
        .filter(sub_account_id__in=wanted)
        .order_by("effective_month", "pk")
        .values_list("sub_account_id", "price", "partner__currency")
    )
    prices: dict[int, Decimal | None] = {}
    for sub_account_id, price, currency in rows:
        prices[sub_account_id] = None if price is None else quantize(price, currency)
    return {pk: price for pk, price in prices.items() if price is not None}


# --- Changes ------------------------------------------------------------------------------


def clean_resale_price(value: Any, *, currency: str, field: str = "resale_price") -> Decimal | None:
    """A resale price as typed: None or "" clears it; otherwise a number ≥ 0 with no more
    decimals than the currency has (never silently rounded)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise Invalid(f"Resale price {value!r} is not a number.", field=field)
    try:
        price = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise Invalid(f"Resale price {value!r} is not a number.", field=field) from None
    if not price.is_finite() or price < 0 or price >= MAX_RESALE_PRICE:
        raise Invalid("Resale price must be between 0 and 99999999.", field=field)
    places = minor_units(currency)
    step = Decimal(1).scaleb(-places)
    if price != price.quantize(step, rounding=ROUND_HALF_UP):
        unit = "no decimals" if places == 0 else f"at most {places} decimals"
        raise Invalid(f"Resale price in {currency} takes {unit}.", field=field)
    return price.quantize(step)


def _partner_of(principal: Principal) -> Partner:
    partner_id = principal.scope_partner_id
    if partner_id is None:
        raise Invalid("Choose the partner whose resale prices to change.", field="partner")
    # The row serialises changes of one partner's resale prices (effective month, history).
    return Partner.objects.select_for_update(no_key=True).get(pk=partner_id)


def _record(
    *,
    principal: Principal,
    partner: Partner,
    sub_account: SubAccount | None,
    before: Decimal | None,
    price: Decimal | None,
) -> ResalePriceChange | None:
    """Append the change effective from the next cycle and its audit event; nothing when
    the price set is already ``price``."""
    if before == price:
        return None
    now = clock.now()
    effective = cycle_containing(now, partner.timezone).next().first_day
    change = ResalePriceChange.objects.create(
        partner=partner,
        sub_account=sub_account,
        effective_month=effective,
        price=price,
        created_at=now,
        created_by=principal.label,
    )
    audit_record(
        principal=principal,
        partner_id=partner.pk,
        action="resale_price.set",
        object_type="sub_account" if sub_account is not None else "partner",
        object_id=sub_account.pk if sub_account is not None else partner.pk,
        # The sub-account's own Audit log tab lists the changes of its price.
        sub_account_id=sub_account.pk if sub_account is not None else None,
        at=now,
        data={
            "sub_account_id": sub_account.pk if sub_account is not None else None,
            "before": {"resale_price": None if before is None else str(before)},
            "after": {"resale_price": None if price is None else str(price)},
            "effective_month": f"{effective:%Y-%m}",
        },
    )
    return change


@retry_on_lost_race
@transaction.atomic
def resale_default_set(*, principal: Principal, price: Any) -> ResalePriceChange | None:
    """Set (or clear, with None) the partner's default resale price, from the next cycle.
    Returns the change appended, or None when the default already was ``price``."""
    require(can_set_resale_prices(principal), "Only admins and billing set resale prices.")
    partner = _partner_of(principal)
    cleaned = clean_resale_price(price, currency=partner.currency, field="default_resale_price")
    before = resale_settings(partner.pk, ()).default
    return _record(
        principal=principal, partner=partner, sub_account=None, before=before, price=cleaned
    )


@retry_on_lost_race
@transaction.atomic
def sub_account_resale_price_set(
    *, principal: Principal, sub_account_id: Any, price: Any
) -> ResalePriceChange | None:
    """Set a sub-account's own resale price, from the next cycle; None returns it to the
    partner's default. Refused for the Available pool (it bills nobody) and for a
    sub-account that is no longer active. Returns the change, or None when unchanged."""
    require(can_set_resale_prices(principal), "Only admins and billing set resale prices.")
    partner = _partner_of(principal)
    sub = SubAccount.objects.visible_to(principal).get_visible(
        principal, sub_account_id, what="Sub-account"
    )
    if sub.partner_id != partner.pk:  # a staff principal acting for another partner
        raise NotFound(f"Sub-account {sub_account_id} not found.")
    if sub.kind == SubAccountKind.AVAILABLE:
        raise Invalid("The Available pool has no resale price.", field="resale_price")
    if sub.status != SubAccountStatus.ACTIVE:
        raise Conflict(f"Sub-account {sub.display_name} is {sub.get_status_display().lower()}.")
    cleaned = clean_resale_price(price, currency=partner.currency)
    before = resale_settings(partner.pk, (sub.pk,)).override_of(sub.pk)
    return _record(
        principal=principal, partner=partner, sub_account=sub, before=before, price=cleaned
    )


@retry_on_lost_race
@transaction.atomic
def sub_account_update_with_resale_price(
    *, principal: Principal, sub_account: SubAccount, resale_price: Any, **changes: Any
) -> SubAccount:
    """``PATCH /sub-accounts/{id}`` with a ``resale_price``: the sub-account's own resale
    price (:func:`sub_account_resale_price_set`, None returns it to the default) and its
    other fields (``partners.services.sub_account_update``) in one transaction, so a
    refusal of either changes neither. Each checks its own role (a billing key may set
    the price but not rename; a manager the reverse); the fields each refuses are
    reported together (one Invalid). The price goes first: it locks the partner, which
    comes before the sub-account in the lock order."""
    errors: dict[str, str] = {}
    try:
        sub_account_resale_price_set(
            principal=principal, sub_account_id=sub_account.pk, price=resale_price
        )
    except Invalid as exc:
        errors.update(exc.errors or {"resale_price": str(exc.detail)})
    if changes:
        try:
            sub_account = sub_account_update(
                principal=principal, sub_account=sub_account, **changes
            )
        except Invalid as exc:
            errors.update(exc.errors or {"sub_account": str(exc.detail)})
    if errors:
        raise Invalid.of_fields(errors)
    return sub_account
