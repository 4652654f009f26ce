"""How sub-accounts are named on invoices: as they are now (:func:`section_name`), or as
they were called at the end of each day of a cycle (:class:`NameHistory`: the current names
walked back through the rename and merge-completion audit events, one query).

Internal (``core.tenancy``): it takes a bare ``partner_id``, scoped by its callers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Q

from portal.audit.models import AuditEvent
from portal.billing.periods import Cycle
from portal.partners.models import SubAccount, SubAccountKind, SubAccountStatus


def section_name(sub_account: SubAccount) -> str:
    """How a sub-account is named on an invoice, snapshotted when it is issued."""
    if sub_account.kind == SubAccountKind.AVAILABLE:
        return "Available"
    if sub_account.status == SubAccountStatus.MERGED and sub_account.merged_into is not None:
        return f"{sub_account.name} (merged into {sub_account.merged_into.name})"
    return sub_account.name


def named_sub_accounts(partner_id: int, ids: set[int]) -> dict[int, SubAccount]:
    """The partner's sub-accounts ``ids`` by id, each with the target it was merged into
    (``select_related``): what :func:`section_name` and :func:`name_history` need."""
    rows = SubAccount.objects.filter(partner_id=partner_id, pk__in=ids).select_related(
        "merged_into"
    )
    return {sa.pk: sa for sa in rows}


def with_merge_targets(subs: dict[int, SubAccount]) -> dict[int, SubAccount]:
    """``subs`` and the targets of those that are merged sources (loaded with them by
    ``select_related``): a name history names a source "(merged into <target>)"."""
    named = dict(subs)
    for sa in subs.values():
        if sa.merged_into_id is not None and sa.merged_into_id not in named:
            named[sa.merged_into_id] = sa.merged_into
    return named


@dataclass(slots=True)
class NameHistory:
    """How each sub-account was called at the end of each day of a cycle.

    Built from what is current (the rows) and what changed since (renames and merge
    completions, from their audit events): walking back from now, the name on a day is
    the name before the first rename made after that day ended, and a source merged
    after that day is not "merged" yet. A day's name is the one at its end, like its
    holder (domain §3). "(merged into <target>)" follows a merged source on the days after
    its merge, the target named as it was then too; the pool is always "Available".
    """

    cycle: Cycle
    subs: dict[int, SubAccount]
    # sub-account -> [(when, name before)] in time order, for renames after the cycle start
    renames: dict[int, list[tuple[dt.datetime, str]]]
    # merged source -> when its merge completed, for merges after the cycle start
    merged_at: dict[int, dt.datetime]
    _ends: list[dt.datetime] = field(default_factory=list)
    _cache: dict[tuple[int, int], str] = field(default_factory=dict)
    # The sub-accounts called the same all cycle long (nearly all): named by id alone.
    _constant: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        varies = set(self.renames) | set(self.merged_at)
        for pk, sa in self.subs.items():
            if pk not in varies and sa.merged_into_id not in self.renames:
                self._constant[pk] = self.name_at(pk, self.cycle.start)

    def __call__(self, sub_account_id: int, day: int) -> str:
        name = self._constant.get(sub_account_id)
        if name is not None:
            return name
        key = (sub_account_id, day)
        name = self._cache.get(key)
        if name is None:
            if not self._ends:
                self._ends = self.cycle.day_ends()
            name = self._cache[key] = self.name_at(sub_account_id, self._ends[day - 1])
        return name

    def plain_name_at(self, sub_account_id: int, instant: dt.datetime) -> str:
        for when, before in self.renames.get(sub_account_id, ()):
            if when > instant:
                return before
        return self.subs[sub_account_id].name

    def name_at(self, sub_account_id: int, instant: dt.datetime) -> str:
        sa = self.subs[sub_account_id]
        if sa.kind == SubAccountKind.AVAILABLE:
            return "Available"
        name = self.plain_name_at(sub_account_id, instant)
        merged = sa.status == SubAccountStatus.MERGED and sa.merged_into_id is not None
        if merged and self.merged_at.get(sub_account_id, instant) <= instant:
            return f"{name} (merged into {self.plain_name_at(sa.merged_into_id, instant)})"
        return name


# Above this many sub-accounts the name history reads the partner's renames rather than
# listing the ids (a statement's parameters are limited, SQLite's to 32,766).
_NAMED_BY_ID = 500


def name_history(
    *,
    partner_id: int,
    subs: dict[int, SubAccount],
    cycle: Cycle,
    since: dt.datetime | None = None,
) -> NameHistory:
    """The names of ``subs`` (loaded by :func:`named_sub_accounts`, targets of merges
    included) through ``cycle``, or from ``since`` on: one query over the audit events of
    renames and merge completions after the cycle's start (or ``since``), however many
    items will be named (none when nothing is to be named)."""
    renames: dict[int, list[tuple[dt.datetime, str]]] = {}
    merged_at: dict[int, dt.datetime] = {}
    if not subs:
        return NameHistory(cycle=cycle, subs=subs, renames=renames, merged_at=merged_at)
    renamed = Q(action="sub_account.update")
    if len(subs) <= _NAMED_BY_ID:
        renamed &= Q(sub_account_id__in=list(subs))
    events = (
        AuditEvent.objects.filter(partner_id=partner_id, at__gt=since or cycle.start)
        .filter(renamed | Q(action="merge_request.complete"))
        .order_by("at", "id")
        .values_list("action", "sub_account_id", "at", "data")
    )
    for action, sub_account_id, at, data in events:
        if action == "merge_request.complete":
            for source_id in data.get("source_ids") or ():
                if source_id in subs:
                    merged_at.setdefault(source_id, at)
        elif sub_account_id not in subs:
            continue
        elif "name" in (data.get("after") or {}) and "name" in (data.get("before") or {}):
            renames.setdefault(sub_account_id, []).append((at, data["before"]["name"]))
    return NameHistory(cycle=cycle, subs=subs, renames=renames, merged_at=merged_at)
