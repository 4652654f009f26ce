"""Scoped reads of lines, orders and inventory."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from portal.accounts.policies import require_partner_area
from portal.core.errors import BadRequest
from portal.core.localtime import format_local
from portal.core.principal import Principal
from portal.core.text import can_be_stored
from portal.lines.models import AssignmentPeriod, Line, LineOrder, LineStatus
from portal.partners.models import Partner, SubAccount

_PHONE_FRAGMENT = re.compile(r"\+?[\d\s().-]*\d[\d\s().-]*")


def line_list(
    *,
    principal: Principal,
    sub_account_id: int | None = None,
    status: str | None = None,
    search: str | None = None,
) -> QuerySet[Line]:
    qs = Line.objects.visible_to(principal)
    if status and status not in LineStatus.values:
        raise BadRequest(f"Unknown status {status!r}; use active or disconnected.")
    if sub_account_id is not None:
        qs = qs.filter_id("sub_account_id", sub_account_id)
        # A line is in a sub-account exactly when it is active (line_active_iff_in_sub_account),
        # so the status adds nothing here; left out, a sub-account's page and its count
        # are read from the index (partner, sub_account, number, id) alone.
        if status == LineStatus.DISCONNECTED:
            qs = qs.none()
    elif status:
        qs = qs.filter(status=status)
    if search:
        term = search.strip()
        if not can_be_stored(term):
            return qs.none()
        cond = (
            Q(label__icontains=term) | Q(user_name__icontains=term) | Q(user_email__icontains=term)
        )
        # "415 555-01" finds numbers; "Rep 1" is a label, not a number containing "1".
        if _PHONE_FRAGMENT.fullmatch(term):
            cond |= Q(number__contains="".join(ch for ch in term if ch.isdigit()))
        qs = qs.filter(cond)
    return qs.order_by("number", "pk")


def line_list_count(
    *,
    principal: Principal,
    sub_account_id: int | None = None,
    status: str | None = None,
    search: str | None = None,
) -> int | None:
    """How many lines :func:`line_list` gives, from the sub-accounts' ``line_count``
    when that is the answer (active lines, of the partner or of one sub-account, no
    search), so a page of a million lines counts ten thousand rows, not a million.
    None when the list must be counted.
    """
    if search or status != LineStatus.ACTIVE:
        return None
    holders = SubAccount.objects.visible_to(principal)
    if sub_account_id is not None:
        holders = holders.filter_id("pk", sub_account_id)
    return holders.aggregate(n=Coalesce(Sum("line_count"), 0))["n"]


def line_get(*, principal: Principal, line_id: int) -> Line:
    return Line.objects.get_visible(principal, line_id, what="Line")


def line_whereabouts(principal: Principal, lines: Sequence[Line]) -> dict[int, str]:
    """Where each line is now and since when, in words ("it was moved to “B” at
    5 Jul 2026, 10:03 EDT", in the lines' partner's timezone), for telling someone
    their view of it is stale.

    Three queries whatever the number of lines; callers pass the few they will name.
    A sub-account the principal cannot see is "another sub-account".
    """
    held = {line.pk: line.sub_account_id for line in lines if line.sub_account_id is not None}
    since = dict(
        AssignmentPeriod.objects.filter(
            partner_id=lines[0].partner_id, line_id__in=list(held), end__isnull=True
        ).values_list("line_id", "start")
    )
    names = {
        sa.pk: sa.display_name
        for sa in SubAccount.objects.visible_to(principal)
        .filter(pk__in=set(held.values()))
        .only("pk", "name", "kind")
    }
    tz = (
        Partner.objects.filter(pk=lines[0].partner_id).values_list("timezone", flat=True).first()
        if lines
        else None
    )

    def at(instant: dt.datetime) -> str:
        return f" at {format_local(instant, tz)}"

    words: dict[int, str] = {}
    for line in lines:
        if line.sub_account_id is None:
            when = at(line.disconnected_at) if line.disconnected_at else ""
            words[line.pk] = f"it was disconnected{when}"
            continue
        name = names.get(line.sub_account_id)
        where = f"“{name}”" if name is not None else "another sub-account"
        start = since.get(line.pk)
        when = at(start) if start else ""
        words[line.pk] = f"it was moved to {where}{when}"
    return words


def line_order_list(*, principal: Principal) -> QuerySet[LineOrder]:
    """The partner's line orders, newest first; a client has no orders (403)."""
    require_partner_area(principal)
    return LineOrder.objects.visible_to(principal).order_by("-created_at", "-pk")


def line_order_get(*, principal: Principal, order_id: int) -> LineOrder:
    require_partner_area(principal)
    return LineOrder.objects.get_visible(principal, order_id, what="Line order")
