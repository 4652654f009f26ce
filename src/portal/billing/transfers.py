"""Credit balances that follow their sub-account: a merged sub-account's balance moves to
the merge's target, a deleted one's to the partner, inside the merge's or deletion's own
transaction (:func:`credit_balances_transfer`).

Internal (``core.tenancy``): it takes a bare ``partner_id``; the merge and deletion
services that call it read the request through ``visible_to(principal)``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Sum

from portal.billing.models import CreditEntry, CreditEntryKind
from portal.billing.money import quantize
from portal.core.principal import Principal
from portal.partners.models import Partner, SubAccount


def credit_balances_transfer(
    *,
    principal: Principal,
    partner_id: int,
    sub_account_ids: Sequence[int],
    to_sub_account_id: int | None,
    event: str,
    reference: str,
    at: dt.datetime,
) -> list[dict[str, Any]]:
    """Move the whole credit balance of each of ``sub_account_ids`` to the balance of
    ``to_sub_account_id`` (None = the partner's): domain §3, a sub-account's balance
    follows it when it is merged (to the target) or deleted (to the partner).

    Part of the caller's state change (a merge completing, a deletion being scheduled),
    not a change of its own: it runs inside the caller's transaction and writes no audit
    event; the caller's one event carries what this returns, one
    ``{"sub_account_id", "name", "amount"}`` per balance moved (none when nothing was
    left). Each balance gives a pair of ``transfer`` ledger entries (appended, never a
    rewrite): the amount leaving the sub-account's pool and the same amount joining the
    other. ``event`` says what happened to them ("merged into Salon East"), ``reference``
    which request did it; both go into the entries' reasons, which the next invoice's
    credit items quote. Five statements whatever the number of sub-accounts.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("A credit transfer is part of its caller's transaction.")
    # Issuing locks the partner's row while it reads and applies balances: taken here
    # too, no invoice can apply a balance this moves, or the other way round. NO KEY
    # UPDATE, so rows referencing the partner can still be inserted meanwhile.
    partner = Partner.objects.select_for_update(no_key=True).get(pk=partner_id)
    balances = dict(
        CreditEntry.objects.filter(partner_id=partner_id, sub_account_id__in=list(sub_account_ids))
        .values("sub_account_id")
        .annotate(balance=Sum("amount"))
        .filter(balance__gt=0)
        .order_by("sub_account_id")
        .values_list("sub_account_id", "balance")
    )
    if not balances:
        return []
    names = dict(
        SubAccount.objects.filter(partner_id=partner_id, pk__in=list(balances)).values_list(
            "pk", "name"
        )
    )
    if to_sub_account_id is None:
        destination = "the partner's credit balance"
    else:
        target = SubAccount.objects.get(partner_id=partner_id, pk=to_sub_account_id)
        destination = f"the credit balance of {target.name}"
    day = at.astimezone(ZoneInfo(partner.timezone)).date()
    entries: list[CreditEntry] = []
    moved: list[dict[str, Any]] = []
    for pk, balance in balances.items():
        happened = f"{names[pk]}, {event} on {day:%Y-%m-%d} ({reference})"
        common = {
            "partner_id": partner_id,
            "kind": CreditEntryKind.TRANSFER,
            "created_at": at,
            "created_by": principal.label[:200],
        }
        entries.append(
            CreditEntry(
                sub_account_id=pk,
                amount=-balance,
                counterpart_id=to_sub_account_id,
                reason=f"Moved to {destination}: {happened}"[:500],
                **common,
            )
        )
        entries.append(
            CreditEntry(
                sub_account_id=to_sub_account_id,
                amount=balance,
                counterpart_id=pk,
                reason=f"Balance of {happened}"[:500],
                **common,
            )
        )
        shown = quantize(balance, partner.currency)
        moved.append({"sub_account_id": pk, "name": names[pk], "amount": f"{shown:f}"})
    CreditEntry.objects.bulk_create(entries)
    return moved
