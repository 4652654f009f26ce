"""A sub-account's workspace: one header and five tabs, each about that sub-account only.

The header (status, contact, internal reference, lines, this month's cost) and the tab
navigation are the same on every tab; each tab reads through the selector its own page
uses (lines, billing, analytics, requests, audit), narrowed to the sub-account. A tab
the person may not use is not offered, and its URL answers 403 as that page does; a
sub-account the person may not see answers 404 on every tab before anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from portal.accounts.policies import can_read_audit, require
from portal.analytics.policies import can_read_analytics
from portal.analytics.views import sub_account_analytics_context
from portal.audit.describe import describe_events
from portal.audit.selectors import audit_event_list
from portal.billing.money import format_amount
from portal.billing.policies import (
    can_read_billing_summary,
    can_read_invoices,
    can_read_statements,
)
from portal.billing.selectors import sub_account_invoice_sections
from portal.billing.statement_selectors import statement_list
from portal.billing.summary import sub_account_charges
from portal.core.principal import Principal
from portal.lines.selectors import line_list
from portal.partners.models import SubAccount, SubAccountKind, SubAccountStatus
from portal.partners.policies import can_change_sub_accounts, unavailable_reason
from portal.web.decorators import portal_view
from portal.workflows.policies import can_make_requests, can_read_requests
from portal.workflows.selectors import deletion_request_list, merge_request_list

LINES_PAGE_SIZE = 50
INVOICES_PAGE_SIZE = 24
WORKSPACE_STATEMENTS = 12  # the latest; Billing → Statements lists every one
REQUESTS_PAGE_SIZE = 25
AUDIT_PAGE_SIZE = 50


@dataclass(frozen=True)
class Tab:
    key: str
    label: str
    url_name: str
    refused: str  # what a person who may not use it is told (403)


TABS = (
    Tab("lines", "Lines", "partners:sub_account_detail", ""),
    Tab(
        "billing",
        "Billing",
        "partners:sub_account_billing",
        "Your role may not see the billing summary.",
    ),
    Tab(
        "analytics",
        "Analytics",
        "partners:sub_account_analytics",
        "Your role may not read analytics.",
    ),
    Tab(
        "requests",
        "Requests",
        "partners:sub_account_requests",
        "Your role may not see merge and deletion requests.",
    ),
    Tab(
        "audit", "Audit log", "partners:sub_account_audit", "Your role may not read the audit log."
    ),
)


def _may_use(principal: Principal, tab: str) -> bool:
    """The same predicates as the main navigation's Billing, Analytics, Requests, Audit log."""
    if tab == "billing":
        return can_read_billing_summary(principal)
    if tab == "analytics":
        return can_read_analytics(principal)
    if tab == "requests":
        return can_read_requests(principal)
    if tab == "audit":
        return can_read_audit(principal)
    return True


def _actions(principal: Principal, sub_account: SubAccount) -> dict[str, Any]:
    """The header's actions the person may use and the state allows, and why the others
    are not offered (the reasons the action pages themselves would give)."""
    may_change = can_change_sub_accounts(principal)
    may_request = can_make_requests(principal)
    notes: list[str] = []
    if sub_account.status != SubAccountStatus.ACTIVE:
        # Merged or pending deletion: read-only, for everyone, and said so.
        notes.append(unavailable_reason(sub_account, "edit"))
    elif sub_account.kind == SubAccountKind.AVAILABLE and may_request:
        notes.append(
            "Available cannot be merged or deleted: it holds every line not in a sub-account."
        )
    return {
        "edit": may_change and not unavailable_reason(sub_account, "edit"),
        "merge": may_request and not unavailable_reason(sub_account, "merge"),
        "delete": may_request and not unavailable_reason(sub_account, "delete"),
        "notes": notes,
    }


def _workspace(request: HttpRequest, sub_account_id: int, tab: str) -> dict[str, Any]:
    """The header and tabs of the workspace: the sub-account (404 when the person may not
    see it), then the tab's permission (403), then the header's figures."""
    principal = request.principal  # type: ignore[attr-defined]
    sub_account = SubAccount.objects.select_related("partner", "merged_into").get_visible(
        principal, sub_account_id, what="Sub-account"
    )
    current = next(t for t in TABS if t.key == tab)
    require(_may_use(principal, tab), current.refused)
    cost = None
    if can_read_billing_summary(principal):
        charges = sub_account_charges(principal=principal, sub_account=sub_account)
        cost = {
            "charges": charges,
            "total": format_amount(charges.row.total, charges.currency),
            "month": charges.cycle.first_day,
        }
    return {
        "sub_account": sub_account,
        "active_section": "sub-accounts",
        "tab": tab,
        "tab_label": current.label,
        "tabs": [
            {
                "label": t.label,
                "url": reverse(t.url_name, args=[sub_account.pk]),
                "current": t.key == tab,
            }
            for t in TABS
            if _may_use(principal, t.key)
        ],
        "cost": cost,
        "actions": _actions(principal, sub_account),
        "can_change": can_change_sub_accounts(principal),
    }


def _query_prefix(request: HttpRequest, *drop: str) -> str:
    params = request.GET.copy()
    for key in drop:
        params.pop(key, None)
    return (params.urlencode() + "&") if params else ""


