"""Helpers for workflow tests: a partner with sub-accounts holding lines, and checks."""

from __future__ import annotations

from dataclasses import dataclass

from portal.audit.models import AuditEvent
from portal.core.principal import Principal
from portal.lines.models import AssignmentPeriod, Line
from portal.lines.services import line_move_bulk
from portal.partners.models import Partner, SubAccount
from tests.factories import SYSTEM, Tenant, make_lines, make_sub_account, make_tenant


@dataclass
class MergeWorld:
    tenant: Tenant
    sources: list[SubAccount]
    target: SubAccount
    other: SubAccount  # an unrelated active sub-account

    @property
    def partner(self) -> Partner:
        return self.tenant.partner

    def principal(self, role: str = "admin") -> Principal:
        return self.tenant.principal(role)


def fill(sub_account: SubAccount, count: int) -> list[Line]:
    """``count`` new lines moved from Available into ``sub_account``."""
    lines = make_lines(Partner.objects.get(pk=sub_account.partner_id), count)
    line_move_bulk(
        principal=SYSTEM, line_ids=[line.pk for line in lines], sub_account_id=sub_account.pk
    )
    return lines


def merge_world(
    name: str = "Merging Partner", *, counts: tuple[int, ...] = (3, 2), target_lines: int = 1
) -> MergeWorld:
    tenant = make_tenant(name)
    sources = [make_sub_account(tenant.partner, f"Source {i} – Sales") for i in range(len(counts))]
    target = make_sub_account(tenant.partner, "Target – Sales")
    other = make_sub_account(tenant.partner, "Other – Support")
    for sa, count in zip(sources, counts, strict=True):
        fill(sa, count)
    fill(target, target_lines)
    return MergeWorld(
        tenant=tenant,
        sources=[SubAccount.objects.get(pk=s.pk) for s in sources],
        target=SubAccount.objects.get(pk=target.pk),
        other=other,
    )


def refreshed(sa: SubAccount) -> SubAccount:
    return SubAccount.objects.get(pk=sa.pk)


def merge_events_per_line(merge_request_id: int) -> dict[int, int]:
    """line id -> number of ``line.merge`` audit events that name the request."""
    counts: dict[int, int] = {}
    for event in AuditEvent.objects.filter(action="line.merge"):
        if event.data.get("merge_request_id") == merge_request_id:
            counts[event.line_id] = counts.get(event.line_id, 0) + 1
    return counts


def merge_periods(line_ids: list[int]) -> int:
    return AssignmentPeriod.objects.filter(line_id__in=line_ids, via_merge=True).count()