@portal_view
def sub_account_detail(request: HttpRequest, sub_account_id: int) -> HttpResponse:
    """The Lines tab, the workspace's default."""
    context = _workspace(request, sub_account_id, "lines")
    sub_account = context["sub_account"]
    principal = request.principal  # type: ignore[attr-defined]
    # The line table asks each line's sub-account whether it is the pool: joined, not
    # one query per row.
    lines = line_list(principal=principal, sub_account_id=sub_account.pk).select_related(
        "sub_account"
    )
    paginator = Paginator(lines, LINES_PAGE_SIZE)
    paginator.count = sub_account.line_count  # its active lines, kept by every move
    context["page_obj"] = paginator.get_page(request.GET.get("page"))
    context["lines_url"] = reverse("lines:line_list") + f"?sub_account={sub_account.pk}"
    return render(request, "partners/sub_account_detail.html", context)


@portal_view
def sub_account_billing(request: HttpRequest, sub_account_id: int) -> HttpResponse:
    """This cycle's charges and accruing prorations, its section of every invoice, and
    its latest client statements (what the partner charges it)."""
    context = _workspace(request, sub_account_id, "billing")
    principal = request.principal  # type: ignore[attr-defined]
    charges = context["cost"]["charges"]
    row, currency = charges.row, charges.currency
    context["cycle"] = {
        "month": charges.cycle.first_day,
        "first": charges.cycle.first_day,
        "last": charges.cycle.date_of(charges.cycle.days),
        "tz": context["sub_account"].partner.timezone,
        "currency": currency,
        "line_count": row.line_count,
        "recurring": format_amount(row.recurring, currency),
        "invoiced_prorations": format_amount(row.prorations - row.accruing_prorations, currency),
        "accruing_prorations": format_amount(row.accruing_prorations, currency),
        "discounts": format_amount(row.discounts, currency),
        "credits": format_amount(row.credits, currency),
        "total": format_amount(row.total, currency),
    }
    context["can_read_invoices"] = can_read_invoices(principal)
    if context["can_read_invoices"]:
        sections = sub_account_invoice_sections(
            principal=principal, sub_account_id=context["sub_account"].pk
        )
        page_obj = Paginator(sections, INVOICES_PAGE_SIZE).get_page(request.GET.get("page"))
        context["page_obj"] = page_obj
        context["sections"] = [
            {
                "section": s,
                "invoice": s.invoice,
                "total": format_amount(s.total, s.invoice.currency),
                "recurring": format_amount(s.recurring, s.invoice.currency),
                "prorations": format_amount(s.prorations, s.invoice.currency),
                "adjustments": format_amount(s.discounts + s.credits, s.invoice.currency),
            }
            for s in page_obj
        ]
    context["can_read_statements"] = can_read_statements(principal)
    if context["can_read_statements"] and not context["sub_account"].is_available_pool:
        statements = list(
            statement_list(principal=principal, sub_account_id=context["sub_account"].pk)[
                : WORKSPACE_STATEMENTS + 1
            ]
        )
        context["more_statements"] = len(statements) > WORKSPACE_STATEMENTS
        context["statements"] = [
            {
                "statement": st,
                "status": st.invoice.status,
                "status_label": st.invoice.get_status_display(),
                "recurring": format_amount(st.recurring, st.currency),
                "prorations": format_amount(st.prorations, st.currency),
                "total": format_amount(st.total, st.currency),
            }
            for st in statements[:WORKSPACE_STATEMENTS]
        ]
    return render(request, "partners/workspace_billing.html", context)


@portal_view
def sub_account_analytics(request: HttpRequest, sub_account_id: int) -> HttpResponse:
    """Its charts, totals and per-line usage for a chosen period (the Analytics page's)."""
    context = _workspace(request, sub_account_id, "analytics")
    analytics, status = sub_account_analytics_context(request, context["sub_account"])
    context.update(analytics)
    context["active_section"] = "sub-accounts"
    return render(request, "partners/workspace_analytics.html", context, status=status)


@portal_view
def sub_account_requests(request: HttpRequest, sub_account_id: int) -> HttpResponse:
    """The merge requests it is a source or the target of, and its deletion requests."""
    context = _workspace(request, sub_account_id, "requests")
    principal = request.principal  # type: ignore[attr-defined]
    pk = context["sub_account"].pk
    merges = merge_request_list(principal=principal, sub_account_id=pk)
    deletions = deletion_request_list(principal=principal, sub_account_id=pk)
    context["merges"] = Paginator(merges, REQUESTS_PAGE_SIZE).get_page(request.GET.get("merges"))
    context["deletions"] = Paginator(deletions, REQUESTS_PAGE_SIZE).get_page(
        request.GET.get("deletions")
    )
    return render(request, "partners/workspace_requests.html", context)


@portal_view
def sub_account_audit(request: HttpRequest, sub_account_id: int) -> HttpResponse:
    """Its events and those of its lines while they were in it, or that name it (a move
    in or out names both ends), newest first; ``?line=`` narrows to one line."""
    context = _workspace(request, sub_account_id, "audit")
    principal = request.principal  # type: ignore[attr-defined]
    line = request.GET.get("line") or None
    events = audit_event_list(
        principal=principal, sub_account_id=context["sub_account"].pk, line_id=line
    )
    page_obj = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    describe_events(principal, page_obj)
    context.update(
        {
            "page_obj": page_obj,
            "line_filter": line,
            "query_prefix": _query_prefix(request, "page"),
        }
    )
    return render(request, "partners/workspace_audit.html", context)
